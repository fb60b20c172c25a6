"""Joining JAX's multi-controller runtime when this process is one of several.

`jax.distributed.initialize()` must run before any JAX computation. It is called when the command
line names the cluster (`--coordinator_address`, `--num_processes`, `--process_id`) or when the
environment shows several processes that JAX detects by itself: a SLURM step of several tasks
(`srun`), an Open MPI job, or a multi-host Cloud TPU slice. Otherwise the run stays a plain single
process, for which initialize() would only add a coordinator service.
"""

import os

import jax

from training.errors import ConfigError


def _detected_process_count() -> int:
  """Processes of the job as the cluster environment announces them (1 when none does)."""
  if 'SLURM_STEP_ID' in os.environ:  # Inside `srun`, not just an `sbatch` allocation.
    return int(os.environ.get('SLURM_STEP_NUM_TASKS', os.environ.get('SLURM_NTASKS', '1')))
  if 'OMPI_COMM_WORLD_SIZE' in os.environ:
    return int(os.environ['OMPI_COMM_WORLD_SIZE'])
  hosts = os.environ.get('TPU_WORKER_HOSTNAMES', '')
  return len(hosts.split(',')) if hosts else 1


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None) -> None:
  """Starts JAX's distributed runtime if this run has several processes; else does nothing."""
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise ConfigError('--coordinator_address, --num_processes and --process_id go together: '
                        'give all three (or none, under SLURM, Open MPI or a TPU slice)')
    if not 0 <= process_id < num_processes:
      raise ConfigError(f'--process_id={process_id} must be in '
                        f'[0, --num_processes={num_processes})')
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif _detected_process_count() > 1:
    jax.distributed.initialize()

"""Joining JAX's multi-controller runtime when this process is one of several, and what a job of
several processes checks and reports that a single process need not.

`jax.distributed.initialize()` must run before any JAX computation. It is called when the command
line names the cluster (`--coordinator_address`, `--num_processes`, `--process_id`) or when the
environment shows several processes that JAX detects by itself: a SLURM step of several tasks
(`srun`), an Open MPI job, or a multi-host Cloud TPU slice. Otherwise the run stays a plain single
process, for which initialize() would only add a coordinator service.

A job's processes must run the same code on the same config: processes that disagree (one started
with another batch size, or from an older checkout) would wait forever in their first collective,
so `check_agreement` compares them through the coordinator's key-value store, which needs no
collective, and names the first difference. A process that lost another mid-run (killed, its host
gone) ends at once with one line (`abandon`), not after JAX's shutdown barrier has waited out its
timeout and aborted.
"""

import contextlib
import hashlib
import json
import os
import signal
import sys
import threading

import jax
from jax._src import distributed as jax_distributed  # The coordinator's client (as Orbax uses).

from training.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = ('app', 'cnns', 'configs', 'input_pipeline', 'training')  # And the entry scripts in ROOT.
AGREEMENT_TIMEOUT_SECONDS = 120  # From joining to the check: imports and reading the config.
LOST_PROCESS = 69  # sysexits' EX_UNAVAILABLE: another process of the job is gone.
# What XLA's collectives and JAX's coordinator say when another process of the job has ended.
_LOST_PROCESS_SIGNS = ('Connection reset by peer', 'Connection closed', 'heartbeat timeout',
                       'Gloo', 'NCCL', 'UNAVAILABLE', 'has failed, got preempted')


def _detected_process_count() -> int:
  """Processes of the job as the cluster environment announces them (1 when none does)."""
  if 'SLURM_STEP_ID' in os.environ:  # Inside `srun`, not just an `sbatch` allocation.
    return int(os.environ.get('SLURM_STEP_NUM_TASKS', os.environ.get('SLURM_NTASKS', '1')))
  if 'OMPI_COMM_WORLD_SIZE' in os.environ:
    return int(os.environ['OMPI_COMM_WORLD_SIZE'])
  hosts = os.environ.get('TPU_WORKER_HOSTNAMES', '')
  return len(hosts.split(',')) if hosts else 1


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None, join_timeout_seconds: int = 300) -> None:
  """Starts JAX's distributed runtime if this run has several processes; else does nothing.

  Joining waits for every process of the job; this says so at once (a process that never starts
  is otherwise minutes of silence), and a join that times out is one line and status 2 (JAX's own
  timeout, a minute later, aborts with a stack trace from C++, which no Python code can catch)."""
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise ConfigError('--coordinator_address, --num_processes and --process_id go together: '
                        'give all three (or none, under SLURM, Open MPI or a TPU slice)')
    if not 0 <= process_id < num_processes:
      raise ConfigError(f'--process_id={process_id} must be in '
                        f'[0, --num_processes={num_processes})')
    where = f'process {process_id} of {num_processes}, coordinator {coordinator_address}'
  elif _detected_process_count() > 1:
    where = f'one of {_detected_process_count()} processes found by the cluster environment'
  else:
    return
  if join_timeout_seconds <= 0:
    raise ConfigError(f'--join_timeout_seconds={join_timeout_seconds} must be positive')
  print(f'joining the job ({where}); waiting up to {join_timeout_seconds} s for all its '
        'processes to start', file=sys.stderr, flush=True)
  watchdog = threading.Timer(join_timeout_seconds, abandon, args=(
      f'error: the job\'s processes did not all join within {join_timeout_seconds} s ({where}): '
      'start every process, with the same coordinator address (or raise --join_timeout_seconds)',
      ConfigError.status))
  watchdog.daemon = True
  watchdog.start()
  # Joining blocks in C++, where Python's Ctrl-C handler never runs: SIGINT ends it as SIGTERM
  # does (nothing to save yet).
  interrupt = signal.signal(signal.SIGINT, signal.SIG_DFL)
  try:
    jax.distributed.initialize(*explicit, initialization_timeout=join_timeout_seconds + 60)
  finally:
    watchdog.cancel()
    signal.signal(signal.SIGINT, interrupt)


def code_version() -> dict[str, str]:
  """SHA-256 of each source file of the project, by its path relative to the repository."""
  files = [name for name in os.listdir(ROOT) if name.endswith('.py')]
  for package in CODE:
    for folder, _, names in os.walk(os.path.join(ROOT, package)):
      files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names if n.endswith('.py')]
  digests = {}
  for name in sorted(files):
    with open(os.path.join(ROOT, name), 'rb') as f:
      digests[name] = hashlib.sha256(f.read()).hexdigest()
  return digests


def disagreement(mine: dict[str, dict], theirs: dict[str, dict], other: int) -> str | None:
  """The first difference between process 0's `mine` and process `other`'s description
  ({'code': {file: hash}, 'config': {field: value}, 'flags': {flag: value}}), in one line."""
  code = sorted(f for f in mine['code'].keys() | theirs['code'].keys()
                if mine['code'].get(f) != theirs['code'].get(f))
  if code:
    return (f'process {other} runs other code than process 0 ({len(code)} file(s) differ: '
            f'{", ".join(code[:3])}{", ..." if len(code) > 3 else ""}): run the same checkout '
            'on every host')
  for part, prefix in (('config', 'config.'), ('flags', '--')):
    fields = sorted(k for k in mine[part].keys() | theirs[part].keys()
                    if mine[part].get(k) != theirs[part].get(k))
    if fields:
      shown = ', '.join(f'{prefix}{k}={theirs[part].get(k, "(not given)")} where process 0 has '
                        f'{mine[part].get(k, "(not given)")}' for k in fields[:3])
      more = f' (and {len(fields) - 3} more)' if len(fields) > 3 else ''
      return (f'process {other} was started with {shown}{more}: start every process of a job '
              'with the same config and flags')
  return None


def check_agreement(description: dict[str, dict]) -> None:
  """Refuses a job whose processes were started differently (ConfigError on every process, naming
  the first difference), before any collective could wait forever on it; nothing with one
  process. Process 0 compares each process's `description` with its own and posts the verdict."""
  if jax.process_count() == 1:
    return
  client = jax_distributed.global_state.client
  timeout_ms = AGREEMENT_TIMEOUT_SECONDS * 1000
  me = jax.process_index()
  client.key_value_set(f'cnns/start/{me}', json.dumps(description, sort_keys=True))

  def wait_for(key: str, who: str) -> str:
    try:
      return client.blocking_key_value_get(key, timeout_ms)
    except jax.errors.JaxRuntimeError as e:
      raise ConfigError(f'{who} did not reach the start of the job within '
                        f'{AGREEMENT_TIMEOUT_SECONDS} s of joining: see its log') from e

  if me == 0:
    verdict = ''
    for other in range(1, jax.process_count()):
      theirs = json.loads(wait_for(f'cnns/start/{other}', f'process {other}'))
      verdict = verdict or disagreement(description, theirs, other) or ''
    client.key_value_set('cnns/start/verdict', verdict)
  else:
    verdict = wait_for('cnns/start/verdict', 'process 0')
  # Process 0 hosts the coordinator: it leaves only once every process has read the verdict.
  with contextlib.suppress(jax.errors.JaxRuntimeError):
    client.wait_at_barrier('cnns/start/verdict-read', timeout_ms)
  if verdict:
    raise ConfigError(verdict)


def lost_a_process(error: BaseException) -> bool:
  """Whether `error`, raised in a job of several processes, says another one has ended."""
  return (jax.process_count() > 1 and isinstance(error, jax.errors.JaxRuntimeError)
          and any(sign in str(error) for sign in _LOST_PROCESS_SIGNS))


def abandon(message: str, status: int = LOST_PROCESS) -> None:
  """Ends this process with `message` and `status` at once, from any thread: JAX's exit handler
  would wait for a lost process at its shutdown barrier, time out and abort with a stack trace."""
  with contextlib.suppress(OSError):  # No console any more.
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
  os._exit(status)  # pylint: disable=protected-access

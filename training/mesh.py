"""Data parallelism as `jax.jit` over a one-axis device mesh.

The mesh spans every device of every process. Batches are split along 'data'; parameters and
optimizer state are replicated. XLA inserts the gradient all-reduce itself, and BatchNorm batch
statistics computed under jit over a 'data'-sharded batch are global (synchronised) for free.
This is the form JAX recommends over `jax.pmap`, which since JAX 0.8 is itself jit + shard_map.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from training.errors import ConfigError

DATA_AXIS = 'data'


def create_mesh() -> Mesh:
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def local_batch_size(global_batch: int, what: str = 'batch_size') -> int:
  """This process's share of a global batch, which must split evenly over all devices."""
  if global_batch <= 0 or global_batch % jax.device_count():
    raise ConfigError(f'{what}={global_batch} must be a positive multiple of the device count '
                      f'({jax.device_count()})')
  return global_batch // jax.process_count()


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles the global batch from each process's host-local part (no copy between hosts)."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)

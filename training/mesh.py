"""Data parallelism as `jax.jit` over a one-axis device mesh.

The mesh spans every device of every process. Batches are split along 'data'; parameters and
optimizer state are replicated. XLA inserts the gradient all-reduce itself, and BatchNorm batch
statistics computed under jit over a 'data'-sharded batch are global (synchronised) for free.
This is the form JAX recommends over `jax.pmap`, which since JAX 0.8 is itself jit + shard_map.
"""

import queue
import threading
from collections.abc import Iterator

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


def prefetch_to_device(batches: Iterator[dict[str, np.ndarray]], sharding: NamedSharding,
                       size: int) -> Iterator[dict[str, jax.Array]]:
  """`batches` placed on the mesh up to `size` steps ahead, by a background thread.

  The host's part of a step (reading, augmenting, slicing, the transfer) then overlaps the
  device's work on earlier steps, as Flax's `prefetch_to_device` and big_vision do; `size` = 0
  places each batch when it is needed. The queue is bounded, so at most `size` batches wait in
  device memory. An error in the source is raised here, in the consumer; a consumer that stops
  early (a stop signal, divergence) stops the thread at its next batch.
  """
  if size <= 0:
    yield from (to_global(batch, sharding) for batch in batches)
    return
  ready = queue.Queue(maxsize=size)
  done = threading.Event()
  end = object()

  def offer(item) -> bool:
    """Puts `item` in the queue unless the consumer has gone; whether it was put."""
    while not done.is_set():
      try:
        ready.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def produce():
    try:
      for batch in batches:
        if not offer(to_global(batch, sharding)):
          return
      offer(end)
    except BaseException as error:  # Raised again in the consumer.
      offer(error)

  thread = threading.Thread(target=produce, name='prefetch_to_device', daemon=True)
  thread.start()
  try:
    while (item := ready.get()) is not end:
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    done.set()
    thread.join()

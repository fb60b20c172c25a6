"""Orbax checkpoints of the train state, plus what the state means, checked on the way back in.

Beside the state each checkpoint holds a small JSON record written by the loop: the config that
trained it (seed, global batch size and data shards among it: the data order is a pure function of
these, so the restored step fixes the position in it), the training metric sums since the last log,
and here a CRC-32 of the state's bytes.

Restoring walks from the newest step down and takes the first that restores, holds only finite
numbers and matches its checksum; each one skipped is named in one warning line and, when training
is to go on, moved aside to `<step>.damaged-<time>` (never deleted) so that a new save of that step
cannot collide with it. Nothing is moved unless an older step restores. Saving refuses non-finite
states, so rotation (`keep`) only ever removes good checkpoints older than a good one.
"""

import contextlib
import errno
import logging
import os
import sys
import threading
import time
import zlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from training.errors import ConfigError, NonFiniteError


class _RaisedInTheMainThread(logging.Filter):
  """Drops Orbax's logs of a failed background save (error lines with tracebacks, from its
  threads): the same exception is raised again by `wait_until_finished` or the next save, where
  the loop reports it in one line (a full disk) or lets it through (anything else)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.exc_info and f'{os.sep}orbax{os.sep}' in record.pathname)


class _UnretrievedDiskFull(logging.Filter):
  """Drops asyncio's "Future exception was never retrieved" for a write of a failed save that hit
  a full disk, logged when the future is collected, possibly after the loop's one-line report of
  the same full disk (seen under load)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.exc_info and disk_full(record.exc_info[1]))


absl_logging.get_absl_logger().addFilter(_RaisedInTheMainThread())
logging.getLogger('asyncio').addFilter(_UnretrievedDiskFull())


def _late_write_callback(error: BaseException | None) -> bool:
  """After a failed save Orbax closes that save's event loop while tensorstore still completes
  other writes, whose callbacks then fail with "Event loop is closed" and are printed, one
  traceback each, from tensorstore's threads (seen under load on a full disk). The save's own
  error reaches the main thread; these say nothing more."""
  return isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'


def _quiet(hook, error_of):
  return lambda *args: None if _late_write_callback(error_of(*args)) else hook(*args)


sys.excepthook = _quiet(sys.excepthook, lambda type_, value, tb: value)
sys.unraisablehook = _quiet(sys.unraisablehook, lambda unraisable: unraisable.exc_value)
threading.excepthook = _quiet(threading.excepthook, lambda args: args.exc_value)


def disk_full(error: BaseException) -> bool:
  """Whether `error`, or an exception it was raised from, is a full disk or quota (Orbax and
  tensorstore wrap the OSError in their own types, or keep only its text)."""
  while error is not None:
    if getattr(error, 'errno', None) in (errno.ENOSPC, errno.EDQUOT) or any(
        text in str(error) for text in ('No space left', 'quota exceeded')):
      return True
    error = error.__cause__ or error.__context__
  return False


def committed_steps(directory: str) -> list[int]:
  """Steps with a committed checkpoint directory in `directory` (Orbax writes a step into a
  temporary directory and renames it when complete)."""
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return [int(n) for n in names if n.isdigit()]


def host_leaves(state) -> list[np.ndarray]:
  """This process's full copy of each (replicated) array of `state`, in tree order."""
  return [np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x)
          for x in jax.tree.leaves(state)]


def checksum(leaves: list[np.ndarray]) -> int:
  crc = 0
  for leaf in leaves:
    crc = zlib.crc32(np.ascontiguousarray(leaf).view(np.uint8), crc)
  return crc


def all_finite(leaves: list[np.ndarray]) -> bool:
  return all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.inexact))


# The parts of a checkpoint's record that are objects (the loop's and import_weights.py's).
RECORD_SECTIONS = ('config', 'dataset', 'train_metrics', 'plateau', 'imported_from')


class Checkpointer:
  """Saves every `every_steps` steps (and when asked), keeps the last `keep`, restores the newest
  good one."""

  def __init__(self, directory: str, *, every_steps: int, keep: int, create: bool = True):
    self._every_steps = every_steps
    self._create = create
    self._requested: list[int] = []  # Steps asked to save; the newest may still be in flight.
    self._manager = ocp.CheckpointManager(
        directory, item_names=('state', 'data'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                             cleanup_tmp_directories=create))

  @property
  def directory(self) -> str:
    return str(self._manager.directory)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def due(self, step: int) -> bool:
    """Whether `step` is on the save cadence and not saved yet."""
    return step % self._every_steps == 0 and step != self._manager.latest_step()

  def reached_preemption(self, step: int) -> bool:
    """True on every process at the same step once any got JAX's preemption notice (SIGTERM in a
    multi-process job); always False in a single process."""
    return jax.process_count() > 1 and self._manager.reached_preemption(step)

  def restore_latest(self, state, check_record=None) -> tuple[object, dict, int] | None:
    """(state, record, step) of the newest good checkpoint, or None when there is none at all.

    `state` (arrays or ShapeDtypeStructs) gives the tree, shapes, dtypes and shardings.
    `check_record(record, step)` may refuse the newest readable record (a resume with another
    config) by raising, before any state is read and before anything is moved. Raises ConfigError
    when checkpoints exist but none of them restores; then nothing is moved either.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    steps = sorted(self._steps_on_disk(), reverse=True)
    skipped, checked = [], check_record is None
    for step in steps:
      try:
        record = self._read_record(step)
      except Exception as e:  # Orbax raises many types for a damaged checkpoint.
        skipped.append((step, f'does not restore ({type(e).__name__})'))
        continue
      if not checked:
        check_record(record, step)
        checked = True
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))['state']
        problem = self._problem(restored, record)
      except Exception as e:
        problem = f'does not restore ({type(e).__name__})'
      if problem is None:
        for skipped_step, why in skipped:
          self._skip(skipped_step, why)
        return restored, record, step
      skipped.append((step, problem))
    if steps:
      raise ConfigError(f'no checkpoint in {self.directory} restores (steps '
                        + ', '.join(f'{s} {why}' for s, why in skipped)
                        + '); nothing was changed: use another --workdir')
    return None

  def latest_record(self) -> tuple[dict, int] | None:
    """(record, step) of the newest checkpoint whose record reads: what its state means (the
    config that trained it), without reading the state."""
    for step in sorted(self._steps_on_disk(), reverse=True):
      try:
        return self._read_record(step), step
      except Exception:  # pylint: disable=broad-except  (as in restore_latest)
        continue
    return None

  def _read_record(self, step: int) -> dict:
    """The record of `step`; one that is not what this project writes (another program's JSON,
    or damaged) raises, as an unreadable one does: the step is skipped, never a traceback."""
    record = self._manager.restore(step, args=ocp.args.Composite(
        data=ocp.args.JsonRestore()))['data']
    if not (isinstance(record, dict) and all(isinstance(record.get(section, {}), dict)
                                             for section in RECORD_SECTIONS)):
      raise ValueError(f"checkpoint {step}'s record is not a JSON object of objects")
    # Every record names its model, or, written before configs were recorded, its data position.
    if not (isinstance(record.get('config', {}).get('model'), str)
            or 'config' not in record and isinstance(record.get('global_batch_size'), int)):
      raise ValueError(f"checkpoint {step}'s record names no model")
    return record

  def save(self, step: int, state, record: dict) -> None:
    """Saves `state` at `step` with `record` and the state's checksum; never a non-finite one."""
    leaves = host_leaves(state)
    if not all_finite(leaves):
      raise NonFiniteError(step)
    self._requested.append(step)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave({**record, 'state_crc32': checksum(leaves)})), force=True)

  def failed_save(self) -> tuple[int | None, int | None]:
    """After a failed save: (the first step asked for that is not on disk, as saves are async and
    the error may surface at a later save; the newest step on disk)."""
    newest = max(self._steps_on_disk(), default=-1)
    return (min((s for s in self._requested if s > newest), default=None),
            None if newest < 0 else newest)

  def wait(self) -> None:
    """Blocks until pending saves are on disk (saving is asynchronous)."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def abandon(self) -> None:
    """After a failed save: waits for the writes it began, so that what it wrote can be removed,
    and closes. Orbax raises at the first write that fails while the step's others go on, into
    its temporary directory, in Orbax's commit threads; it has no public way to wait for them.
    They are the non-daemon threads of Orbax's own classes (never its pools' workers, which are
    plain threads), which end by themselves, or no process that saved could exit."""
    with contextlib.suppress(Exception):  # The error of the save, raised again, or none.
      self.close()
    for thread in threading.enumerate():
      if type(thread).__module__.startswith('orbax.') and not thread.daemon:
        thread.join()

  def _steps_on_disk(self) -> list[int]:
    """Steps with a directory, readable or not (Orbax lists only what it could read)."""
    return committed_steps(self.directory)

  @staticmethod
  def _problem(state, record: dict) -> str | None:
    leaves = host_leaves(state)
    if not all_finite(leaves):
      return 'holds non-finite numbers'
    saved = record.get('state_crc32')
    if saved is not None and saved != checksum(leaves):
      return 'does not match its checksum (damaged bytes)'
    return None

  def _skip(self, step: int, problem: str) -> None:
    path = os.path.join(self.directory, str(step))
    moved = ''
    if self._create:  # Training goes on and may save this step again: keep the old one aside.
      aside = f'{path}.damaged-{time.strftime("%Y%m%d-%H%M%S")}'
      if jax.process_index() == 0 and os.path.isdir(path):
        os.rename(path, aside)
      moved = f', moved to {aside}'
      if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        multihost_utils.sync_global_devices(f'skip checkpoint {step}')
      self._manager.reload()
    if jax.process_index() == 0:
      print(f'warning: checkpoint {path} {problem}; skipped{moved}', file=sys.stderr)

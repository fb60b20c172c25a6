"""What a run owns in its workdir: the lock, its checkpoints, and files replaced atomically.

The lock is an advisory `flock` on `<workdir>/train.lock`, which the kernel drops when the holding
process ends, however it ends: a second train.py on the same workdir is refused, naming the holder
written in the file, and a SIGKILLed run never blocks its own restart. (flock is per host; on a
shared file system two hosts can still both start, so start each run once.)
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket

import jax
import numpy as np
from jax.experimental import multihost_utils

from app import resume
from training.checkpoints import Checkpointer, disk_full
from training.errors import ConfigError

LOCK_FILE = 'train.lock'


def write_atomic(path: str, text: str) -> None:
  """Replaces `path` by `text` so that a reader sees the old file or the new one, never a part."""
  temporary = f'{path}.tmp'
  with open(temporary, 'w') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)


class WorkdirLock:
  """Held by process 0 from `acquire()` until `release()` or the process's end."""

  def __init__(self, workdir: str, holder: str = 'train.py'):
    self._path = os.path.join(workdir, LOCK_FILE)
    self._holder = holder  # The command named to a second process that finds the lock taken.
    self._fd = None

  def acquire(self) -> None:
    """Takes the lock, or raises ConfigError naming the process that holds it (every process)."""
    problem = self._try_lock() if jax.process_index() == 0 else None
    if jax.process_count() > 1:  # Every process learns the outcome, so none waits for the others.
      refused = multihost_utils.broadcast_one_to_all(np.int32(problem is not None))
      if refused and problem is None:
        problem = f'workdir {os.path.dirname(self._path)} cannot be locked (see process 0)'
    if problem is not None:
      raise ConfigError(problem)

  def _try_lock(self) -> str | None:
    """None when locked; else what stops it, as the error message."""
    workdir = os.path.dirname(self._path)
    try:
      os.makedirs(workdir, exist_ok=True)
      fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      return f'cannot write to workdir {workdir}: {e.strerror}'
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 1000).decode(errors='replace').strip() or 'another process'
      os.close(fd)
      return (f'workdir {workdir} is in use by {holder}; wait for it to end or stop it, or use '
              'another --workdir')
    started = datetime.datetime.now().isoformat(timespec='seconds')
    os.ftruncate(fd, 0)
    os.write(fd, f'{self._holder} (process {os.getpid()} on {socket.gethostname()}, started '
                 f'{started})\n'.encode())
    self._fd = fd
    return None

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


class RunDirectory:
  """A training run's workdir: the lock (held from construction to `close`), the checkpoints and
  config.json; a full disk while saving becomes one line naming the newest step that is intact."""

  def __init__(self, workdir: str, *, every_steps: int, keep: int):
    self.path = workdir
    self._lock = WorkdirLock(workdir)
    self._lock.acquire()
    try:
      self.checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                                       every_steps=every_steps, keep=keep)
    except BaseException:
      self._lock.release()
      raise

  def restore(self, state, record: dict, data_changes) -> tuple[object, dict, str]:
    """(the newest good checkpoint's state, its record, what this run changes, printable), or
    (`state`, {}, '') where there is none. A resume that changes what the saved state or the data
    order means is refused (`resume.check_resume`, against this run's `record` and its source's
    `data_changes`)."""
    changes = []
    check = lambda saved, step: changes.append(resume.check_resume(saved, record, step,
                                                                   data_changes))
    restored = self.checkpointer.restore_latest(state, check_record=check)
    if restored is None:
      return state, {}, ''
    state, saved, _ = restored
    return state, saved, changes[0] if changes else ''

  def write_config(self, resolved: dict) -> None:
    """config.json: the config of the newest checkpoints, for people and tools (process 0)."""
    if jax.process_index() == 0:
      write_atomic(os.path.join(self.path, 'config.json'),
                   json.dumps(resolved, indent=2, sort_keys=True) + '\n')

  @contextlib.contextmanager
  def disk_full_as_one_line(self, step: int):
    """A full disk or quota while saving `step` becomes one ConfigError naming what is intact."""
    try:
      yield
    except Exception as error:
      if not disk_full(error):
        raise
      failed, intact = self.checkpointer.failed_save()
      raise ConfigError(f'disk full while saving step {failed or step} in '
                        f'{self.checkpointer.directory}; '
                        + (f'step {intact} is intact' if intact is not None else 'no step is saved')
                        + ': free space and rerun the same command') from error

  def close(self, step: int) -> None:
    """Waits for pending saves (of steps up to `step`) and releases the workdir."""
    try:
      with self.disk_full_as_one_line(step):
        self.checkpointer.close()
    finally:
      self._lock.release()

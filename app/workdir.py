"""What a run owns in its workdir: the lock, its checkpoints, and files replaced atomically.

The lock is an advisory `flock` on the workdir itself and on `<workdir>/train.lock`, which the
kernel drops when the holding process ends, however it ends: a second train.py on the same workdir
is refused, naming the holder written in the file, and a SIGKILLed run never blocks its own
restart. Deleting `train.lock` does not free the workdir (its directory stays locked), and the
holder writes the file again at its next save. (flock is per host; on a shared file system two
hosts can still both start, so start each run once. Where a file system cannot lock a directory,
NFS for one, the file's lock is the one that counts.)
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils

from app import resume
from training.checkpoints import Checkpointer, disk_full
from training.errors import ConfigError

LOCK_FILE = 'train.lock'


def write_atomic(path: str, content: str | bytes) -> None:
  """Replaces `path` by `content` so that a reader sees the old file or the new one, never a part.

  A failure (a full disk, most often) removes the temporary file and raises the OSError with
  `path` as its file name: the user's one line names the file, and nothing half-written stays.
  """
  temporary = f'{path}.tmp'
  created = False
  try:
    with open(temporary, 'wb' if isinstance(content, bytes) else 'w') as f:
      created = True
      f.write(content)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except OSError as error:
    if created:
      with contextlib.suppress(OSError):
        os.remove(temporary)
    raise OSError(error.errno, error.strerror or str(error), path) from error


class WorkdirLock:
  """Held by process 0 from `acquire()` until `release()` or the process's end."""

  def __init__(self, workdir: str, holder: str = 'train.py'):
    self._path = os.path.join(workdir, LOCK_FILE)
    self._holder = holder  # The command named to a second process that finds the lock taken.
    self._directory = None  # The workdir's descriptor while locked (None where it cannot be).
    self._file = None  # train.lock's while locked.

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
    try:
      os.makedirs(os.path.dirname(self._path), exist_ok=True)
    except OSError as e:
      return f'cannot write to workdir {os.path.dirname(self._path)}: {e.strerror}'
    directory, problem = self._locked(os.path.dirname(self._path), os.O_RDONLY | os.O_DIRECTORY,
                                      optional=True)
    if problem is None:
      problem = self._lock_file()
    if directory is not None:
      if problem is None:
        self._directory = directory
      else:
        os.close(directory)
    return problem

  def _locked(self, path: str, mode: int, optional: bool = False) -> tuple[int | None, str | None]:
    """(a descriptor of `path` opened with `mode`, holding its exclusive flock; None), or (None,
    the error message). `optional`: (None, None) where the file system cannot lock it (NFS's
    directories)."""
    workdir = os.path.dirname(self._path)
    try:
      fd = os.open(path, mode, 0o644)
    except OSError as e:
      return None, f'cannot write to workdir {workdir}: {e.strerror}'
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if isinstance(e, BlockingIOError):
        return None, self._in_use(workdir)
      if optional:
        return None, None
      raise
    return fd, None

  def _lock_file(self) -> str | None:
    """Locks train.lock and writes the holder in it: None, or the error message."""
    fd, problem = self._locked(self._path, os.O_RDWR | os.O_CREAT)
    if problem is not None:
      return problem
    started = datetime.datetime.now().isoformat(timespec='seconds')
    os.ftruncate(fd, 0)
    os.write(fd, f'{self._holder} (process {os.getpid()} on {socket.gethostname()}, started '
                 f'{started})\n'.encode())
    self._file = fd
    return None

  def _in_use(self, workdir: str) -> str:
    try:
      with open(self._path, errors='replace') as f:
        holder = f.read(1000).strip()
    except OSError:
      holder = ''
    return (f'workdir {workdir} is in use by {holder or "another process"}; wait for it to end '
            'or stop it, or use another --workdir')

  def check(self) -> None:
    """Makes train.lock again if it was deleted or replaced since `acquire` (process 0; before
    each save). Where the workdir itself is not locked, another process may have taken the new
    file meanwhile: this run then stops (ConfigError), its saved steps intact."""
    if self._file is None and self._directory is None:
      return
    if self._file is not None:
      held = os.fstat(self._file)
      try:
        current = os.stat(self._path)
        if (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev):
          return
      except FileNotFoundError:
        pass
      os.close(self._file)
      self._file = None
    problem = self._lock_file()
    if problem is None:
      print(f'warning: {self._path} was deleted or replaced while this run held it; written '
            'again', file=sys.stderr)
    elif self._directory is not None:  # The workdir is still this run's: nobody else writes.
      print(f'warning: {self._path} was deleted or replaced while this run held the workdir, and '
            f'cannot be written again ({problem}); the run goes on', file=sys.stderr)
    else:
      raise ConfigError(problem + ' (it was taken while this run held it: this run stops here)')

  def release(self) -> None:
    for fd in (self._file, self._directory):
      if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    self._file = self._directory = None


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

  def check_lock(self) -> None:
    """Before each save: the lock is still this run's (`WorkdirLock.check`)."""
    self._lock.check()

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

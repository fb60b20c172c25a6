"""What a run owns in its workdir besides checkpoints: the lock, and files replaced atomically.

The lock is an advisory `flock` on `<workdir>/train.lock`, which the kernel drops when the holding
process ends, however it ends: a second train.py on the same workdir is refused, naming the holder
written in the file, and a SIGKILLed run never blocks its own restart. (flock is per host; on a
shared file system two hosts can still both start, so start each run once.)
"""

import datetime
import fcntl
import os
import socket

import jax
import numpy as np
from jax.experimental import multihost_utils

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

  def __init__(self, workdir: str):
    self._path = os.path.join(workdir, LOCK_FILE)
    self._fd = None

  def acquire(self) -> None:
    """Takes the lock, or raises ConfigError naming the process that holds it (every process)."""
    holder = None
    if jax.process_index() == 0:
      holder = self._try_lock()
    if jax.process_count() > 1:
      refused = multihost_utils.broadcast_one_to_all(np.int32(holder is not None))
      if refused and holder is None:
        holder = 'another job (see process 0)'
    if holder is not None:
      raise ConfigError(f'workdir {os.path.dirname(self._path)} is in use by {holder}; wait for '
                        'it to end or stop it, or use another --workdir')

  def _try_lock(self) -> str | None:
    """None when locked; else who holds the lock."""
    try:
      os.makedirs(os.path.dirname(self._path), exist_ok=True)
      fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise ConfigError(f'cannot write to workdir {os.path.dirname(self._path)}: '
                        f'{e.strerror}') from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 1000).decode(errors='replace').strip() or 'another process'
      os.close(fd)
      return holder
    started = datetime.datetime.now().isoformat(timespec='seconds')
    os.ftruncate(fd, 0)
    os.write(fd, f'train.py (process {os.getpid()} on {socket.gethostname()}, started '
                 f'{started})\n'.encode())
    self._fd = fd
    return None

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

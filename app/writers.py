"""Where metrics go: TensorBoard event files, `metrics.jsonl`, and the console.

Only process 0 writes. On resume, events past the restored step (written after the last
checkpoint of the killed run) are dropped from both files, so each step appears once, and the file
is rewritten atomically. Lines of `metrics.jsonl` that are not records (a line torn by a crash or a
full disk, damaged bytes, another program's lines) never stop a restart: they are moved to
`metrics.jsonl.damaged-<time>` beside it, with one warning. Non-finite numbers are written as JSON
`null`, so strict readers accept them.
"""

import contextlib
import json
import math
import os
import sys
import time

import tensorboardX
import tqdm

from app.workdir import write_atomic


class MetricWriter:

  def __init__(self, workdir: str, *, resume_step: int, enabled: bool):
    self._enabled = enabled
    self.previous: list[dict] = []  # Records of earlier runs up to the resumed step.
    if not enabled:
      return
    self._jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    self.previous = truncate_jsonl(self._jsonl_path, resume_step)
    self._jsonl = open(self._jsonl_path, 'a')
    self._tensorboard = tensorboardX.SummaryWriter(
        workdir, purge_step=resume_step if resume_step else None)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self._enabled:
      return
    try:
      self._jsonl.write(to_json({'step': step, **scalars}) + '\n')
      self._jsonl.flush()
    except OSError as error:  # A full disk: the one line names the file.
      raise OSError(error.errno, error.strerror, self._jsonl_path) from error
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, step)
    self._tensorboard.flush()

  def close(self) -> None:
    if self._enabled:
      self._jsonl.close()
      self._tensorboard.close()


def to_json(record: dict) -> str:
  """One strict-JSON line: NaN and infinities become null."""
  return json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v
                     for k, v in record.items()}, allow_nan=False)


def is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_record(record) -> bool:
  """Whether a parsed line is what `MetricWriter.write` writes: an object with a whole-number step
  whose other values are numbers, or null for a non-finite one."""
  return (isinstance(record, dict) and type(record.get('step')) is int  # Not a bool.
          and all(value is None or is_number(value) for value in record.values()))


def parse_jsonl(data: bytes, is_wanted=is_record) -> tuple[list[dict], dict[int, bytes]]:
  """(the records of JSON lines `data` that `is_wanted` accepts, {line number: line} of the
  others: not UTF-8, not JSON, or not such a record). Blank lines are neither."""
  records, others = [], {}
  for number, line in enumerate(data.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line.decode())
    except (ValueError, RecursionError):  # Not UTF-8, not JSON, or nested beyond Python's stack.
      record = None
    if is_wanted(record):
      records.append(record)
    else:
      others[number] = line
  return records, others


def not_records_warning(path: str, numbers) -> str:
  """The one warning about the lines `numbers` of `path` that are not records, up to its end."""
  numbers = sorted(numbers)
  listed = ', '.join(map(str, numbers[:5])) + (', ...' if len(numbers) > 5 else '')
  what = (f'line {listed} is not a record' if len(numbers) == 1
          else f'{len(numbers)} lines ({listed}) are not records')
  return (f'warning: {path}: {what} of train.py (torn by a crash or a full disk, damaged, or '
          'written by another program)')


def truncate_jsonl(path: str, last_step: int) -> list[dict]:
  """Drops records after `last_step` from `path`, and moves the lines that are not records to
  `<path>.damaged-<time>` (the user's, kept); returns the records kept."""
  if not os.path.exists(path):
    return []
  with open(path, 'rb') as f:
    data = f.read()
  records, others = parse_jsonl(data)
  kept = [r for r in records if r['step'] <= last_step]
  if others:
    aside = f'{path}.damaged-{time.strftime("%Y%m%d-%H%M%S")}'
    write_atomic(aside, b''.join(line + b'\n' for line in others.values()))
    print(f'{not_records_warning(path, others)}; moved to {aside}', file=sys.stderr)
  if others or len(kept) < len(records) or not data.endswith(b'\n'):  # Appends need a new line.
    write_atomic(path, ''.join(to_json(r) + '\n' for r in kept))
  return kept


class Progress:
  """A console bar: step, loss, img/s and ETA (tqdm), plus one line per evaluation.

  The console may go away while training goes on (`train.py ... | tee log` whose `tee` died with
  the ssh connection): a write that fails turns the bar off, and training, its saves and
  metrics.jsonl go on (a SIGHUP, if one came, stops the run as SIGTERM does)."""

  def __init__(self, *, total_steps: int, initial_step: int, enabled: bool):
    bar = lambda disable: tqdm.tqdm(total=total_steps, initial=initial_step, disable=disable,
                                    unit='step', dynamic_ncols=True, file=sys.stderr,
                                    mininterval=1.0)
    try:
      self._bar = bar(not enabled)
    except OSError:  # No console already.
      self._bar = bar(True)

  @contextlib.contextmanager
  def _console(self):
    try:
      yield
    except OSError:  # BrokenPipeError, EIO of a closed terminal: no console any more.
      self._bar.disable = True

  def advance(self, steps: int, **postfix) -> None:
    with self._console():
      if postfix:
        self._bar.set_postfix(postfix, refresh=False)
      self._bar.update(steps)

  def print(self, line: str) -> None:
    if not self._bar.disable:
      with self._console():
        self._bar.write(line, file=sys.stderr)

  def close(self) -> None:
    with self._console():
      self._bar.close()

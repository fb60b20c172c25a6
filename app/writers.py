"""Where metrics go: TensorBoard event files, `metrics.jsonl`, and the console.

Only process 0 writes. On resume, events past the restored step (written after the last
checkpoint of the killed run) are dropped from both files, so each step appears once; a torn last
line of `metrics.jsonl` (a crash or a full disk mid-write) is dropped with a warning, and the file
is rewritten atomically. Non-finite numbers are written as JSON `null`, so strict readers accept
them.
"""

import json
import math
import os
import sys

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
    self._jsonl.write(to_json({'step': step, **scalars}) + '\n')
    self._jsonl.flush()
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


def truncate_jsonl(path: str, last_step: int) -> list[dict]:
  """Drops records after `last_step`, and lines that do not parse, from `path`; returns the rest."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    text = f.read()
  lines = [line for line in text.splitlines() if line.strip()]
  kept = []
  for number, line in enumerate(lines, start=1):
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      print(f'warning: {path} line {number} is not valid JSON (torn by a crash or a full disk); '
            'dropped', file=sys.stderr)
      continue
    if record['step'] <= last_step:
      kept.append(record)
  if len(kept) < len(lines) or not text.endswith('\n'):  # Appends must start on a new line.
    write_atomic(path, ''.join(to_json(r) + '\n' for r in kept))
  return kept


class Progress:
  """A console bar: step, loss, img/s and ETA (tqdm), plus one line per evaluation."""

  def __init__(self, *, total_steps: int, initial_step: int, enabled: bool):
    self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, disable=not enabled,
                          unit='step', dynamic_ncols=True, file=sys.stderr, mininterval=1.0)

  def advance(self, steps: int, **postfix) -> None:
    if postfix:
      self._bar.set_postfix(postfix, refresh=False)
    self._bar.update(steps)

  def print(self, line: str) -> None:
    if not self._bar.disable:
      self._bar.write(line, file=sys.stderr)

  def close(self) -> None:
    self._bar.close()

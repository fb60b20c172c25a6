"""Where metrics go: TensorBoard event files, `metrics.jsonl`, and the console.

Only process 0 writes. On resume, events past the restored step (written after the last
checkpoint of the killed run) are dropped from both files, so each step appears once.
"""

import json
import os
import sys

import tensorboardX
import tqdm


class MetricWriter:

  def __init__(self, workdir: str, *, resume_step: int, enabled: bool):
    self._enabled = enabled
    self.previous: list[dict] = []  # Records of earlier runs up to the resumed step.
    if not enabled:
      return
    self._jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    self.previous = _truncate_jsonl(self._jsonl_path, resume_step)
    self._jsonl = open(self._jsonl_path, 'a')
    self._tensorboard = tensorboardX.SummaryWriter(
        workdir, purge_step=resume_step if resume_step else None)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self._enabled:
      return
    self._jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, step)
    self._tensorboard.flush()

  def close(self) -> None:
    if self._enabled:
      self._jsonl.close()
      self._tensorboard.close()


def _truncate_jsonl(path: str, last_step: int) -> list[dict]:
  """Drops records after `last_step` from `path`; returns the records kept."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  kept = [r for r in records if r['step'] <= last_step]
  with open(path, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in kept)
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

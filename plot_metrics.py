r"""Training curves of one or more runs, from their metrics.jsonl, in one PNG.

  python plot_metrics.py runs/lenet5 --out=curves.png
  python plot_metrics.py runs/a runs/b --out=curves.png --paper

Panels against epochs: training loss, evaluation top-1 and top-5 error (%), learning rate; runs
overlaid, the legend naming their workdirs as given. --paper draws each run's config's paper
top-1 error (config.json) as a horizontal line. A record logged twice for one step (an older
layout of a resumed run) is drawn once, the later one; lines that are not records (torn by a crash
or a full disk, damaged) are skipped with one warning per file.

Exit status: 0 written; 2 a workdir without metrics.jsonl or without a record to draw, or no --out
(one line).
"""

import json
import os
import sys

import matplotlib
from absl import app, flags

matplotlib.use('Agg')  # Files only: no display is needed.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

from app import cli, writers  # pylint: disable=wrong-import-position
from training.errors import ConfigError  # pylint: disable=wrong-import-position

flags.DEFINE_string('out', None, 'The PNG file to write.')
flags.DEFINE_bool('paper', False, "Draw each run's paper top-1 error (from its config.json).")
# (record key, title, whether an accuracy drawn as an error in %).
PANELS = (('train/loss', 'training loss', False), ('eval/top1_acc', 'top-1 error (%)', True),
          ('eval/top5_acc', 'top-5 error (%)', True),
          ('train/learning_rate', 'learning rate', False))


def is_plotted(record) -> bool:
  """Whether a line of metrics.jsonl is a record this draws: train.py's, with its epoch."""
  return writers.is_record(record) and writers.is_number(record.get('epoch'))


def read_run(workdir: str) -> list[dict]:
  """The run's records in step order, one per (step, kind of record); lines that are not such
  records (a crash or a full disk tore them, damaged bytes) are skipped with one warning."""
  path = os.path.join(workdir, 'metrics.jsonl')
  try:
    with open(path, 'rb') as f:
      records, others = writers.parse_jsonl(f.read(), is_plotted)
  except OSError as e:
    raise ConfigError(f'{path}: {e.strerror}: not a workdir that train.py has logged to') from e
  if others:
    print(f'{writers.not_records_warning(path, others)}; skipped', file=sys.stderr)
  latest = {(r['step'], 'eval/loss' in r): r for r in records}  # The later record wins.
  return [latest[key] for key in sorted(latest)]


def paper_error(workdir: str) -> float | None:
  """The paper's top-1 error in the run's config.json: None where the paper reports none, or
  with a warning where config.json is missing or not train.py's."""
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path, encoding='utf-8') as f:
      error = json.load(f)['paper']['top1_error']
    if error is None or writers.is_number(error):
      return error
    problem = f'paper.top1_error is a {type(error).__name__}, not a number'
  except OSError as e:
    problem = e.strerror
  except (ValueError, RecursionError, LookupError, TypeError) as e:  # Not JSON, or not a config.
    problem = f'not the config.json train.py writes ({type(e).__name__}: {e})'
  print(f"warning: {path}: {problem}; drawn without the paper's error", file=sys.stderr)
  return None


def plot(workdirs: list[str], out: str, paper: bool) -> str:
  if not out.lower().endswith('.png'):
    raise ConfigError(f'--out={out} must name a .png file')
  runs = {workdir: read_run(workdir) for workdir in workdirs}
  for workdir, records in runs.items():
    if not any(r.get(key) is not None for r in records for key, _, _ in PANELS):
      raise ConfigError(f'{os.path.join(workdir, "metrics.jsonl")} holds no numbers to draw yet')
  figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.4))
  for panel, (key, label, as_error) in zip(axes, PANELS):
    for workdir, records in runs.items():
      points = [(r['epoch'], r[key]) for r in records if r.get(key) is not None]
      if points:
        x, y = zip(*points)
        panel.plot(x, [100 * (1 - v) if as_error else v for v in y], label=workdir)
      error = paper_error(workdir) if paper and key == 'eval/top1_acc' else None
      if error is not None:
        panel.axhline(error, linestyle='--', color='grey', label=f'paper ({error}%)')
    panel.set_xlabel('epoch')
    panel.set_title(label, fontsize=10)
    panel.grid(alpha=0.3)
  for panel in axes[:2]:
    if panel.get_legend_handles_labels()[0]:
      panel.legend(fontsize=8)
  figure.tight_layout()
  try:
    figure.savefig(out, dpi=100)
  except OSError as e:
    raise ConfigError(f'--out={out}: {e.strerror}') from e
  finally:
    plt.close(figure)
  return out


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('name one or more workdirs')
  if not flags.FLAGS.out:
    cli.fail('--out=FILE.png is required')
  print(cli.run_reporting_errors(plot, argv[1:], flags.FLAGS.out, flags.FLAGS.paper))


if __name__ == '__main__':
  app.run(main)

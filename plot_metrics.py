r"""Training curves of one or more runs, from their metrics.jsonl, in one PNG.

  python plot_metrics.py runs/lenet5 --out=curves.png
  python plot_metrics.py runs/a runs/b --out=curves.png --paper

Panels against epochs: training loss, evaluation top-1 and top-5 error (%), learning rate; runs
overlaid, the legend naming their workdirs. --paper draws each run's config's paper top-1 error
(config.json) as a horizontal line. A record logged twice for one step (an older layout of a
resumed run) is drawn once, the later one.

Exit status: 0 written; 2 a workdir without metrics.jsonl, or no --out (one line).
"""

import json
import os

import matplotlib
from absl import app, flags

matplotlib.use('Agg')  # Files only: no display is needed.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

from training import cli  # pylint: disable=wrong-import-position
from training.errors import ConfigError  # pylint: disable=wrong-import-position

flags.DEFINE_string('out', None, 'The PNG file to write.')
flags.DEFINE_bool('paper', False, "Draw each run's paper top-1 error (from its config.json).")
PANELS = (('train/loss', 'training loss', 1), ('eval/top1_acc', 'top-1 error (%)', -100),
          ('eval/top5_acc', 'top-5 error (%)', -100), ('train/learning_rate', 'learning rate', 1))


def read_run(workdir: str) -> list[dict]:
  """The run's records in step order, one per (step, kind of record)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  try:
    with open(path, encoding='utf-8') as f:
      records = [json.loads(line) for line in f if line.strip()]
  except OSError as e:
    raise ConfigError(f'{path}: {e.strerror}: not a workdir that train.py has logged to') from e
  except json.JSONDecodeError as e:
    raise ConfigError(f'{path} is not JSON lines ({e.msg}, line {e.lineno})') from e
  latest = {(r['step'], 'eval/loss' in r): r for r in records}  # The later record wins.
  return [latest[key] for key in sorted(latest)]


def paper_error(workdir: str) -> float | None:
  try:
    with open(os.path.join(workdir, 'config.json'), encoding='utf-8') as f:
      return json.load(f)['paper']['top1_error']
  except (OSError, ValueError, KeyError):
    return None


def plot(workdirs: list[str], out: str, paper: bool) -> str:
  runs = {workdir: read_run(workdir) for workdir in workdirs}
  figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.4))
  for panel, (key, label, scale) in zip(axes, PANELS):
    for workdir, records in runs.items():
      points = [(r['epoch'], r[key]) for r in records if r.get(key) is not None]
      if points:
        x, y = zip(*points)
        panel.plot(x, [100 + scale * v if scale < 0 else v for v in y],
                   label=os.path.basename(os.path.normpath(workdir)))
      error = paper_error(workdir) if paper and key == 'eval/top1_acc' else None
      if error is not None:
        panel.axhline(error, linestyle='--', color='grey', label=f'paper ({error}%)')
    panel.set_xlabel('epoch')
    panel.set_title(label, fontsize=10)
    panel.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  axes[1].legend(fontsize=8)
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

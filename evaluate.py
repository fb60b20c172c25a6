r"""Evaluates a trained run on the validation split with a paper's protocol, beside its numbers.

  python evaluate.py --config=configs/resnet50.py --workdir=runs/resnet50 --crops=10
  python evaluate.py --config=configs/alexnet.py --workdir=runs/a1 --ensemble=runs/a2,runs/a3

Restores the latest checkpoint in --workdir (and in each --ensemble workdir, averaging the models'
softmax outputs), evaluates every validation image once on one centre crop or on ten crops (four
corners, centre, and their mirrors), prints top-1 and top-5 error beside the errors the config's
paper reports, and writes them to <workdir>/eval_results.json. --crops defaults to the paper's
protocol where that is 1 or 10 crops. `--config.*` overrides work as in train.py; the batch is
`eval_batch_size` images (x crops forward passes).
"""

import json
import os

import jax
from absl import app, flags

from training import cli, evaluation
from training.workdir import write_atomic

cli.define_flags()
flags.DEFINE_integer('crops', None, 'Crops per image: 1 (centre) or 10; default: the paper\'s '
                     'protocol (config.paper.crops) if it is one of these, else 1.')
flags.DEFINE_list('ensemble', [], 'Other workdirs trained with the same config, whose softmax '
                  'outputs are averaged with --workdir\'s.')
RESULTS_FILE = 'eval_results.json'


def error_cell(error: float | None) -> str:
  return '-' if error is None else f'{error:.2f}%'


def report(config, workdirs: list[str], crops: int, result: evaluation.CheckpointResult) -> dict:
  """The table printed for the user and the record written to eval_results.json."""
  m = result.metrics
  top1_error, top5_error = 100 * (1 - m['top1_acc']), 100 * (1 - m['top5_acc'])
  models = f'{len(workdirs)} models' if len(workdirs) > 1 else '1 model'
  steps = ', '.join(map(str, result.checkpoint_steps))
  print(f'{config.model} on {config.dataset}, {m["num_examples"]:,} validation images, '
        f'{crops} crop(s), {models} (checkpoint step {steps})')
  print(f'{"":12}{"top-1 error":>13}{"top-5 error":>13}')
  print(f'{"this run":12}{error_cell(top1_error):>13}{error_cell(top5_error):>13}')
  paper = config.paper
  if paper.top1_error is not None or paper.top5_error is not None:
    print(f'{"paper":12}{error_cell(paper.top1_error):>13}{error_cell(paper.top5_error):>13}'
          f'   ({paper.protocol})')
    if paper.crops and paper.crops != crops:
      print(f'note: the paper evaluated on {paper.crops} crop(s); this used {crops}')
  return {
      'model': config.model, 'dataset': config.dataset, 'crops': crops,
      'workdirs': [os.path.abspath(w) for w in workdirs],
      'checkpoint_steps': result.checkpoint_steps, 'num_examples': m['num_examples'],
      'top1_acc': m['top1_acc'], 'top5_acc': m['top5_acc'], 'loss': m['loss'],
      'top1_error': top1_error, 'top5_error': top5_error,
      'paper': {'top1_error': paper.top1_error, 'top5_error': paper.top5_error,
                'protocol': paper.protocol, 'crops': paper.crops},
  }


def write_results(workdir: str, record: dict) -> None:
  """Replaces eval_results.json whole (written aside, then renamed), never half-written."""
  path = os.path.join(workdir, RESULTS_FILE)
  write_atomic(path, json.dumps(record, indent=2))
  print(f'wrote {path}')


def main(argv):
  cli.start(argv)
  config, workdir = cli.FLAGS.config, cli.FLAGS.workdir
  crops = cli.FLAGS.crops
  if crops is None:
    crops = config.paper.crops if config.paper.crops in (1, 10) else 1
  workdirs = [workdir, *cli.FLAGS.ensemble]
  result = cli.run_reporting_errors(evaluation.evaluate_checkpoints, config, workdirs, crops)
  if jax.process_index() == 0:
    cli.run_reporting_errors(write_results, workdir, report(config, workdirs, crops, result))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)

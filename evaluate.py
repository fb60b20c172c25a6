r"""Evaluates a trained run on the validation split with its paper's protocol, beside its numbers.

  python evaluate.py --config=configs/resnet50.py --workdir=runs/resnet50           # the paper's
  python evaluate.py --config=configs/vgg16.py --workdir=runs/vgg16 --dense --flip \
      --scales=224,256,288                                                          # VGG Table 4
  python evaluate.py --config=configs/alexnet.py --workdir=runs/a1 --ensemble=runs/a2,runs/a3

Restores the latest checkpoint in --workdir (and in each --ensemble workdir, averaging the models'
softmax outputs; the running average of the weights where training kept one, unless --ema=false),
evaluates every validation image once with the protocol, prints top-1 and top-5 error beside the
errors the config's paper reports, and writes them with the protocol to <workdir>/eval_results.json.

The protocol is the paper's (`config.paper`: README, "Evaluation protocols") unless --crops,
--scales, --dense or --flip compose another: crops per image at each scale (1: centre; 10:
AlexNet's; 50: VGG's 5 x 5 grid; 144: GoogLeNet's, at its own four scales), the shorter sides of the
test scales, fully-convolutional testing of the whole image (VGG, ResNet), and the mirror of the
centre crop or whole image (the larger crop sets include their mirrors). Protocols of several
passes average them per image. The host holds `eval_batch_size` images x their crops of one scale
at a time, the device the activations of `eval_batch_size` x `--crop_chunk` crops, or of
`--crop_chunk` whole images per device in dense testing.
"""

import json
import os

import jax
from absl import app, flags

import input_pipeline
from app import cli, evaluation
from input_pipeline import views
from training.errors import ConfigError
from app.workdir import write_atomic

cli.define_flags()
flags.DEFINE_enum('protocol', 'paper', ['paper'], "The paper's protocol (config.paper); "
                  '--crops, --scales, --dense and --flip compose others instead.')
flags.DEFINE_integer('crops', None, 'Crops per image at each scale: '
                     f'{", ".join(map(str, views.by_crops()))} (0 with --dense: the whole image '
                     'only); default 1.')
flags.DEFINE_list('scales', [], 'Shorter sides of the test scales (e.g. 256,384,512); default: '
                  'the config\'s eval_resize.')
flags.DEFINE_boolean('dense', None, 'Fully-convolutional testing of the whole image, the class '
                     'score map averaged (VGG, ResNet).')
flags.DEFINE_boolean('flip', None, 'Also the mirror image of the centre crop or whole image.')
flags.DEFINE_boolean('ema', True, 'Evaluate the running average of the weights where training '
                     'kept one (config.ema_decay > 0); false: the raw weights.')
flags.DEFINE_integer('crop_chunk', 10, 'Crops of each image evaluated together on the device; '
                     'in dense testing, whole images per device in a batch.')
flags.DEFINE_list('ensemble', [], 'Other workdirs trained with the same config, whose softmax '
                  'outputs are averaged with --workdir\'s.')
RESULTS_FILE = 'eval_results.json'
COMPOSING_FLAGS = ('crops', 'scales', 'dense', 'flip')


def protocol_from_flags(config) -> evaluation.Protocol:
  """The paper's protocol, or the one the composing flags give (not both)."""
  given = [name for name in COMPOSING_FLAGS if cli.FLAGS[name].present]
  if not given:
    paper = evaluation.Protocol.of_paper(config)
    if paper != evaluation.Protocol() and not input_pipeline.source_class(
        config.dataset).PHOTOGRAPHS:
      if jax.process_index() == 0:
        print(f'note: {config.dataset} has no photographs to crop or rescale: evaluating the '
              f'images as they are, not with the paper\'s {paper.describe(config)}')
      return evaluation.Protocol()
    return paper
  if cli.FLAGS['protocol'].present:
    raise ConfigError(f'--protocol=paper runs the paper\'s protocol: drop --{", --".join(given)}, '
                      'or drop --protocol to compose one')
  try:
    scales = tuple(int(s) for s in cli.FLAGS.scales)
  except ValueError as e:
    raise ConfigError(f'--scales={",".join(cli.FLAGS.scales)}: shorter sides in pixels, '
                      'e.g. 256,384,512') from e
  dense = bool(cli.FLAGS.dense)
  crops = cli.FLAGS.crops if cli.FLAGS.crops is not None else (0 if dense else 1)
  return evaluation.Protocol(crops=crops, scales=scales, dense=dense, flip=bool(cli.FLAGS.flip))


def error_cell(error: float | None) -> str:
  return '-' if error is None else f'{error:.2f}%'


def report(config, workdirs: list[str], protocol: evaluation.Protocol,
           result: evaluation.CheckpointResult) -> dict:
  """The table printed for the user and the record written to eval_results.json."""
  m = result.metrics
  top1_error, top5_error = 100 * (1 - m['top1_acc']), 100 * (1 - m['top5_acc'])
  models = f'{len(workdirs)} models' if len(workdirs) > 1 else '1 model'
  weights = ', averaged weights' if result.ema else ''
  steps = ', '.join(map(str, result.checkpoint_steps))
  description = protocol.describe(config)
  print(f'{config.model} on {config.dataset}, {m["num_examples"]:,} validation images, '
        f'{description}, {models}{weights} (checkpoint step {steps})')
  print(f'{"":12}{"top-1 error":>13}{"top-5 error":>13}')
  print(f'{"this run":12}{error_cell(top1_error):>13}{error_cell(top5_error):>13}')
  paper = config.paper
  paper_protocol = evaluation.Protocol.of_paper(config)
  if paper.top1_error is not None or paper.top5_error is not None:
    print(f'{"paper":12}{error_cell(paper.top1_error):>13}{error_cell(paper.top5_error):>13}'
          f'   ({paper.protocol})')
    if protocol.passes(config) != paper_protocol.passes(config):
      print(f'note: the paper\'s numbers are for {paper_protocol.describe(config)}')
  return {
      'model': config.model, 'dataset': config.dataset,
      'protocol': {'description': description, 'crops': protocol.crops,
                   'scales': list(protocol.resolved_scales(config)), 'dense': protocol.dense,
                   'flip': protocol.flip, 'views': protocol.views_per_image(config),
                   'paper': protocol.passes(config) == paper_protocol.passes(config)},
      'ema': result.ema, 'workdirs': [os.path.abspath(w) for w in workdirs],
      'checkpoint_steps': result.checkpoint_steps, 'num_examples': m['num_examples'],
      'top1_acc': m['top1_acc'], 'top5_acc': m['top5_acc'], 'loss': m['loss'],
      'top1_error': top1_error, 'top5_error': top5_error,
      'paper': {'top1_error': paper.top1_error, 'top5_error': paper.top5_error,
                'protocol': paper.protocol},
  }


def write_results(workdir: str, record: dict) -> None:
  """Replaces eval_results.json whole (written aside, then renamed), never half-written."""
  path = os.path.join(workdir, RESULTS_FILE)
  write_atomic(path, json.dumps(record, indent=2))
  print(f'wrote {path}')


def main(argv):
  cli.start(argv)
  config, workdir = cli.FLAGS.config, cli.FLAGS.workdir
  protocol = cli.run_reporting_errors(protocol_from_flags, config)
  if cli.FLAGS.crop_chunk <= 0:
    cli.fail(f'--crop_chunk={cli.FLAGS.crop_chunk} must be positive')
  workdirs = [workdir, *cli.FLAGS.ensemble]
  result = cli.run_reporting_errors(evaluation.evaluate_checkpoints, config, workdirs, protocol,
                                    ema=cli.FLAGS.ema, chunk=cli.FLAGS.crop_chunk)
  if jax.process_index() == 0:
    cli.run_reporting_errors(write_results, workdir, report(config, workdirs, protocol, result))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)

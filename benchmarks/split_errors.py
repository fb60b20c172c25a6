r"""Top-1 error of a trained run on every split of its TFDS dataset, training split included.

  python -m benchmarks.split_errors --config=configs/lenet5_1998.py --workdir=runs/lenet5_1998

The papers of the small datasets report the training error after the last pass beside the test
error (LeCun et al. 1998: 0.35% and 0.95% for LeNet-5 on MNIST); train.py evaluates the test split
only. This restores the run's latest checkpoint (its averaged weights where training kept them)
and counts the errors of every image of each split once, in evaluation mode, with the images
prepared as training prepares them (zero-padded to the model's input, the run's standardisation).
"""

import sys

import jax
import numpy as np
from absl import app, flags

import input_pipeline
from app import cli, inference
from training.errors import ConfigError

cli.define_flags()
flags.DEFINE_integer('batch', 1000, 'Images per forward pass.', lower_bound=1)


def split_error(checkpoint, images: np.ndarray, labels: np.ndarray, batch: int) -> int:
  """How many of `images` (uint8 NHWC at the model's size) the model classifies wrongly."""
  logits = jax.jit(checkpoint.logits)
  wrong = 0
  for start in range(0, len(labels), batch):
    predicted = np.argmax(logits(checkpoint.params, images[start:start + batch]), axis=-1)
    wrong += int((predicted != labels[start:start + batch]).sum())
  return wrong


def split_errors(config, workdir: str, batch: int) -> None:
  input_pipeline.import_tensorflow_quietly()
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from input_pipeline import tfds_source  # pylint: disable=import-outside-toplevel
  checkpoint = inference.load(config, workdir)
  config = checkpoint.config
  if config.dataset not in tfds_source.SPECS:
    raise ConfigError(f'split_errors reads the small TFDS datasets '
                      f'({", ".join(tfds_source.SPECS)}); this run trained on {config.dataset}')
  builder = tfds_source.prepared_builder(config.dataset, config.data_dir)
  print(f'{config.model} at step {checkpoint.step} on {config.dataset}:')
  for split in builder.info.splits:
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    images, labels = data['image'], data['label']
    pad = (config.image_size - images.shape[1]) // 2
    images = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    wrong = split_error(checkpoint, images, labels, batch)
    print(f'  {split}: {100 * wrong / len(labels):.2f}% error ({wrong:,} of {len(labels):,})')


def main(argv):
  cli.start(argv)
  sys.exit(cli.run_reporting_errors(split_errors, cli.FLAGS.config, cli.FLAGS.workdir,
                                    cli.FLAGS.batch))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)

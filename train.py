r"""Trains a CNN from a config, resuming from the last checkpoint in --workdir if there is one.

  python train.py --config=configs/lenet5.py --workdir=runs/lenet5
  python train.py --config=configs/lenet5.py --config.batch_size=256 --workdir=runs/lenet5_b256
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

import cnns
import input_pipeline
from training import loop
from training.errors import ConfigError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file (configs/<model>.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
flags.mark_flags_as_required(['config', 'workdir'])

# Errors a user causes end with one line and exit status 2; anything else is a bug: traceback.
USER_ERRORS = (ConfigError, input_pipeline.DataError, cnns.UnknownModelError)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  try:
    loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)

r"""Imports published weights (Keras Applications, torchvision) as a checkpoint of this project.

  python import_weights.py --config=configs/resnet50.py --weights=resnet50-0676ba61.pth \
      --workdir=runs/resnet50_torchvision
  python evaluate.py --config=configs/resnet50.py --workdir=runs/resnet50_torchvision
  python predict.py --config=configs/resnet50.py --workdir=runs/resnet50_torchvision cat.jpg

Reads the source's own file (Keras `.h5` as published or `.weights.h5` as Keras 3 saves it,
torchvision `.pth`; README, "Published weights"), maps every tensor onto the config's model with
the options that make it compute the source's function (ResNet: the source's stride placement and
padding) and writes step 0 of a run in --workdir, recording those options and the source's input
convention so that evaluate.py, predict.py and `--config.init_from` apply them. A file that does
not fit the config is one line naming the first tensor that does not; nothing is written then. A
failure while writing (a full disk) is one line too, and removes what the import had written.
A torchvision file named with a hash prefix, as torch.hub names them (`resnet50-0676ba61.pth`), is
imported only if its SHA-256 starts with it (or with --accept_hash_mismatch).

Exit status: 0 imported; 2 a user or environment error (one line).
"""

import json
import os
import shutil

import jax
import ml_collections
from absl import app, flags

import input_pipeline
from app import cli, resume
from app.assembly import assemble_from_record, validate
from app.workdir import WorkdirLock, write_atomic
from cnns import published
from training import optim
from training.checkpoints import Checkpointer, committed_steps, disk_full
from training.errors import ConfigError
from training.state import TrainState, count_params, with_ema

cli.define_flags()
flags.DEFINE_string('weights', None, 'The published weights file: Keras .h5 / .weights.h5, or '
                    'torchvision .pth.')
flags.DEFINE_bool('accept_hash_mismatch', False, 'Import a torchvision file whose SHA-256 does not '
                  'start with the hex digits in its name (resnet50-0676ba61.pth: 0676ba61), '
                  'which torch.hub would refuse.')


def variant_config(config, chosen: published.Variant):
  """`config` with the model options and input convention of the source's model."""
  adapted = ml_collections.ConfigDict(config.to_dict())
  adapted.model_kwargs.update(chosen.model_kwargs)
  adapted.input_convention = chosen.input_convention
  adapted.lock()
  return adapted


def refuse_taken(directory: str) -> None:
  if committed_steps(directory):
    raise ConfigError(f'{directory} already holds checkpoints: import into a new --workdir')


def remove_added(directory: str, before: set[str] | None) -> None:
  """Removes what a failed import wrote in `directory`, all directories (Orbax's temporary ones of
  the step, as large as the weights, or the step itself): those not in `before`, or `directory`
  itself where the import made it (`before` None). What was there before is kept."""
  if before is None:
    shutil.rmtree(directory, ignore_errors=True)
    return
  for name in set(os.listdir(directory)) - before:
    shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def import_weights(config, weights: str, workdir: str, accept_hash_mismatch: bool = False) -> None:
  if not os.path.isfile(weights):
    raise ConfigError(f'--weights={weights}: no such file')
  chosen = published.variant(weights, config.model)
  config = variant_config(config, chosen)
  validate(config, workdir)
  if config.dataset != 'imagenet2012' or config.num_classes <= 0 or config.in_channels <= 0:
    raise ConfigError('published weights are ImageNet models: import them with an ImageNet '
                      'config as it is, and fine-tune on other data with --config.init_from')
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  refuse_taken(directory)
  assembly = assemble_from_record(config, config.to_dict())
  architecture = assembly.architecture
  if chosen.source == 'keras':
    input_pipeline.import_tensorflow_quietly()  # Keras runs on TensorFlow: its notices, quiet.
  params, batch_stats = published.load(weights, chosen, assembly.abstract_model,
                                       check_hash=not accept_hash_mismatch)

  tx = assembly.optimizer(steps_per_epoch=1)
  state = TrainState(step=jax.numpy.zeros((), 'int32'), params=params, batch_stats=batch_stats,
                     opt_state=tx.init(params))
  if optim.ema_decay(config) > 0:
    # Published weights are the final (averaged) ones: the averages start there, as the config's
    # training keeps them.
    state = with_ema(state, optim.ema_batch_stats(config))
  state = jax.device_put(state, assembly.replicated)
  record = {'config': resume.resolved_config(config, architecture),
            'dataset': input_pipeline.source_class(config.dataset).known_record(config.dataset,
                                                                                config),
            'imported_from': {'file': os.path.abspath(weights), 'source': chosen.source,
                              'model': chosen.name}}
  lock = WorkdirLock(workdir, holder='import_weights.py')
  lock.acquire()
  try:
    refuse_taken(directory)  # Again, now that no other process can be writing here.
    made = not os.path.isdir(directory)
    # Also removes what an interrupted import left in Orbax's temporary directories.
    checkpointer = Checkpointer(directory, every_steps=1, keep=config.keep_checkpoints)
    before = None if made else set(os.listdir(directory))
    try:
      checkpointer.save(0, state, record)
      checkpointer.close()
      if jax.process_index() == 0:
        write_atomic(os.path.join(workdir, 'config.json'),
                     json.dumps(record['config'], indent=2, sort_keys=True) + '\n')
    except BaseException as error:
      checkpointer.abandon()
      if jax.process_index() == 0:
        remove_added(directory, before)
      if not disk_full(error):
        raise
      raise ConfigError(f'disk full while writing {workdir}: free space and rerun the same '
                        'command') from error
  finally:
    lock.release()
  if jax.process_index() == 0:
    options = ', '.join(f'{k}={v}' for k, v in chosen.model_kwargs.items())
    print(f'imported {chosen.source} {chosen.name} from {weights}: {count_params(params):,} '
          f'parameters as {config.model}' + (f' ({options})' if options else '')
          + f', input convention {chosen.input_convention!r}; saved in {directory}')


def main(argv):
  cli.start(argv, required=('weights',))
  cli.run_reporting_errors(import_weights, cli.FLAGS.config, cli.FLAGS.weights,
                           cli.FLAGS.workdir, cli.FLAGS.accept_hash_mismatch)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)

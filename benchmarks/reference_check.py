r"""Step-for-step check of a config's training against the reference trainer behind the published
weights it is the recipe for (README, "Why the numbers should reproduce").

  python -m benchmarks.reference_check --config=configs/resnet50_torchvision.py \
      --reference=torchvision --steps=10 [--image_size=224] [--batch_size=8] \
      [--steps_per_epoch=5] [--noscale_learning_rate]
  python -m benchmarks.reference_check --config=configs/inception_resnet_v2_slim.py \
      --reference=slim --steps=10

The references (benchmarks/reference_trainers/, one module each, which say what of the
reference's own code they run and how):
- torchvision: references/classification/train.py, in Debian's system Python;
- slim: TF-slim's train_image_classifier.py on Keras' port of slim's Inception-ResNet-v2, in the
  virtual environment's TensorFlow.

Both sides start from the same weights: the reference's model with random weights, which the
project's own importer (cnns/published) reads, whose mapping of names and layouts then also
brings the reference's states back for the comparison: weights, BatchNorm statistics, optimizer
state and averages. Both take the same batches: random standardised pixels (what the input
pipeline's standardisation gives) and labels, passed to the project's train step with the
identity standardisation.

- The reference side runs in a process of its own, saving its state after each step.
- The project side runs the config's own jitted train step and optimizer
  (`app.assembly.Assembly.train_step` and `.optimizer`), as train.py's loop drives them, on one
  device: one step from each of the reference's states (its parameters, BatchNorm statistics,
  optimizer state, averages and step count imported), compared with the reference's next state;
  then the whole run from the initial weights, compared with the reference's last state, and
  once more from those weights moved by one rounding of their dtype.

Why one step at a time: the gradient is not a continuous function of the weights (a ReLU input
or a max-pool pair at a tie switches it), and a run crosses such switches. Two runs grow apart
step by step until, about 1e-9 apart, one's inputs fall on the other side of a switch and the
difference jumps by orders of magnitude in one step: ResNet-50's float64 run here and the same
run started one rounding (1e-16) away end 10 steps at 224x224 about 1e-2 apart. The whole run's
difference from the reference is printed beside that floor; the steps are shown equal one at a
time.

The config is used as it is but for the check's sizes and time: --image_size, --batch_size (the
rate scaled with it: the recipe's rate per example, Goyal et al.'s linear scaling rule; at the
recipe's 0.1 a batch of 8 takes steps 32 times the recipe's per example, and ResNet-50's loss goes
from 7 to 53 in four steps), --steps, and an epoch of --steps_per_epoch steps on both sides, after
which the rate decays (the staircase's period, `lr_decay_every_epochs`, is one epoch of the
check), so that a change of the learning rate falls among the steps. Dropout is off on both
sides: two frameworks cannot draw the same masks. What the config sets that the reference's
recipe does not is kept: it shows as a difference (`--config.batchnorm_running_var=biased`
against torchvision: Flax's running variance); the check refuses only what the reference
cannot run (another optimizer or schedule, warm-up, another network).

Prints each step's learning rate on both sides, the reference's loss (its cross-entropy), the
relative difference of the whole runs' losses and the largest relative difference (max |ours -
reference| / max |reference| of a tensor) of the compared parts of the state after the step from
the reference's state; then the largest of those over the steps, the whole run's and the
rounding floor's, the tensors named; in float64 (JAX's 64-bit mode and the reference's) and in
float32. Never asserted on here: tests/test_reference.py holds small cases to 1e-9.

Memory: a float64 state of Inception-ResNet-v2 with RMSProp and averages is 1.8 GB. At 299x299
and batch 1 this process peaked at 10 GB and TensorFlow's at 5 GB with MALLOC_MMAP_THRESHOLD_=
1048576 in the environment, without which glibc keeps the memory of the states freed step after
step (over 14 GB here); at batch 8 TensorFlow's eager tape alone takes 12 GB.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ''):  # Run as a script: make the project's packages importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from app import cli
from app.assembly import assemble_from_record, validate
from benchmarks import reference_trainers
from training import mesh as mesh_lib
from training import optim, steps
from training.errors import ConfigError
from training.state import TrainState, with_ema

FLAGS = flags.FLAGS
DTYPES = ('float64', 'float32')
# Compared for every reference; each adds its own parts (reference_trainers).
COMMON_PARTS = (('parameters', lambda state: state.params),
                ('BatchNorm statistics', lambda state: state.batch_stats))


class ReferenceUnavailable(ConfigError):
  """The reference's interpreter cannot run it."""


def check_config(config, *, image_size: int, batch_size: int,
                 scale_learning_rate: bool = True) -> ml_collections.ConfigDict:
  """`config` at the check's sizes, its staircase's period one epoch of the check, with images
  taken as they come (standardised already); with `scale_learning_rate`, its rate times
  batch_size / config.batch_size: the recipe's rate per example."""
  checked = ml_collections.ConfigDict(config.to_dict())
  checked.update(image_size=image_size, batch_size=batch_size, input_convention='dataset',
                 lr_decay_every_epochs=1.0)
  if scale_learning_rate:
    checked.learning_rate = config.learning_rate * batch_size / config.batch_size
  checked.lock()
  validate(checked, tempfile.gettempdir())
  return checked


def reference_steps(reference, directory: str, arguments: dict, batches: dict):
  """Runs `reference`'s script on `batches`; yields its versions, then the loss and rate of each
  step (each dtype's in turn) with its state saved in `directory`, going on to the next when
  asked for it."""
  np.savez(os.path.join(directory, 'batches.npz'), **batches)
  with open(os.path.join(directory, 'args.json'), 'w', encoding='utf-8') as f:
    json.dump(arguments, f)
  with tempfile.TemporaryFile('w+') as stderr:
    try:
      process = subprocess.Popen([reference.PYTHON, '-c', reference.SCRIPT, directory],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                 text=True)
    except OSError as e:
      raise ReferenceUnavailable(f'cannot run {reference.PYTHON} ({e.strerror}): '
                                 f'{reference.INSTALL}') from e
    try:
      while line := process.stdout.readline():
        yield json.loads(line)
        try:
          process.stdin.write('\n')
          process.stdin.flush()
        except BrokenPipeError:
          break  # It has ended: its status says how.
    finally:
      if process.poll() is None:
        process.kill()
      process.wait()
    name = reference.__name__.rsplit('.', 1)[-1]
    if process.returncode < 0:
      cause = signal.Signals(-process.returncode).name
      raise ConfigError(f'the {name} reference was killed by {cause}' + (
          ' (out of memory?): a smaller --batch_size or --image_size needs less'
          if cause == 'SIGKILL' else ''))
    if process.returncode:
      stderr.seek(0)
      message = stderr.read()
      if 'No module named' in message:
        raise ReferenceUnavailable(f'{reference.PYTHON} cannot import {reference.NEEDS}: '
                                   f'{reference.INSTALL}')
      raise RuntimeError(f'the {name} reference failed:\n{message}')


class Trainer:
  """The config's own train step and optimizer (`Assembly.train_step`, `.optimizer`), and the
  states the reference's files give (`reference_trainers`: `initial`, `after`)."""

  def __init__(self, config, directory: str, steps_per_epoch: int):
    if jax.device_count() > 1 and config.batchnorm == 'per_device':
      raise ConfigError("batchnorm='per_device' on several devices: the reference normalises "
                        'the whole batch; run the check on one device (CUDA_VISIBLE_DEVICES=0)')
    channels = config.in_channels
    self.config, self.directory = config, directory
    self.assembly = assemble_from_record(
        config, config.to_dict(), dataset={'mean': [0.0] * channels, 'std': [1.0] * channels})
    self.abstract = self.assembly.abstract_model
    for _, module in nnx.iter_modules(self.abstract):
      if isinstance(module, nnx.Dropout):
        module.rate = 0.0
    self.tx = self.assembly.optimizer(steps_per_epoch)
    self._step = self.assembly.train_step(nnx.graphdef(self.abstract), self.tx)
    self.schedule = optim.learning_rate_schedule(config, steps_per_epoch)

  def state(self, params, batch_stats, step: int = 0, ema: tuple | None = None,
            **opt_state) -> TrainState:
    """The train state after `step` steps: the optimizer's state at its start but for the named
    parts of it (`trace=...`: optax's names), the averages `ema` (params, batch_stats) or, where
    the config keeps averages, ones that start at the weights."""
    optimizer = self.tx.init(params)
    if opt_state:
      optimizer = optax.tree_utils.tree_set(optimizer, count=jnp.asarray(step, jnp.int32),
                                            **opt_state)
    state = TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                       batch_stats=batch_stats, opt_state=optimizer)
    if ema is not None:
      state = state.replace(ema_params=ema[0], ema_batch_stats=ema[1])
    elif optim.ema_decay(self.config) > 0:
      state = with_ema(state, optim.ema_batch_stats(self.config))
    return jax.device_put(state, self.assembly.replicated)

  def step(self, state: TrainState, images, labels) -> tuple[TrainState, float]:
    """One step of the config's from `state`, whose averaged statistics, where the config keeps
    none (and the reference does), are left behind."""
    if not optim.ema_batch_stats(self.config):
      state = state.replace(ema_batch_stats=None)
    metrics = jax.device_put(steps.zero_train_metrics(), self.assembly.replicated)
    state, metrics = self._step(state, metrics, mesh_lib.to_global(
        {'image': images, 'label': labels}, self.assembly.data_sharding))
    return state, float(metrics['loss'] / metrics['count'])

  def train(self, state: TrainState, batches: dict) -> tuple[TrainState, list[float]]:
    losses = []
    for images, labels in zip(batches['images'], batches['labels']):
      state, loss = self.step(state, images, labels)
      losses.append(loss)
    return state, losses


def perturbed(tree, seed: int = 0):
  """`tree` with each number moved by about one rounding of its dtype (relative machine epsilon
  times a normal draw)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: (x * (1 + np.finfo(x.dtype).eps * rng.standard_normal(x.shape))
                                 ).astype(x.dtype), tree)


def largest_difference(ours, other) -> tuple[float, str] | None:
  """(max |ours - other| / max |other|, the tensor's path) of the tensor where it is largest;
  None for no tensors. A tensor of `other` whose values all lie below one rounding (the dtype's
  epsilon) of the largest value of `other` holds rounding noise, which says nothing relative to
  itself: it is measured against that largest value. Inception-ResNet-v2's last up-projection
  bias is one: conv_7b's BatchNorm subtracts a per-channel constant, so its gradient is zero in
  exact arithmetic and both sides' values are roundings (about 1e-19 in float64)."""
  ours, other = jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(other)
  if not ours:
    return None
  scales = [np.abs(b).max() for b in other]
  largest = max(scales)
  rows = []
  for (path, a), b, scale in zip(ours, other, scales):
    difference = np.array(a, np.float64)  # A copy, worked in place: VGG's fc6 is 0.8 GB.
    np.abs(np.subtract(difference, b, out=difference), out=difference)
    if scale < np.finfo(b.dtype).eps * largest:
      scale = largest
    rows.append((difference.max() / (scale if scale > 0 else 1.0),
                 '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)))
  return max(rows)


def differences(parts: tuple, ours: TrainState, theirs: TrainState) -> dict:
  return {name: largest_difference(get(ours), get(theirs)) for name, get in parts}


def compare_dtype(trainer: Trainer, reference, run, batches: dict) -> dict:
  """Each step of the reference's process `run` against this project's step from the
  reference's previous state; then this project's whole run from the initial weights against
  the reference's, and against its own run from those weights moved by one rounding. At most
  three states at a time are held (VGG-16's are 2.2 GB in float64, Inception-ResNet-v2's with
  RMSProp and averages 1.8 GB)."""
  parts = (*COMMON_PARTS, *reference.parts(trainer.config))
  previous = trainer.state(*reference.initial(trainer))
  rows = []
  for step, (images, labels) in enumerate(zip(batches['images'], batches['labels'])):
    done = next(run)
    ours, loss = trainer.step(previous, images, labels)
    del previous
    theirs = reference.after(trainer, step + 1)
    rows.append({**done, 'rate_here': float(trainer.schedule(step)), 'one_step_loss': loss,
                 'one_step': differences(parts, ours, theirs)})
    del ours
    previous = theirs
  del theirs, previous
  next(run)  # Its training done, the reference holds no model; its last state stays on disk.
  params, batch_stats = reference.initial(trainer)
  ours, losses = trainer.train(trainer.state(params, batch_stats), batches)
  result = {'steps': rows, 'run': differences(parts, ours, reference.after(trainer, len(rows)))}
  rounded, _ = trainer.train(trainer.state(perturbed(params), batch_stats), batches)
  for row, loss in zip(rows, losses):
    row['run_loss'] = loss
  return {**result, 'rounding': differences(parts, ours, rounded), 'parts': [n for n, _ in parts]}


def compare(config, *, reference: str, steps_count: int, steps_per_epoch: int, image_size: int,
            batch_size: int, scale_learning_rate: bool = True,
            dtypes: tuple[str, ...] = DTYPES) -> dict:
  """Both sides' `steps_count` steps in each of `dtypes` (`compare_dtype`), and the seconds each
  side took."""
  if reference not in reference_trainers.NAMES:
    raise ConfigError(f'unknown --reference={reference}; known: '
                      f'{", ".join(reference_trainers.NAMES)}')
  module = reference_trainers.load(reference)
  config = check_config(config, image_size=image_size, batch_size=batch_size,
                        scale_learning_rate=scale_learning_rate)
  arguments = module.arguments(config, steps_count, steps_per_epoch, dtypes)
  rng = np.random.default_rng(config.seed)
  batches = {'images': rng.standard_normal(
                 (steps_count, batch_size, image_size, image_size, config.in_channels),
                 np.float32),
             'labels': rng.integers(0, config.num_classes, (steps_count, batch_size), np.int32)}
  with tempfile.TemporaryDirectory() as directory:
    waited = 0.0

    def timed(items):  # The reference's time: until each of its items comes.
      nonlocal waited
      while True:
        start = time.perf_counter()
        item = next(items, None)
        waited += time.perf_counter() - start
        if item is None:
          return
        yield item

    start = time.perf_counter()
    run = timed(reference_steps(module, directory, arguments, batches))
    result = {'reference': reference, 'versions': next(run), 'config': config, 'dtypes': dtypes,
              'steps_per_epoch': steps_per_epoch}
    for dtype in dtypes:
      with jax.enable_x64(dtype == 'float64'):
        checked = ml_collections.ConfigDict(config.to_dict())
        checked.dtype = dtype
        result[dtype] = compare_dtype(Trainer(checked, directory, steps_per_epoch), module, run,
                                      batches)
    next(run, None)  # Lets the reference end, and reports how it ended.
  result['seconds'] = {reference: waited, 'here': time.perf_counter() - start - waited}
  return result


def report(result: dict, config_path: str) -> str:
  config, dtypes, name = result['config'], result['dtypes'], result['reference']
  versions = ', '.join(f'{k} {v}' for k, v in result['versions'].items())
  size = config.image_size
  averaged = (f', averages of decay {optim.ema_decay(config):g}'
              if optim.ema_decay(config) > 0 else '')
  lines = [f'{config.model} ({config_path}) against {versions}, on '
           f'{jax.devices()[0].device_kind}: {config.batch_size} images of {size}x{size} a step, '
           f'rate {config.learning_rate:g}, {result["steps_per_epoch"]} steps an epoch, the '
           f'rate divided by {config.lr_decay_factor:g} every {config.lr_decay_every_epochs:g} '
           f'epoch{averaged}',
           f"a: relative difference of the losses, this project's run against {name}'s",
           f"b: largest relative difference (max |ours - {name}'s| / max |{name}'s| of a tensor) "
           f"of {', '.join(result[dtypes[0]]['parts'])} after one step of each from {name}'s "
           'state before it',
           f'{"step":>4} {"rate":>9} {"here":>9}' + ''.join(
               f' {"loss " + d:>14} {"a":>7} {"b":>7}' for d in dtypes)]
  for step, first in enumerate(result[dtypes[0]]['steps']):
    row = f'{step + 1:>4} {first["rate"]:>9.3g} {first["rate_here"]:>9.3g}'
    for dtype in dtypes:
      done = result[dtype]['steps'][step]
      one_step = max(found[0] for found in done['one_step'].values() if found)
      run = abs(done['run_loss'] - done['loss']) / done['loss']
      row += f' {done["loss"]:>14.9f} {run:>7.0e} {one_step:>7.0e}'
    lines.append(row)
  lines.append(f'after {len(result[dtypes[0]]["steps"])} steps, the largest relative difference '
               f"of a tensor: one step from {name}'s state (the largest of the steps); this "
               f"project's run from {name}'s; this project's run from its own started one "
               'rounding away')
  for dtype in dtypes:
    for part in result[dtype]['parts']:
      one_step = max((row['one_step'][part] for row in result[dtype]['steps']
                      if row['one_step'][part]), default=None)
      run, rounding = result[dtype]['run'][part], result[dtype]['rounding'][part]
      lines.append(f'  {dtype}  {part:<21}' + (
          f'one step {one_step[0]:.1e} ({one_step[1]}), run {run[0]:.1e} ({run[1]}), rounding '
          f'{rounding[0]:.1e}' if run else 'none'))
  seconds = result['seconds']
  lines.append(f'wall time: {name} {seconds[name]:.0f} s, this project {seconds["here"]:.0f} s '
               '(compilation included)')
  return '\n'.join(lines)


def define_flags() -> None:
  config_flags.DEFINE_config_file('config', None, 'Config to check (configs/<model>.py).',
                                  lock_config=True)
  flags.DEFINE_enum('reference', 'torchvision', reference_trainers.NAMES,
                    'The reference trainer (benchmarks/reference_trainers/).')
  flags.DEFINE_integer('steps', 10, 'Training steps on each side.', lower_bound=1)
  flags.DEFINE_integer('steps_per_epoch', 0, 'Steps of an epoch of the check, after which the '
                       'rate decays; 0: half of --steps, rounded up.', lower_bound=0)
  flags.DEFINE_integer('image_size', 0, "Image size; 0: the config's.", lower_bound=0)
  flags.DEFINE_integer('batch_size', 8, 'Images a step.', lower_bound=1)
  flags.DEFINE_bool('scale_learning_rate', True, "The config's rate times --batch_size / its "
                    "batch_size (the recipe's rate per example); --noscale_learning_rate: as it "
                    'is.')
  flags.mark_flags_as_required(['config'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  result = cli.run_reporting_errors(
      compare, config, reference=FLAGS.reference, steps_count=FLAGS.steps,
      steps_per_epoch=FLAGS.steps_per_epoch or -(-FLAGS.steps // 2),
      image_size=FLAGS.image_size or config.image_size, batch_size=FLAGS.batch_size,
      scale_learning_rate=FLAGS.scale_learning_rate)
  print(report(result, FLAGS['config'].config_filename))


if __name__ == '__main__':
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)

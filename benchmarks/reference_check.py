r"""Step-for-step check of a config's training against the reference trainer behind the published
weights it is the recipe for (README, "Why the numbers should reproduce").

  python -m benchmarks.reference_check --config=configs/resnet50_torchvision.py \
      --reference=torchvision --steps=10 [--image_size=224] [--batch_size=8] \
      [--steps_per_epoch=5] [--noscale_learning_rate]

Both sides start from the same weights: the reference's model with random weights, built by
torchvision in Debian's system Python (python3-torchvision, which setup.sh installs; the virtual
environment has no PyTorch), saved as its state dict and imported here by the project's own
importer (cnns/published), whose mapping of names and layouts then also brings the reference's
final weights, BatchNorm statistics and momentum buffers back for the comparison. Both take the
same batches: random standardised pixels (what the input pipeline's standardisation gives) and
labels, passed to the project's train step with the identity standardisation.

- The reference side runs torchvision's own code as references/classification/train.py does:
  `torchvision.models.<model>`, `torch.optim.SGD` over `model.parameters()` (weight decay on every
  parameter: train.py without --norm-weight-decay), `torch.nn.CrossEntropyLoss(label_smoothing)`,
  `torch.optim.lr_scheduler.StepLR` stepped once per epoch, `model.train()`, and train_one_epoch's
  order of calls, saving its state after each step.
- The project side runs the config's own jitted train step and optimizer
  (`app.assembly.Assembly.train_step` and `.optimizer`), as train.py's loop drives them, on one
  device: one step from each of the reference's states (its parameters, BatchNorm statistics,
  momentum buffers and step count imported), compared with the reference's next state; then the
  whole run from the initial weights, compared with the reference's last state, and once more
  from those weights moved by one rounding of their dtype.

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
which the rate decays (StepLR's step size, `lr_decay_every_epochs`, is one epoch of the check), so
that a change of the learning rate falls among the steps. Dropout is off on both sides: two
frameworks cannot draw the same masks. What the config sets that the reference's recipe does not
is kept: it shows as a difference (`--config.batchnorm_running_var=biased`: Flax's running
variance); the check refuses only what train.py cannot express (another optimizer or schedule,
warm-up, averaging).

Prints each step's learning rate on both sides, the reference's loss, the relative difference of
the whole runs' losses and the largest relative difference (max |ours - reference| / max
|reference| of a tensor) of parameters, BatchNorm statistics and momentum buffers after the step
from the reference's state; then the largest of those over the steps, the whole run's and the
rounding floor's, the tensors named; in float64 (JAX's 64-bit mode, torch's `.double()`) and in
float32. Never asserted on here: tests/test_reference.py holds a small case to 1e-9.
"""

import json
import os
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
from cnns import published
from training import mesh as mesh_lib
from training import optim, steps
from training.errors import ConfigError
from training.state import TrainState

FLAGS = flags.FLAGS
PYTHON = '/usr/bin/python3'  # Debian's, with python3-torchvision.
REFERENCES = ('torchvision',)
DTYPES = ('float64', 'float32')
STATE_PARTS = ('parameters', 'BatchNorm statistics', 'momentum buffers')

# references/classification/train.py's training on the check's batches: main()'s model,
# criterion, optimizer and StepLR, train_one_epoch's calls, lr_scheduler.step() after each epoch.
# Saves the initial weights, then after each step its state dict and its momentum buffers (as a
# state dict whose parameters are the buffers), announcing each on a line of stdout and going on
# when a line comes on stdin, so that the other side reads each state before the next is made;
# announces the end of each dtype's training once its model is freed.
TORCHVISION = r"""
import copy, json, sys
import numpy as np, torch, torchvision

def announce(message):
  print(json.dumps(message), flush=True)
  if not sys.stdin.readline():  # The other side has gone.
    sys.exit(1)

def train(dtype):
  net = copy.deepcopy(model).to(getattr(torch, dtype))
  criterion = torch.nn.CrossEntropyLoss(label_smoothing=args['label_smoothing'])
  optimizer = torch.optim.SGD(net.parameters(), lr=args['lr'], momentum=args['momentum'],
                              weight_decay=args['weight_decay'], nesterov=args['nesterov'])
  lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args['lr_step_size'],
                                                 gamma=args['lr_gamma'])
  step = 0
  while step < args['steps']:
    net.train()
    for _ in range(min(args['steps_per_epoch'], args['steps'] - step)):
      output = net(images[step].to(getattr(torch, dtype)))
      optimizer.zero_grad()
      loss = criterion(output, labels[step])
      loss.backward()
      optimizer.step()
      buffers = {name: optimizer.state[p]['momentum_buffer'] for name, p in net.named_parameters()}
      torch.save(net.state_dict(), f'{directory}/state.pth')
      torch.save({**net.state_dict(), **buffers}, f'{directory}/momentum.pth')
      announce({'loss': loss.item(), 'rate': optimizer.param_groups[0]['lr']})
      step += 1
    lr_scheduler.step()

directory = sys.argv[1]
with open(f'{directory}/args.json') as f:
  args = json.load(f)
torch.manual_seed(args['seed'])
model = torchvision.models.__dict__[args['model']](num_classes=args['num_classes'])
torch.save(model.state_dict(), f'{directory}/initial.pth')
for module in model.modules():
  if isinstance(module, torch.nn.Dropout):
    module.p = 0.0
batches = np.load(f'{directory}/batches.npz')
images = torch.from_numpy(batches['images']).permute(0, 1, 4, 2, 3)  # NHWC -> NCHW.
labels = torch.from_numpy(batches['labels']).long()
announce({'torch': torch.__version__, 'torchvision': torchvision.__version__})
for dtype in args['dtypes']:
  train(dtype)
  announce({'trained': dtype})  # Its model freed: the other side has the memory to itself.
"""


class ReferenceUnavailable(ConfigError):
  """Debian's system Python cannot run torchvision."""


def check_config(config, *, image_size: int, batch_size: int,
                 scale_learning_rate: bool = True) -> ml_collections.ConfigDict:
  """`config` at the check's sizes, its StepLR period one epoch of the check, with images taken
  as they come (standardised already); with `scale_learning_rate`, its rate times
  batch_size / config.batch_size: the recipe's rate per example."""
  checked = ml_collections.ConfigDict(config.to_dict())
  checked.update(image_size=image_size, batch_size=batch_size, input_convention='dataset',
                 lr_decay_every_epochs=1.0)
  if scale_learning_rate:
    checked.learning_rate = config.learning_rate * batch_size / config.batch_size
  checked.lock()
  validate(checked, tempfile.gettempdir())
  return checked


def torchvision_arguments(config, steps_count: int, steps_per_epoch: int,
                          dtypes: tuple[str, ...]) -> dict:
  """train.py's arguments for `config`'s recipe, or ConfigError where train.py has none."""
  variant = published.VARIANTS.get(('torchvision', config.model))
  if variant is None:
    covered = ', '.join(m for s, m in published.VARIANTS if s == 'torchvision')
    raise ConfigError(f'torchvision has no {config.model}; it is the reference of {covered}')
  model_kwargs = config.model_kwargs.to_dict()
  if any(model_kwargs.get(k) != v for k, v in variant.model_kwargs.items()):
    raise ConfigError(f'model_kwargs={model_kwargs} is not torchvision\'s {config.model}, which '
                      f'is {variant.model_kwargs}: use configs/{config.model}_torchvision.py')
  refusals = [(config.optimizer != 'sgd', f'optimizer={config.optimizer!r}: train.py\'s is SGD'),
              (config.lr_schedule != 'exponential', f'lr_schedule={config.lr_schedule!r}: '
               "train.py's StepLR is the staircase 'exponential'"),
              (config.warmup_epochs > 0, 'warmup_epochs > 0: train.py warms up otherwise'),
              (optim.ema_decay(config) > 0, 'ema_decay > 0: train.py averages otherwise'),
              (config.num_classes < 1 or config.in_channels != 3,
               'num_classes and in_channels=3 must be set')]
  for refused, message in refusals:
    if refused:
      raise ConfigError(f'no torchvision reference for {message}')
  return {'model': variant.name, 'num_classes': config.num_classes, 'seed': config.seed,
          'lr': config.learning_rate, 'momentum': config.momentum,
          'weight_decay': config.weight_decay, 'nesterov': config.nesterov,
          'label_smoothing': config.label_smoothing,
          'lr_step_size': int(config.lr_decay_every_epochs),
          'lr_gamma': 1.0 / config.lr_decay_factor, 'steps': steps_count,
          'steps_per_epoch': steps_per_epoch, 'dtypes': list(dtypes)}


def reference_steps(directory: str, arguments: dict, batches: dict):
  """Runs TORCHVISION in the system Python on `batches`; yields its versions, then the loss and
  rate of each step (each dtype's in turn) with its state saved in `directory`, going on to the
  next when asked for it."""
  np.savez(os.path.join(directory, 'batches.npz'), **batches)
  with open(os.path.join(directory, 'args.json'), 'w', encoding='utf-8') as f:
    json.dump(arguments, f)
  with tempfile.TemporaryFile('w+') as stderr:
    try:
      process = subprocess.Popen([PYTHON, '-c', TORCHVISION, directory], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=stderr, text=True)
    except OSError as e:
      raise ReferenceUnavailable(f'cannot run {PYTHON} ({e.strerror}): apt-get install '
                                 'python3-torchvision (setup.sh installs it)') from e
    try:
      while line := process.stdout.readline():
        yield json.loads(line)
        process.stdin.write('\n')
        process.stdin.flush()
    finally:
      if process.poll() is None:
        process.kill()
      process.wait()
    if process.returncode:
      stderr.seek(0)
      message = stderr.read()
      if "No module named 'torch" in message:
        raise ReferenceUnavailable(f'{PYTHON} cannot import torchvision: apt-get install '
                                   'python3-torchvision (setup.sh installs it)')
      raise RuntimeError(f'the torchvision reference failed:\n{message}')


class Trainer:
  """The config's own train step and optimizer (`Assembly.train_step`, `.optimizer`), with
  states read from the reference's files by the project's importer."""

  def __init__(self, config, directory: str, steps_per_epoch: int):
    if jax.device_count() > 1 and config.batchnorm == 'per_device':
      raise ConfigError("batchnorm='per_device' on several devices: the reference normalises "
                        'the whole batch; run the check on one device (CUDA_VISIBLE_DEVICES=0)')
    channels = config.in_channels
    self.assembly = assemble_from_record(
        config, config.to_dict(), dataset={'mean': [0.0] * channels, 'std': [1.0] * channels})
    self.abstract = self.assembly.abstract_model
    for _, module in nnx.iter_modules(self.abstract):
      if isinstance(module, nnx.Dropout):
        module.rate = 0.0
    self.variant = published.VARIANTS['torchvision', config.model]
    self.directory = directory
    self.tx = self.assembly.optimizer(steps_per_epoch)
    self._step = self.assembly.train_step(nnx.graphdef(self.abstract), self.tx)
    self.schedule = optim.learning_rate_schedule(config, steps_per_epoch)

  def read(self, name: str) -> tuple[dict, dict]:
    """(params, batch_stats) of the reference's file `name`, in this model's dtype."""
    return published.load(os.path.join(self.directory, name), self.variant, self.abstract)

  def state(self, params, batch_stats, momentum=None, step: int = 0) -> TrainState:
    """The train state after `step` steps; momentum buffers zero unless given."""
    opt_state = self.tx.init(params)
    if momentum is not None:
      opt_state = optax.tree_utils.tree_set(opt_state, trace=momentum,
                                            count=jnp.asarray(step, jnp.int32))
    return jax.device_put(TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                                     batch_stats=batch_stats, opt_state=opt_state),
                          self.assembly.replicated)

  def step(self, state: TrainState, images, labels) -> tuple[TrainState, float]:
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


def parts(state: TrainState) -> tuple:
  """Parameters, BatchNorm statistics and SGD's momentum buffers (optax's trace: PyTorch's
  `momentum_buffer`, tensor by tensor)."""
  return state.params, state.batch_stats, optax.tree_utils.tree_get(state.opt_state, 'trace')


def perturbed(tree, seed: int = 0):
  """`tree` with each number moved by about one rounding of its dtype (relative machine epsilon
  times a normal draw)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: (x * (1 + np.finfo(x.dtype).eps * rng.standard_normal(x.shape))
                                 ).astype(x.dtype), tree)


def largest_difference(ours, other) -> tuple[float, str] | None:
  """(max |ours - other| / max |other|, the tensor's path) of the tensor where it is largest;
  None for no tensors."""
  rows = []
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(other)):
    difference = np.array(a, np.float64)  # A copy, worked in place: VGG's fc6 is 0.8 GB.
    np.abs(np.subtract(difference, b, out=difference), out=difference)
    scale = np.abs(b).max()
    rows.append((difference.max() / (scale if scale > 0 else 1.0),
                 '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)))
  return max(rows) if rows else None


def differences(ours: tuple, others: tuple) -> dict:
  return {name: largest_difference(a, b) for name, a, b in zip(STATE_PARTS, ours, others)}


def compare_dtype(trainer: Trainer, reference, batches: dict) -> dict:
  """Each reference step against this project's step from the reference's previous state; then
  this project's whole run from the initial weights against the reference's, and against its own
  run from those weights moved by one rounding. At most three states at a time are held (VGG-16's
  are 2.2 GB in float64)."""
  previous = trainer.state(*trainer.read('initial.pth'))
  rows = []
  for step, (images, labels) in enumerate(zip(batches['images'], batches['labels'])):
    done = next(reference)
    ours, loss = trainer.step(previous, images, labels)
    theirs = (*trainer.read('state.pth'), trainer.read('momentum.pth')[0])
    rows.append({**done, 'rate_here': float(trainer.schedule(step)), 'one_step_loss': loss,
                 'one_step': differences(parts(ours), theirs)})
    del ours
    previous = trainer.state(*theirs, step=step + 1)
  del theirs
  next(reference)  # Its training done, the reference holds no model.
  params, batch_stats = trainer.read('initial.pth')
  run, losses = trainer.train(trainer.state(params, batch_stats), batches)
  result = {'steps': rows, 'run': differences(parts(run), parts(previous))}
  del previous
  rounded, _ = trainer.train(trainer.state(perturbed(params), batch_stats), batches)
  for row, loss in zip(rows, losses):
    row['run_loss'] = loss
  return {**result, 'rounding': differences(parts(run), parts(rounded))}


def compare(config, *, reference: str, steps_count: int, steps_per_epoch: int, image_size: int,
            batch_size: int, scale_learning_rate: bool = True,
            dtypes: tuple[str, ...] = DTYPES) -> dict:
  """Both sides' `steps_count` steps in each of `dtypes` (`compare_dtype`), and the seconds each
  side took."""
  if reference not in REFERENCES:
    raise ConfigError(f'unknown --reference={reference}; known: {", ".join(REFERENCES)}')
  config = check_config(config, image_size=image_size, batch_size=batch_size,
                        scale_learning_rate=scale_learning_rate)
  arguments = torchvision_arguments(config, steps_count, steps_per_epoch, dtypes)
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
    reference_run = timed(reference_steps(directory, arguments, batches))
    result = {'versions': next(reference_run), 'config': config, 'dtypes': dtypes,
              'steps_per_epoch': steps_per_epoch}
    for dtype in dtypes:
      with jax.enable_x64(dtype == 'float64'):
        checked = ml_collections.ConfigDict(config.to_dict())
        checked.dtype = dtype
        result[dtype] = compare_dtype(Trainer(checked, directory, steps_per_epoch),
                                      reference_run, batches)
    next(reference_run, None)  # Lets the reference end, and reports how it ended.
  result['seconds'] = {'torchvision': waited, 'here': time.perf_counter() - start - waited}
  return result


def report(result: dict, config_path: str) -> str:
  config, dtypes = result['config'], result['dtypes']
  versions = ', '.join(f'{k} {v}' for k, v in result['versions'].items())
  size = config.image_size
  lines = [f'{config.model} ({config_path}) against {versions}, on '
           f'{jax.devices()[0].device_kind}: {config.batch_size} images of {size}x{size} a step, '
           f'rate {config.learning_rate:g}, {result["steps_per_epoch"]} steps an epoch, StepLR '
           f'every {config.lr_decay_every_epochs:g} epoch by {1 / config.lr_decay_factor:g}',
           "a: relative difference of the losses, this project's run against torchvision's",
           "b: largest relative difference (max |ours - torchvision's| / max |torchvision's| of "
           'a tensor) of parameters, BatchNorm statistics and momentum buffers after one step of '
           "each from torchvision's state before it",
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
               "of a tensor: one step from torchvision's state (the largest of the steps); this "
               "project's run from torchvision's; this project's run from its own started one "
               'rounding away')
  for dtype in dtypes:
    for name in STATE_PARTS:
      one_step = max((row['one_step'][name] for row in result[dtype]['steps']
                      if row['one_step'][name]), default=None)
      run, rounding = result[dtype]['run'][name], result[dtype]['rounding'][name]
      lines.append(f'  {dtype}  {name:<21}' + (
          f'one step {one_step[0]:.1e} ({one_step[1]}), run {run[0]:.1e} ({run[1]}), rounding '
          f'{rounding[0]:.1e}' if run else 'none'))
  seconds = result['seconds']
  lines.append(f'wall time: torchvision {seconds["torchvision"]:.0f} s, this project '
               f'{seconds["here"]:.0f} s (compilation included)')
  return '\n'.join(lines)


def define_flags() -> None:
  config_flags.DEFINE_config_file('config', None, 'Config to check (configs/<model>.py).',
                                  lock_config=True)
  flags.DEFINE_enum('reference', 'torchvision', REFERENCES, 'The reference trainer.')
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

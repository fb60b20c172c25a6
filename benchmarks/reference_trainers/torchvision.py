"""torchvision's references/classification/train.py, the trainer behind torchvision's classic
published weights (IMAGENET1K_V1), in Debian's system Python (python3-torchvision, which setup.sh
installs; the virtual environment has no PyTorch).

The model is `torchvision.models.<model>` with random weights, saved as its state dict and read
here by the project's importer (cnns/published), whose mapping of names and layouts then also
brings the reference's states back: its state dict after each step, and its momentum buffers as
a state dict whose parameters are the buffers. The training is train.py's: `torch.optim.SGD`
over `model.parameters()` (weight decay on every parameter: train.py without
--norm-weight-decay), `torch.nn.CrossEntropyLoss(label_smoothing)`,
`torch.optim.lr_scheduler.StepLR` stepped once per epoch, `model.train()`, and train_one_epoch's
order of calls.
"""

import os

import optax

from cnns import published
from training import optim
from training.errors import ConfigError

PYTHON = '/usr/bin/python3'  # Debian's, with python3-torchvision.
NEEDS = 'torchvision'
INSTALL = 'apt-get install python3-torchvision (setup.sh installs it)'

# references/classification/train.py's training on the check's batches: main()'s model,
# criterion, optimizer and StepLR, train_one_epoch's calls, lr_scheduler.step() after each epoch.
SCRIPT = r"""
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


def _variant(config) -> published.Variant:
  variant = published.VARIANTS.get(('torchvision', config.model))
  if variant is None:
    covered = ', '.join(m for s, m in published.VARIANTS if s == 'torchvision')
    raise ConfigError(f'torchvision has no {config.model}; it is the reference of {covered}')
  return variant


def arguments(config, steps_count: int, steps_per_epoch: int, dtypes: tuple[str, ...]) -> dict:
  """train.py's arguments for `config`'s recipe, or ConfigError where train.py has none."""
  variant = _variant(config)
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


def _read(trainer, name: str) -> tuple[dict, dict]:
  return published.load(os.path.join(trainer.directory, name), _variant(trainer.config),
                        trainer.abstract)


def initial(trainer) -> tuple[dict, dict]:
  return _read(trainer, 'initial.pth')


def after(trainer, step: int):
  """The state and SGD's momentum buffers (optax's trace: PyTorch's `momentum_buffer`, tensor by
  tensor) after `step` steps."""
  momentum, _ = _read(trainer, 'momentum.pth')
  return trainer.state(*_read(trainer, 'state.pth'), step, trace=momentum)


def parts(config) -> tuple:
  del config  # The same for every recipe train.py runs.
  return (('momentum buffers', lambda state: optax.tree_utils.tree_get(state.opt_state, 'trace')),)

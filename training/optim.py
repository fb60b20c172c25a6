"""Optimizers and learning-rate schedules from the config, built from optax parts.

The 'plateau' schedule (AlexNet, ZFNet, VGG: divide the rate by 10 when the validation error stops
improving) is a constant rate here, times a scale that optax's `reduce_on_plateau` decides from
each train-time evaluation's top-1 error. That decision is made on the host (`Plateau`), once per
evaluation, and the scale is an argument of the train step (`steps.make_train_step`): the jitted
optimizer holds no plateau state and needs no validation value at every step.
"""

import jax
import jax.numpy as jnp
import optax

from training import sdlm
from training.errors import ConfigError

OPTIMIZERS = ('adam', 'adamw', 'rmsprop', 'sdlm', 'sgd')
WEIGHT_DECAY_PARAMS = ('kernels', 'kernels_and_biases', 'all')
SCHEDULES = ('constant', 'cosine', 'exponential', 'plateau', 'step')
EMA_NUM_UPDATES = ('before_step', 'after_step')


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up from 0 for `warmup_epochs`, then constant, step decay at given epochs (by
  `lr_decay_factor` at each, or by each of `lr_decay_factors`), staircase exponential decay
  (every `lr_decay_every_epochs`) or cosine decay to 0. 'plateau' is the constant peak:
  `Plateau.scale` multiplies it.

  The step count reaches optax's schedules as a float of JAX's default precision: optax divides
  an integer count into float32, which would round a float64 run's rate to float32."""
  schedule = _schedule(config, steps_per_epoch)
  return lambda count: schedule(jnp.asarray(count, float))


def _schedule(config, steps_per_epoch: int) -> optax.Schedule:
  peak = config.learning_rate
  warmup = int(config.warmup_epochs * steps_per_epoch)
  total = config.num_epochs * steps_per_epoch
  if config.lr_schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1))
  if config.lr_schedule in ('constant', 'plateau'):
    if config.lr_schedule == 'plateau':
      check_plateau(config)
    main = optax.constant_schedule(peak)
  elif config.lr_schedule == 'step':
    # Decay epochs count from the start of training; `join_schedules` restarts steps at `warmup`.
    factors = config.get('lr_decay_factors') or (config.lr_decay_factor,) * len(
        config.lr_decay_epochs)
    if len(factors) != len(config.lr_decay_epochs):
      raise ConfigError(f'lr_decay_factors={tuple(factors)} needs one factor per epoch of '
                        f'lr_decay_epochs={tuple(config.lr_decay_epochs)}')
    if not all(0 < f < float('inf') for f in factors):
      raise ConfigError(f'lr_decay_factors={tuple(factors)}: each factor divides the rate, so '
                        'it must be a positive number')
    boundaries = {int(e * steps_per_epoch) - warmup: 1.0 / f
                  for e, f in zip(config.lr_decay_epochs, factors)}
    main = optax.piecewise_constant_schedule(peak, boundaries)
  elif config.lr_schedule == 'exponential':
    if config.lr_decay_every_epochs <= 0:
      raise ConfigError("lr_schedule='exponential' needs lr_decay_every_epochs > 0")
    main = optax.exponential_decay(peak, int(config.lr_decay_every_epochs * steps_per_epoch),
                                   1.0 / config.lr_decay_factor, staircase=True)
  else:
    raise ConfigError(f'unknown lr_schedule {config.lr_schedule!r}; known: {", ".join(SCHEDULES)}')
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def check_plateau(config) -> None:
  """The plateau fields, one line each where wrong."""
  if config.lr_decay_factor <= 1:
    raise ConfigError(f"lr_schedule='plateau' divides the rate by lr_decay_factor="
                      f'{config.lr_decay_factor}: it must be greater than 1')
  for field, low in (('plateau_patience', 1), ('plateau_max_decays', 0)):
    if not (isinstance(config[field], int) and config[field] >= low):
      raise ConfigError(f'{field}={config[field]} must be a whole number >= {low}')


class Plateau:
  """`optax.contrib.reduce_on_plateau` on the host, fed the top-1 error of each train-time
  evaluation: after `plateau_patience` evaluations in a row without a new best (by optax's
  default relative tolerance, 1e-4) the scale is divided by `lr_decay_factor`, at most
  `plateau_max_decays` times. Its state and the epoch of the last evaluation applied travel in a
  checkpoint's JSON record (`record()`, and back as `saved`), so that a resumed run scales as the
  uninterrupted one and an evaluation redone after a resume is not counted twice.
  """

  def __init__(self, config, saved: dict | None = None):
    check_plateau(config)
    factor = 1.0 / config.lr_decay_factor
    self._tx = optax.contrib.reduce_on_plateau(
        factor=factor, patience=config.plateau_patience,
        min_scale=factor**config.plateau_max_decays)
    self.state, self.epoch = self._tx.init({}), -1
    if saved:
      self.epoch = saved['epoch']
      self.state = self.state._replace(**{
          k: jnp.asarray(float('inf') if saved[k] is None else saved[k], x.dtype)
          for k, x in self.state._asdict().items()})

  @property
  def scale(self) -> float:
    return float(self.state.scale)

  def update(self, epoch: int, top1_error: float) -> bool:
    """Applies the evaluation at the end of `epoch` unless applied already; whether the scale
    decayed."""
    if epoch <= self.epoch:
      return False
    before = self.scale
    _, self.state = self._tx.update({}, self.state, value=top1_error)
    self.epoch = epoch
    return self.scale < before * (1 - 1e-6)  # Not float32 rounding at `min_scale`.

  def record(self) -> dict:
    """JSON types (an infinite best value, before any evaluation, as None)."""
    values = {k: x.item() for k, x in self.state._asdict().items()}
    return {**{k: None if v == float('inf') else v for k, v in values.items()},
            'epoch': self.epoch}


def ema_decay(config) -> float:
  """config.ema_decay, 0.0 (off) for recorded configs from before the field."""
  decay = config.get('ema_decay', 0.0)
  if not 0 <= decay < 1:
    raise ConfigError(f'ema_decay={decay} must be in [0, 1) (0: no averaging)')
  return decay


def ema_batch_stats(config) -> bool:
  """Whether the average holds BatchNorm's statistics too: config.ema_batch_stats where it
  averages at all; False for recorded configs from before the field."""
  return ema_decay(config) > 0 and bool(config.get('ema_batch_stats', False))


def decayed_params(config):
  """The weight decay's mask function: convolution and dense kernels ('kernels': the papers' weight
  decay skips biases and BatchNorm), their biases too ('kernels_and_biases': TF-slim's arg scopes
  regularise the weights and biases of `conv2d` and `fully_connected`, not BatchNorm's) or every
  parameter ('all': torchvision's classic reference). A layer's bias is one beside a kernel. A
  mask either way, so that the optimizer's state has one structure: a run may change the field on
  resume. Configs recorded before the field decayed kernels."""
  choice = config.get('weight_decay_params', 'kernels')
  if choice not in WEIGHT_DECAY_PARAMS:
    raise ConfigError(f'unknown weight_decay_params {choice!r}; known: '
                      f'{", ".join(WEIGHT_DECAY_PARAMS)}')

  def mask(params):
    keys = lambda path: tuple(getattr(k, 'key', getattr(k, 'idx', k)) for k in path)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    with_kernel = {keys(path)[:-1] for path, _ in leaves if keys(path)[-1:] == ('kernel',)}

    def is_decayed(path, _):
      key = keys(path)
      return (choice == 'all' or key[-1:] == ('kernel',)
              or choice == 'kernels_and_biases' and key[-1:] == ('bias',)
              and key[:-1] in with_kernel)
    return jax.tree_util.tree_map_with_path(is_decayed, params)
  return mask


def create_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD (momentum, Nesterov), Adam or RMSProp with L2 weight decay (added to the gradient, before
  the momentum: PyTorch's and TensorFlow's), or AdamW; on the parameters `decayed_params` says.

  RMSProp is TensorFlow's, which the Inception papers trained with: epsilon inside the square
  root, momentum on the scaled update, mean square starting at 1 (`initial_scale=1.0`). 'sdlm' is
  the 1998 LeNet-5's stochastic diagonal Levenberg-Marquardt method (training/sdlm.py).
  """
  lr = learning_rate_schedule(config, steps_per_epoch)
  mask = decayed_params(config)
  l2 = optax.add_decayed_weights(config.weight_decay, mask=mask)
  if config.optimizer == 'sgd':
    return optax.chain(l2, optax.sgd(lr, momentum=config.momentum or None,
                                     nesterov=config.nesterov))
  if config.optimizer == 'adam':
    return optax.chain(l2, optax.adam(lr, b1=config.momentum))
  if config.optimizer == 'rmsprop':
    return optax.chain(l2, optax.rmsprop(lr, decay=config.rmsprop_decay,
                                         eps=config.rmsprop_epsilon,
                                         initial_scale=1.0, momentum=config.momentum or None))
  if config.optimizer == 'sdlm':
    return optax.chain(l2, sdlm.scale_by_sdlm(config.sdlm_mu), optax.scale_by_learning_rate(lr))
  if config.optimizer == 'adamw':
    return optax.adamw(lr, b1=config.momentum, weight_decay=config.weight_decay, mask=mask)
  raise ConfigError(f'unknown optimizer {config.optimizer!r}; known: {", ".join(OPTIMIZERS)}')

"""Optimizers and learning-rate schedules from the config, built from optax parts."""

import jax
import optax

from training.errors import ConfigError

OPTIMIZERS = ('adam', 'adamw', 'rmsprop', 'sgd')
SCHEDULES = ('constant', 'cosine', 'exponential', 'step')


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up from 0 for `warmup_epochs`, then constant, step decay at given epochs,
  staircase exponential decay (every `lr_decay_every_epochs`) or cosine decay to 0."""
  peak = config.learning_rate
  warmup = int(config.warmup_epochs * steps_per_epoch)
  total = config.num_epochs * steps_per_epoch
  if config.lr_schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1))
  if config.lr_schedule == 'constant':
    main = optax.constant_schedule(peak)
  elif config.lr_schedule == 'step':
    # Decay epochs count from the start of training; `join_schedules` restarts steps at `warmup`.
    boundaries = {int(e * steps_per_epoch) - warmup: 1.0 / config.lr_decay_factor
                  for e in config.lr_decay_epochs}
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


def _kernels(params):
  """Mask selecting convolution and dense kernels: the papers' weight decay skips biases and BN."""
  def is_kernel(path, _):
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return bool(names) and names[-1] == 'kernel'
  return jax.tree_util.tree_map_with_path(is_kernel, params)


def create_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD (momentum, Nesterov), Adam or RMSProp with L2 weight decay on kernels, or AdamW.

  RMSProp is TensorFlow's, which the Inception papers trained with: epsilon inside the square
  root, momentum on the scaled update, mean square starting at 1 (`initial_scale=1.0`).
  """
  lr = learning_rate_schedule(config, steps_per_epoch)
  l2 = optax.add_decayed_weights(config.weight_decay, mask=_kernels)
  if config.optimizer == 'sgd':
    return optax.chain(l2, optax.sgd(lr, momentum=config.momentum or None,
                                     nesterov=config.nesterov))
  if config.optimizer == 'adam':
    return optax.chain(l2, optax.adam(lr, b1=config.momentum))
  if config.optimizer == 'rmsprop':
    return optax.chain(l2, optax.rmsprop(lr, decay=config.rmsprop_decay,
                                         eps=config.rmsprop_epsilon,
                                         initial_scale=1.0, momentum=config.momentum or None))
  if config.optimizer == 'adamw':
    return optax.adamw(lr, b1=config.momentum, weight_decay=config.weight_decay, mask=_kernels)
  raise ConfigError(f'unknown optimizer {config.optimizer!r}; known: {", ".join(OPTIMIZERS)}')

"""Learning-rate schedules and the papers' L2 weight decay (kernels only)."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import lenet5
from training import optim
from training.errors import ConfigError


def config(**overrides):
  c = lenet5.get_config()
  c.update({'num_epochs': 10, 'learning_rate': 0.1, 'warmup_epochs': 0.0, **overrides})
  return c


def test_step_schedule_divides_by_ten_at_the_given_epochs():
  schedule = optim.learning_rate_schedule(
      config(lr_schedule='step', lr_decay_epochs=(3, 6), warmup_epochs=1.0), steps_per_epoch=10)
  assert float(schedule(5)) == pytest.approx(0.05)  # Half-way through warm-up.
  assert float(schedule(29)) == pytest.approx(0.1)
  assert float(schedule(30)) == pytest.approx(0.01)
  assert float(schedule(60)) == pytest.approx(0.001)


def test_cosine_schedule_warms_up_peaks_and_decays_to_zero():
  schedule = optim.learning_rate_schedule(config(lr_schedule='cosine', warmup_epochs=2.0),
                                          steps_per_epoch=10)
  assert float(schedule(0)) == 0.0
  assert float(schedule(20)) == pytest.approx(0.1)
  assert float(schedule(60)) == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 40 / 80)))
  assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)


def test_weight_decay_applies_to_kernels_only():
  c = config(optimizer='sgd', momentum=0.0, weight_decay=0.5, learning_rate=1.0)
  tx = optim.create_optimizer(c, steps_per_epoch=10)
  params = {'conv1': {'kernel': jnp.ones(3), 'bias': jnp.ones(3)}, 'bn': {'scale': jnp.ones(3)}}
  zero_grads = {'conv1': {'kernel': jnp.zeros(3), 'bias': jnp.zeros(3)},
                'bn': {'scale': jnp.zeros(3)}}
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  np.testing.assert_allclose(updates['conv1']['kernel'], -0.5)  # -lr * wd * w
  np.testing.assert_allclose(updates['conv1']['bias'], 0.0)
  np.testing.assert_allclose(updates['bn']['scale'], 0.0)


@pytest.mark.parametrize('field,value', [('optimizer', 'lamb'), ('lr_schedule', 'linear')])
def test_unknown_choices_are_config_errors(field, value):
  with pytest.raises(ConfigError, match=value):
    optim.create_optimizer(config(**{field: value}), steps_per_epoch=10)


def test_exponential_schedule_is_a_staircase():
  # GoogLeNet's "decreasing the learning rate by 4% every 8 epochs".
  schedule = optim.learning_rate_schedule(
      config(lr_schedule='exponential', lr_decay_every_epochs=8, lr_decay_factor=1 / 0.96),
      steps_per_epoch=10)
  assert float(schedule(79)) == pytest.approx(0.1)
  assert float(schedule(80)) == pytest.approx(0.096)
  assert float(schedule(165)) == pytest.approx(0.1 * 0.96**2)


def test_rmsprop_matches_tensorflows_update():
  # TF's RMSProp, by hand: ms starts at 1; ms = d ms + (1-d) g^2; mom = m mom + lr g / sqrt(ms+eps).
  c = config(optimizer='rmsprop', learning_rate=0.045, lr_schedule='constant', weight_decay=0.0,
             momentum=0.9,
             rmsprop_decay=0.9, rmsprop_epsilon=1.0)
  tx = optim.create_optimizer(c, steps_per_epoch=10)
  params = {'kernel': jnp.array([1.0, -2.0])}
  state = tx.init(params)
  ms, mom, w = np.ones(2), np.zeros(2), np.array([1.0, -2.0])
  for g in ([0.5, -1.0], [2.0, 0.25], [-1.0, 1.0]):
    updates, state = tx.update({'kernel': jnp.array(g)}, state, params)
    params = {'kernel': params['kernel'] + updates['kernel']}
    ms = 0.9 * ms + 0.1 * np.square(g)
    mom = 0.9 * mom + 0.045 * np.array(g) / np.sqrt(ms + 1.0)
    w = w - mom
  np.testing.assert_allclose(params['kernel'], w, rtol=1e-5)

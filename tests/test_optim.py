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


@pytest.mark.parametrize('field,value', [('optimizer', 'rmsprop'), ('lr_schedule', 'linear')])
def test_unknown_choices_are_config_errors(field, value):
  with pytest.raises(ConfigError, match=value):
    optim.create_optimizer(config(**{field: value}), steps_per_epoch=10)

"""Learning-rate schedules (the plateau schedule's host side among them), L2 weight decay (the
papers' on kernels only, TF-slim's on kernels and biases, or torchvision's on every parameter),
and the train step's learning-rate scale and weight averaging."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import cnns
from configs import lenet5
from training import optim, steps
from training.errors import ConfigError
from training.state import create_train_state, with_ema


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


@pytest.mark.parametrize('decayed, expected', [
    ('kernels', {'conv1/kernel'}),
    ('kernels_and_biases', {'conv1/kernel', 'conv1/bias'}),  # TF-slim's: not BatchNorm's.
    ('all', {'conv1/kernel', 'conv1/bias', 'bn/scale', 'bn/bias'})])  # torchvision's classic.
def test_weight_decay_applies_to_the_chosen_parameters(decayed, expected):
  optimizer = lambda decayed: optim.create_optimizer(
      config(optimizer='sgd', momentum=0.0, weight_decay=0.5, learning_rate=1.0,
             weight_decay_params=decayed), steps_per_epoch=10)
  tx = optimizer(decayed)
  params = {'conv1': {'kernel': jnp.ones(3), 'bias': jnp.ones(3)},
            'bn': {'scale': jnp.ones(3), 'bias': jnp.ones(3)}}
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  for layer, weights in updates.items():
    for name, update in weights.items():  # -lr * wd * w where decayed.
      np.testing.assert_allclose(update, -0.5 if f'{layer}/{name}' in expected else 0.0)
  # One state structure either way: a resume may switch.
  assert (jax.tree.structure(tx.init(params))
          == jax.tree.structure(optimizer('kernels').init(params)))


@pytest.mark.parametrize('field,value', [('optimizer', 'lamb'), ('lr_schedule', 'linear'),
                                         ('weight_decay_params', 'biases')])
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


def test_plateau_scales_as_optax_reduce_on_plateau_across_saved_records():
  c = config(lr_schedule='plateau', plateau_patience=2, plateau_max_decays=2)
  errors = [0.9, 0.8, 0.8, 0.81, 0.7, 0.7, 0.7, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.5]
  tx = optax.contrib.reduce_on_plateau(factor=0.1, patience=2, min_scale=0.1**2)
  state, expected = tx.init({}), []
  for error in errors:
    _, state = tx.update({}, state, value=error)
    expected.append(float(state.scale))
  plateau, got = optim.Plateau(c), []
  for epoch, error in enumerate(errors, 1):
    plateau = optim.Plateau(c, plateau.record())  # As a resume from any checkpoint would.
    plateau.update(epoch, error)
    assert not plateau.update(epoch, 0.0)  # An evaluation redone after a resume: applied once.
    got.append(plateau.scale)
  assert got == expected
  assert got[3] == pytest.approx(0.1) and got[-1] == pytest.approx(0.01)  # Two decays, no more.
  assert optim.learning_rate_schedule(c, steps_per_epoch=10)(55) == pytest.approx(0.1)


@pytest.mark.parametrize('overrides,message', [
    ({'plateau_patience': 0}, 'plateau_patience=0 must be a whole number >= 1'),
    ({'plateau_max_decays': -1}, 'plateau_max_decays=-1 must be a whole number >= 0'),
    ({'lr_decay_factor': 1.0}, 'lr_decay_factor=1.0: it must be greater than 1'),
])
def test_bad_plateau_fields_are_config_errors(overrides, message):
  with pytest.raises(ConfigError, match=message):
    optim.create_optimizer(config(lr_schedule='plateau', **overrides), steps_per_epoch=10)


def test_ema_decay_outside_zero_one_is_a_config_error():
  with pytest.raises(ConfigError, match=r'ema_decay=1.0 must be in \[0, 1\)'):
    optim.ema_decay(config(ema_decay=1.0))
  assert optim.ema_decay({'learning_rate': 0.1}) == 0.0  # Recorded before the field: off.


def _train_step(tx, model='lenet5', **kwargs):
  model = cnns.create_model(model, num_classes=10, in_channels=1, rngs=nnx.Rngs(0))
  graphdef, state = create_train_state(model, tx)
  step = steps.make_train_step(graphdef, tx, mean=(127.5,), std=(64.0,), dtype=jnp.float32,
                               num_classes=10, label_smoothing=0.0, seed=0, out_sharding=None,
                               **kwargs)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (8, 32, 32, 1), dtype=np.uint8),
           'label': rng.integers(0, 10, 8).astype(np.int32)}
  return state, lambda s, *scale: step(s, steps.zero_train_metrics(), batch,
                                        *scale)[0]


def test_lr_scale_multiplies_the_learning_rate():
  state, step = _train_step(optax.sgd(0.1))
  half, _ = jax.tree.flatten(step(state, np.float32(0.5)).params)
  state, step = _train_step(optax.sgd(0.05))
  expected, _ = jax.tree.flatten(step(state).params)
  for a, b in zip(half, expected):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize('model, counts_this_step', [('lenet5', False), ('resnet18', True)])
def test_ema_follows_tensorflows_exponential_moving_average(model, counts_this_step):
  # ResNet-18 as TF-slim's script averages: BatchNorm's statistics too, num_updates counting the
  # step (the global step after apply_gradients).
  state, step = _train_step(optax.sgd(0.1, momentum=0.9), model, ema_decay=0.5,
                            ema_counts_this_step=counts_this_step)
  averages = (state.params, state.batch_stats)
  state = with_ema(state, batch_stats=counts_this_step)
  for t in range(3):  # TF: decay min(0.5, (1 + n) / (10 + n)) with num_updates n = t or t + 1.
    state = step(state)
    n = t + counts_this_step
    decay = min(0.5, (1 + n) / (10 + n))
    averages = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, averages,
                            (state.params, state.batch_stats))
  averaged = state.averaged()  # What evaluations score.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               (averaged.params, averaged.batch_stats if counts_this_step else {}),
               (averages[0], averages[1] if counts_this_step else {}))
  assert not jax.tree.all(jax.tree.map(np.array_equal, averaged.params, state.params))
  if counts_this_step:
    assert not jax.tree.all(jax.tree.map(np.array_equal, averaged.batch_stats, state.batch_stats))
  else:
    assert averaged.batch_stats is state.batch_stats

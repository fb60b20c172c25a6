"""The 1998 LeNet-5 against the paper: its counts, Table I, the RBF output and equation (9) by hand,
appendix C's second derivatives against an independent computation, the SDLM update and schedule,
and training on synthetic digits (with an exact resume)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

import cnns
import input_pipeline
from cnns import lenet1998, summary
from configs import lenet5_1998
from app import loop
from training import optim, sdlm, steps
from training import mesh as mesh_lib
from training.errors import ConfigError
from training.state import create_train_state


def model(seed=0):
  return cnns.create_model('lenet5_1998', rngs=nnx.Rngs(seed))


def digits(n, seed=0):
  """[n, 32, 32, 1] images scaled as the paper's input, in float64 for the hand computations."""
  images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 1))
  return jnp.asarray((images - 20.0) / 200.0, jnp.float32)


def test_layer_table_has_the_papers_counts():
  # Section II-B, layer by layer: (trainable parameters, connections).
  paper = {'C1': (156, 122_304), 'S2': (12, 5_880), 'C3': (1_516, 151_600), 'S4': (32, 2_000),
           'C5': (48_120, 48_120), 'F6': (10_164, 10_164), 'output': (0, 840)}
  result = summary.summarize('lenet5_1998', image_size=32, in_channels=1, num_classes=10)
  assert {r['name']: (r['params'], r['connections']) for r in result['layers']} == paper
  assert [tuple(r['output_shape']) for r in result['layers']] == [
      (28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (1, 1, 120), (84,), (10,)]
  assert result['total_params'] == 60_000
  assert result['total_connections'] == 340_908
  # The generic layers count connections the same way: the modern LeNet-5's conv1 is C1.
  modern = summary.summarize('lenet5', image_size=32, in_channels=1, num_classes=10)
  assert modern['layers'][0]['connections'] == 122_304
  table = summary.format_table(result, batch_size=1)
  assert 'parameters:   60,000' in table and 'connections:  340,908 per image' in table


def test_c3_is_wired_by_table_one():
  # Table I, column by column: the S2 maps each C3 map takes.
  columns = [{0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5, 0}, {5, 0, 1}, {0, 1, 2, 3},
             {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 0}, {4, 5, 0, 1}, {5, 0, 1, 2}, {0, 1, 3, 4},
             {1, 2, 4, 5}, {0, 2, 3, 5}, {0, 1, 2, 3, 4, 5}]
  table = lenet1998.c3_connections()
  assert [set(np.flatnonzero(table[:, j])) for j in range(16)] == columns
  # And the layer computes with exactly these: a change in S2 map i reaches C3 map j only if
  # the table connects them.
  c3 = model().C3
  x = jnp.zeros((1, 14, 14, 6))
  base = c3.linear(c3.weights(), x)
  for i in range(6):
    changed = c3.linear(c3.weights(), x.at[..., i].set(1.0))
    reached = np.abs(np.asarray(changed - base)).sum(axis=(0, 1, 2)) > 0
    np.testing.assert_array_equal(reached, table[i])


def test_squashing_function_and_input_scaling():
  np.testing.assert_allclose(lenet1998.squash(jnp.array([-1.0, 0.0, 1.0])), [-1, 0, 1],
                             atol=2e-5)  # A = 1.7159 makes f(+-1) = +-1 (appendix A).
  mean, std = input_pipeline.INPUT_CONVENTIONS['lecun98']
  scaled = steps.normalize(np.array([[[[0]], [[255]]]], np.uint8), mean, std, jnp.float32)
  np.testing.assert_allclose(scaled.ravel(), [-0.1, 1.175], rtol=1e-6)


def test_prototypes_are_distinct_plus_minus_one_bitmaps():
  centres = lenet1998.prototypes()
  assert centres.shape == (10, 84) and set(np.unique(centres)) == {-1.0, 1.0}
  distances = ((centres[:, None] - centres[None]) ** 2).sum(-1)
  assert distances[~np.eye(10, dtype=bool)].min() >= 4 * 8  # At least 8 of 84 bits differ.


def test_rbf_output_and_equation_9_by_hand():
  net = model()
  images = digits(3)
  features = np.asarray(net.features(images), np.float64)
  penalties = ((features[:, None, :] - lenet1998.prototypes()[None].astype(np.float64)) ** 2
               ).sum(-1)
  logits = net(images)
  np.testing.assert_allclose(logits, -penalties, rtol=1e-5)
  labels = np.array([3, 0, 9])
  expected = penalties[np.arange(3), labels] + np.log(
      np.exp(-lenet1998.J) + np.exp(-penalties).sum(-1))
  loss = lenet1998.LeNet1998.loss(logits, jax.nn.one_hot(labels, 10))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  # The constant j keeps the loss finite and bounded below when every penalty is large.
  far = lenet1998.LeNet1998.loss(jnp.full((1, 10), -1e4), jax.nn.one_hot([0], 10))
  np.testing.assert_allclose(far, [1e4 - lenet1998.J], rtol=1e-6)


def test_gauss_newton_diagonal_of_f6_and_c5_equals_the_exact_one():
  """F6's and C5's weights reach each F6 output by one path, so there the paper's
  diagonal backpropagation is exact: diag(J^T 2 J), J the Jacobian of F6's outputs, computed
  here by automatic differentiation, one image at a time, averaged."""
  net = model()
  images = digits(4)
  graphdef, params, rest = nnx.split(net, nnx.Param, ...)

  def features(p, image):
    return nnx.merge(graphdef, p, rest).features(image[None])[0]

  def exact(image):
    jacobian = jax.jacrev(features)(params, image)  # [84, ...] per parameter.
    return jax.tree.map(lambda j: 2 * jnp.square(j).sum(0), jacobian)

  expected = jax.tree.map(lambda h: h.mean(0), jax.jit(jax.vmap(exact))(images))
  estimate = net.gauss_newton_diagonal(images)
  for layer in ('F6', 'C5'):
    for name in ('kernel', 'bias'):
      np.testing.assert_allclose(estimate[layer][name], nnx.to_pure_dict(expected)[layer][name],
                                 rtol=1e-4, atol=1e-9)
  # Every layer has its estimate, non-negative, in the shape of its parameters.
  pure = nnx.to_pure_dict(params)
  assert jax.tree.map(jnp.shape, estimate) == jax.tree.map(jnp.shape, pure)
  assert all(bool((h >= 0).all()) for h in jax.tree.leaves(estimate))


def test_sdlm_divides_each_gradient_by_mu_plus_its_curvature():
  tx = optax.chain(sdlm.scale_by_sdlm(0.02), optax.scale_by_learning_rate(0.5))
  params = {'w': jnp.array([1.0, 2.0])}
  state = optax.tree_utils.tree_set(tx.init(params), hessian={'w': jnp.array([0.0, 0.98])})
  updates, _ = tx.update({'w': jnp.array([0.1, 1.0])}, state, params)
  np.testing.assert_allclose(updates['w'], [-0.5 * 0.1 / 0.02, -0.5 * 1.0 / 1.0], rtol=1e-6)


def test_the_papers_learning_rate_schedule():
  config = lenet5_1998.get_config()
  schedule = optim.learning_rate_schedule(config, steps_per_epoch=10)
  passes = [float(schedule(10 * p)) for p in range(20)]
  paper = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
  np.testing.assert_allclose(passes, np.array(paper) / 10, rtol=1e-6)  # A tenth: the docstring.
  config.lr_decay_factors = (2.0,)
  with pytest.raises(ConfigError, match='one factor per epoch'):
    optim.learning_rate_schedule(config, steps_per_epoch=10)
  for factors in ((0.0, 2.0, 2.0, 5.0), (-2.0, 2.0, 2.0, 5.0), (float('nan'), 2.0, 2.0, 5.0)):
    config.lr_decay_factors = factors
    with pytest.raises(ConfigError, match='must be a positive number'):
      optim.learning_rate_schedule(config, steps_per_epoch=10)


def synthetic_digits_config(**overrides):
  config = lenet5_1998.get_config()
  config.update({'dataset': 'synthetic', 'synthetic_train_examples': 1000,
                 'synthetic_eval_examples': 100, 'eval_batch_size': 100, 'num_epochs': 2,
                 'sdlm_samples': 100, 'sdlm_every_examples': 500, 'learning_rate': 5e-5,
                 'log_every_steps': 500, 'checkpoint_every_steps': 1000,
                 'input_convention': 'dataset', **overrides})
  return config


def test_training_on_synthetic_digits_learns_and_resumes_exactly(tmp_path):
  config = synthetic_digits_config()
  summary_ = loop.train_and_evaluate(config, str(tmp_path / 'straight'))
  assert summary_.best_top1_acc > 0.5  # Ten classes: chance is 0.1.
  # Stopped after the first epoch, then resumed: the same Hessian estimates and the same state.
  with loop.Run(synthetic_digits_config(num_epochs=1), str(tmp_path / 'resumed')) as run:
    run.train_epoch(0)
    run.save()
  with loop.Run(config, str(tmp_path / 'resumed')) as resumed:
    resumed.train_epoch(1)
    with loop.Run(config, str(tmp_path / 'straight')) as straight:
      pass
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.state),
               jax.device_get(straight.state))
  (hessian,) = [s.hessian for s in resumed.state.opt_state if isinstance(s, sdlm.SDLMState)]
  assert all(float(jnp.abs(h).max()) > 0 for h in jax.tree.leaves(hessian))


def test_the_estimate_is_placed_as_the_train_step_places_the_state():
  """Replicated exactly as the step's outputs (P()): an estimate placed otherwise (P(None, ...),
  what eager arithmetic gives) makes the train step compile a second time."""
  config = synthetic_digits_config(batch_size=2)
  mesh = mesh_lib.create_mesh()
  replicated = mesh_lib.replicated_sharding(mesh)
  tx = optim.create_optimizer(config, steps_per_epoch=10)
  graphdef, state = create_train_state(model(), tx)
  state = jax.device_put(state, replicated)
  curvature = sdlm.Curvature(config, graphdef, 10, mean=(20.0,), std=(200.0,),
                             dtype=jnp.float32, out_sharding=replicated)
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)
  refreshed = curvature.refresh(state, [{'image': images, 'label': np.zeros(2, np.int32)}] * 3,
                                mesh_lib.batch_sharding(mesh))
  assert {leaf.sharding.spec for leaf in jax.tree.leaves(refreshed.opt_state)} == {P()}


@pytest.mark.parametrize('overrides, message', [
    ({'model': 'lenet5'}, "optimizer='sdlm' needs .*lenet5 has none"),
    ({'sdlm_mu': 0.0}, 'sdlm_mu=0.0 must be positive'),
    ({'sdlm_mu': float('nan')}, 'sdlm_mu=nan must be positive'),
    ({'sdlm_samples': 0}, 'sdlm_samples=0 must be at least 1')])
def test_sdlm_refuses_what_it_cannot_do_before_the_workdir_is_made(tmp_path, overrides, message):
  config = synthetic_digits_config(**overrides)
  with pytest.raises(ConfigError, match=message):
    loop.Run(config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()

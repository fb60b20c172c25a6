"""LeNet-5: the seed's volumes, its 61,706 parameters, and that training lowers the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import cnns
from training import steps
from training.state import count_params, create_train_state


def lenet(**kwargs):
  return cnns.create_model('lenet5', num_classes=10, in_channels=1, rngs=nnx.Rngs(0), **kwargs)


def test_parameter_count_matches_hand_count():
  # conv1 5*5*1*6+6, conv2 5*5*6*16+16, fc 400*120+120, 120*84+84, 84*10+10.
  expected = 156 + 2416 + 48120 + 10164 + 850
  assert expected == 61_706
  _, params, _ = nnx.split(lenet(), nnx.Param, ...)
  assert count_params(nnx.to_pure_dict(params)) == expected


def test_layer_volumes_follow_the_seed():
  model = lenet()
  x = jnp.zeros((2, 32, 32, 1))
  pool = lambda y: nnx.max_pool(y, (2, 2), strides=(2, 2))
  c1 = model.conv1(x)
  assert c1.shape == (2, 28, 28, 6)
  assert pool(c1).shape == (2, 14, 14, 6)
  c2 = model.conv2(pool(c1))
  assert c2.shape == (2, 10, 10, 16)
  assert pool(c2).shape == (2, 5, 5, 16)
  assert model(x).shape == (2, 10)


def test_bfloat16_computes_in_bfloat16_with_float32_parameters():
  model = lenet(dtype=jnp.bfloat16)
  assert model(jnp.zeros((1, 32, 32, 1), jnp.bfloat16)).dtype == jnp.bfloat16
  _, params, _ = nnx.split(model, nnx.Param, ...)
  assert {x.dtype for x in jax.tree.leaves(nnx.to_pure_dict(params))} == {jnp.dtype('float32')}


def test_one_step_lowers_the_loss():
  tx = optax.sgd(0.05, momentum=0.9)
  graphdef, state = create_train_state(lenet(), tx)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (32, 32, 32, 1), dtype=np.uint8),
           'label': rng.integers(0, 10, 32).astype(np.int32)}
  step = steps.make_train_step(graphdef, tx, mean=(127.5,), std=(64.0,), dtype=jnp.float32,
                               num_classes=10, label_smoothing=0.0, seed=0, out_sharding=None)
  metrics = steps.zero_train_metrics()
  state, first = step(state, metrics, batch)
  _, second = step(state, metrics, batch)
  # Each call reports the loss before its update: the second is the loss after one step.
  assert float(second['loss']) < float(first['loss'])
  assert int(state.step) == 1

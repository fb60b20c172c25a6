"""Child process of `test_sharding.py`: the project's train and eval steps on 1 and on N devices.

    python -m tests.sharded_steps OUT.npz        (with N fake CPU devices in XLA_FLAGS)

Runs ResNet-18 (BatchNorm: global statistics over the sharded batch) for a few SGD steps in
float64 on a mesh of one device and on a mesh of every device, in this one process, and saves what
the test compares.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import cnns
from training import mesh as mesh_lib
from training import steps
from training.metrics import EVAL_SUMS, summarize, zero_metrics
from training.state import create_train_state

jax.config.update('jax_enable_x64', True)

NUM_STEPS, BATCH, IMAGE_SIZE, CLASSES = 3, 32, 32, 10


def batches(rng: np.random.Generator, count: int) -> list[dict[str, np.ndarray]]:
  return [{'image': rng.integers(0, 256, (BATCH, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
           'label': rng.integers(0, CLASSES, BATCH).astype(np.int32)} for _ in range(count)]


def run(devices: int) -> dict:
  """Train losses of NUM_STEPS float64 steps, the final state and a masked evaluation."""
  dtype = jnp.float64
  mesh = jax.make_mesh((devices,), (mesh_lib.DATA_AXIS,), devices=jax.devices()[:devices])
  replicated, sharded = mesh_lib.replicated_sharding(mesh), mesh_lib.batch_sharding(mesh)
  model = cnns.create_model('resnet18', num_classes=CLASSES, in_channels=3,
                            image_size=IMAGE_SIZE, dtype=dtype, rngs=nnx.Rngs(0))
  tx = optax.sgd(0.01, momentum=0.9)
  graphdef, state = create_train_state(model, tx)
  state = jax.device_put(jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(
      x.dtype, jnp.floating) else x, state), replicated)
  norm = dict(mean=(127.5,) * 3, std=(64.0,) * 3, dtype=dtype)
  train_step = steps.make_train_step(graphdef, tx, num_classes=CLASSES, label_smoothing=0.0,
                                     seed=0, out_sharding=replicated, **norm)
  rng = np.random.default_rng(1)
  losses = []
  for batch in batches(rng, NUM_STEPS):
    metrics = jax.device_put(steps.zero_train_metrics(), replicated)
    state, metrics = train_step(state, metrics, mesh_lib.to_global(batch, sharded))
    losses.append(summarize(metrics)['loss'])
  eval_step = steps.make_eval_step(graphdef, out_sharding=replicated, **norm)
  (eval_batch,) = batches(rng, 1)
  eval_batch['mask'] = np.arange(BATCH) < BATCH - 5  # Padding rows must not count.
  metrics = jax.device_put(zero_metrics(*EVAL_SUMS), replicated)
  evaluation = summarize(eval_step((state,), metrics, mesh_lib.to_global(eval_batch,
                                                                                sharded)))
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(tree))])
  return {'losses': np.array(losses), 'params': flat(state.params),
          'batch_stats': flat(state.batch_stats),
          'eval': np.array([evaluation[k] for k in ('loss', 'top1_acc', 'num_examples')])}


def main(path: str) -> None:
  n = jax.device_count()
  results = {}
  for name, devices in (('one_float64', 1), ('all_float64', n)):
    for key, value in run(devices).items():
      results[f'{name}/{key}'] = value
  np.savez(path, devices=n, **results)


if __name__ == '__main__':
  main(sys.argv[1])

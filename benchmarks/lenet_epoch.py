r"""Framework overhead: one LeNet-5 epoch through `training.loop.Run` vs a bare `jax.jit` loop.

  python -m benchmarks.lenet_epoch [--config.dataset=synthetic] [--repeats=3]

Both sides train the same model with the same optimizer and batch size on the same arrays, in this
process: the framework reads them through its input pipeline (tf.data for TFDS datasets), places
them on the mesh, accumulates metrics on the device, logs, shows progress and checkpoints at its
cadence; the baseline is the shortest honest loop: a jitted step over slices of in-memory numpy
arrays. Each side runs one warm-up epoch (compilation, tf.data cache fill), then `--repeats` timed
epochs, alternating, and the best of each is compared. Prints one table and the ratio
framework / bare (target <= 1.15).
"""

import tempfile
import time

import jax
import numpy as np
import optax
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

import cnns
from training import loop, optim, steps
from training.state import split_model

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/lenet5.py', 'Config to benchmark.')
flags.DEFINE_integer('repeats', 3, 'Timed epochs per side (best one counts).')


def _source_arrays(source, batch_size, steps_per_epoch):
  """One epoch's examples as numpy arrays, read once through the framework's own source."""
  batches = list(source.train_batches(0, 0, batch_size, steps_per_epoch))
  return (np.concatenate([b['image'] for b in batches]),
          np.concatenate([b['label'] for b in batches]))


def bare_epoch_fn(config, source, steps_per_epoch):
  """A hand-written loop: same model, optimizer and normalisation, nothing else."""
  dtype = loop.DTYPES[config.dtype]
  model = cnns.create_model(config.model, num_classes=source.spec.num_classes,
                            in_channels=source.image_shape[-1], dtype=dtype,
                            rngs=nnx.Rngs(config.seed))
  graphdef, params, batch_stats = split_model(model)
  tx = optim.create_optimizer(config, steps_per_epoch)
  opt_state = tx.init(params)
  batch = config.batch_size
  images, labels = _source_arrays(source, batch, steps_per_epoch)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(params):
      model = nnx.merge(graphdef, params, batch_stats)
      logits = model(steps.normalize(x, source.spec.mean, source.spec.std, dtype))
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def epoch(seed):
    nonlocal params, opt_state
    order = np.random.default_rng(seed).permutation(len(labels))
    for i in range(steps_per_epoch):
      idx = order[i * batch:(i + 1) * batch]
      params, opt_state, loss = step(params, opt_state, images[idx], labels[idx])
    jax.block_until_ready(loss)

  return epoch


def main(argv):
  del argv
  config = FLAGS.config
  config.unlock()
  config.num_epochs = 2 * FLAGS.repeats + 2  # Enough epochs for the schedule; never all run.
  config.checkpoint_every_steps = 10**9  # Nothing saved inside the timed epochs.
  with tempfile.TemporaryDirectory() as workdir, loop.Run(config, workdir) as run:
    bare_epoch = bare_epoch_fn(config, run.source, run.steps_per_epoch)

    def framework_epoch(epoch):
      run.train_epoch(epoch)
      jax.block_until_ready(run.state)

    timings = {'framework': [], 'bare jax.jit loop': []}
    framework_epoch(0)
    bare_epoch(0)
    for r in range(1, FLAGS.repeats + 1):
      for name, fn in (('framework', framework_epoch), ('bare jax.jit loop', bare_epoch)):
        start = time.perf_counter()
        fn(r)
        timings[name].append(time.perf_counter() - start)

  images = run.steps_per_epoch * config.batch_size
  print(f'\nLeNet-5 epoch ({config.dataset}, {run.steps_per_epoch} steps of {config.batch_size}, '
        f'{jax.device_count()} x {jax.devices()[0].device_kind}), best of {FLAGS.repeats}:')
  print(f'{"":<20}{"seconds":>10}{"img/s":>12}')
  for name, times in timings.items():
    print(f'{name:<20}{min(times):>10.3f}{images / min(times):>12,.0f}')
  ratio = min(timings['framework']) / min(timings['bare jax.jit loop'])
  print(f'ratio framework / bare: {ratio:.3f} (target <= 1.15)')


if __name__ == '__main__':
  app.run(main)

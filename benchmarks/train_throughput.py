r"""Training throughput: the framework's own training path against a bare NNX `jax.jit` loop.

  python -m benchmarks.train_throughput --config=configs/resnet50.py [--config.<field>=...]
      [--steps=20] [--rounds=3] [--json=FILE]
  python benchmarks/train_throughput.py --config=configs/lenet5.py --real_data   # Fashion-MNIST

Both sides train the same model, optimizer, dtype and batch size in this process, one after the
other in alternating rounds of `--steps` steps after a warm-up round each (compilation):

- 'framework': `Run.train_epoch` exactly as train.py runs it: the source's host batches, the
  prefetch to the devices, the step with its on-device metric sums and finiteness flag, logging and
  the checkpoint and stop checks at the config's cadence. A second row runs it with
  `prefetch_to_device=0`, to show what prefetching gives (`--host_delay_ms` makes the source cost
  host time, like a JPEG decoder);
- 'bare jax.jit loop': the shortest honest loop: a jitted, donating step over batches already on
  the devices, no metrics, nothing else.

By default the source is `synthetic` (no TensorFlow, no files) at the config's image size, so any
config runs on a bare GPU machine; `--real_data` keeps the config's dataset (tf.data). Prints the
device, img/s for each row (median of the rounds), the ratio framework / bare in time per step,
time to the first step and the compile time in it, and the training FLOP rate (6 x MACs per
image, from `cnns.summary`). Never asserted on: the figures are for reading.
"""

import time

_STARTED = time.perf_counter()  # Before the heavy imports: time to first step includes them.

# pylint: disable=wrong-import-position
import functools
import json
import os
import statistics
import sys
import tempfile

if __package__ in (None, ''):  # Run as a script: make the project's packages importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax
import jax
import jax.numpy as jnp
import optax
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from app import cli, loop
from cnns import summary
from cnns.layers import AuxiliaryOutputs
from training import steps
from training.state import split_model

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/resnet50.py', 'Config to benchmark.')
flags.DEFINE_integer('steps', 20, 'Timed steps per round.', lower_bound=1)
flags.DEFINE_integer('rounds', 3, 'Timed rounds per row, alternating (median counts).',
                     lower_bound=1)
flags.DEFINE_bool('real_data', False, "Train on the config's dataset instead of synthetic images "
                  'of its shape (TFDS datasets need TensorFlow).')
flags.DEFINE_float('host_delay_ms', 0.0, 'Host time added per batch in the source (a slow '
                   'decoder), to show what prefetching to the device hides.', lower_bound=0)
flags.DEFINE_string('compilation_cache_dir', '', 'JAX persistent compilation cache; empty (the '
                    'default): off, so that compile time is measured.')
flags.DEFINE_bool('compare', True, 'Also time the bare loop and the framework without '
                  'prefetching; --nocompare times the framework alone (no ratio).')
flags.DEFINE_string('json', None, 'Also write the figures to this file.')

BARE = 'bare jax.jit loop'
COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


def benchmark_config(config):
  """The config as benchmarked: synthetic data of its shape (unless --real_data), one epoch per
  round, nothing saved inside the timed rounds."""
  config = config.copy_and_resolve_references()
  config.unlock()
  if not FLAGS.real_data:
    config.dataset = 'synthetic'
    config.synthetic_train_examples = FLAGS.steps * config.batch_size
    config.synthetic_eval_examples = config.batch_size
  config.num_epochs = 2 * FLAGS.rounds + 4  # Enough for the schedule; only epochs 0.. are run.
  config.checkpoint_every_steps = 10**9
  return config


def with_host_delay(train_batches, seconds: float):
  """`train_batches`, each batch `seconds` later: host work that prefetching can overlap."""

  @functools.wraps(train_batches)
  def delayed(*args):
    for batch in train_batches(*args):
      time.sleep(seconds)
      yield batch

  return delayed


def bare_loop(config, run: loop.Run):
  """A hand-written training loop over `run`'s first batches, placed on the devices once: the
  same model, optimizer, dtype and normalisation, nothing else. Returns `steps_fn(n)`."""
  built = run.assembly  # The same model, optimizer, shardings and standardisation.
  norm = built.normalization
  graphdef, params, batch_stats = split_model(built.model())
  tx = built.optimizer(run.steps_per_epoch)
  state = jax.device_put((params, batch_stats, tx.init(params), jnp.zeros((), jnp.int32)),
                         built.replicated)
  host_batches = run.source.train_batches(0, 0, run.local_batch, run.steps_per_epoch)
  batches = [jax.device_put((b['image'], b['label']), built.data_sharding)
             for _, b in zip(range(min(4, run.steps_per_epoch)), host_batches)]

  @functools.partial(jax.jit, donate_argnums=0)
  def step(state, images, labels):
    params, batch_stats, opt_state, step = state

    def loss_fn(params):
      model = nnx.merge(graphdef, params, batch_stats)
      model.train()
      outputs = model(steps.normalize(images, norm['mean'], norm['std'], norm['dtype']),
                      rngs=nnx.Rngs(dropout=jax.random.fold_in(jax.random.key(0), step)))
      heads = ([outputs.logits, *outputs.aux_logits] if isinstance(outputs, AuxiliaryOutputs)
               else [outputs])
      targets = jax.nn.one_hot(labels, heads[0].shape[-1])
      loss = sum(optax.softmax_cross_entropy(h.astype(jnp.float32), targets).mean()
                 for h in heads)
      return loss, nnx.to_pure_dict(nnx.split(model, nnx.Param, ...)[2])

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state, step + 1), loss

  def steps_fn(n: int) -> None:
    nonlocal state
    for i in range(n):
      state, loss = step(state, *batches[i % len(batches)])
    jax.block_until_ready((state, loss))

  return steps_fn


def measure(config) -> dict:
  compile_seconds = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, seconds, **_: compile_seconds.append(seconds) if event == COMPILE_EVENT
      else None)
  imported = time.perf_counter()
  with tempfile.TemporaryDirectory() as workdir, loop.Run(config, workdir) as run:
    if FLAGS.host_delay_ms:
      run.source.train_batches = with_host_delay(run.source.train_batches,
                                                 FLAGS.host_delay_ms / 1e3)
    set_up = time.perf_counter()
    epochs = iter(range(config.num_epochs))

    def framework(prefetch: int):
      def steps_fn(n: int) -> None:
        del n  # One epoch: run.steps_per_epoch steps.
        run.config.prefetch_to_device = prefetch
        run.train_epoch(next(epochs))
        jax.block_until_ready(run.state)
      return steps_fn

    rows = {f'framework, prefetch_to_device={config.prefetch_to_device}':
            framework(config.prefetch_to_device)}
    if FLAGS.compare:
      if config.prefetch_to_device:
        rows['framework, prefetch_to_device=0'] = framework(0)
      rows[BARE] = bare_loop(config, run)
    num_steps = run.steps_per_epoch
    first = next(iter(rows))
    rows[first](num_steps)  # Warm-up, including the first step and its compilation.
    framework_compile = sum(compile_seconds)
    startup = {'imports_s': imported - _STARTED, 'set_up_s': set_up - imported,
               'first_step_s': run.startup_seconds - (set_up - imported),
               'time_to_first_step_s': imported - _STARTED + run.startup_seconds,
               'compile_s': framework_compile}
    for name, fn in rows.items():
      if name != first:
        fn(num_steps)  # Warm-up.
    seconds = {name: [] for name in rows}
    for _ in range(FLAGS.rounds):
      for name, fn in rows.items():
        start = time.perf_counter()
        fn(num_steps)
        seconds[name].append(time.perf_counter() - start)
  images = num_steps * config.batch_size
  macs = summary.summarize(config.model, **run.assembly.architecture)['total_macs']
  img_per_s = {name: images / statistics.median(times) for name, times in seconds.items()}
  return {
      'model': config.model, 'dataset': config.dataset, 'image_size': config.image_size,
      'batch_size': config.batch_size, 'dtype': config.dtype, 'steps': num_steps,
      'rounds': FLAGS.rounds, 'host_delay_ms': FLAGS.host_delay_ms,
      'device': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
      'versions': {'jax': jax.__version__, 'flax': flax.__version__},
      'img_per_s': img_per_s, 'seconds': seconds,
      'ratio': img_per_s[BARE] / img_per_s[first] if BARE in img_per_s else None, **startup,
      'train_gflop_per_image': 6 * macs / 1e9,
      'train_tflop_per_s': {name: r * 6 * macs / 1e12 for name, r in img_per_s.items()},
  }


def report(result: dict) -> str:
  lines = [f'{result["model"]}, {result["dataset"]} {result["image_size"]}px, batch '
           f'{result["batch_size"]}, {result["dtype"]}, on {result["device"]} (jax '
           f'{result["versions"]["jax"]}, flax {result["versions"]["flax"]}); median of '
           f'{result["rounds"]} rounds of {result["steps"]} steps'
           + (f', source delayed {result["host_delay_ms"]:g} ms/batch'
              if result['host_delay_ms'] else ''),
           f'{"":<36}{"img/s":>12}{"TFLOP/s":>10}']
  for name, rate in result['img_per_s'].items():
    lines.append(f'{name:<36}{rate:>12,.1f}{result["train_tflop_per_s"][name]:>10.2f}')
  lines += [f'time to first step {result["time_to_first_step_s"]:.1f} s (imports '
            f'{result["imports_s"]:.1f}, set-up {result["set_up_s"]:.1f}, first step '
            f'{result["first_step_s"]:.1f}; XLA compiling or loading cached programs {result["compile_s"]:.1f})']
  if result['ratio'] is not None:
    lines.append(f'ratio framework / bare (time per step): {result["ratio"]:.3f}')
  return '\n'.join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  cli.enable_compilation_cache(FLAGS.compilation_cache_dir)
  result = cli.run_reporting_errors(measure, benchmark_config(FLAGS.config))
  print(report(result))
  if FLAGS.json:
    try:
      with open(FLAGS.json, 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=2)
    except OSError as e:
      cli.fail(f'cannot write --json: {e}')


if __name__ == '__main__':
  app.run(main)

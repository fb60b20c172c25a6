"""The speed kit works (never how fast: tests do not time): bfloat16 training, prefetching to the
device, the persistent compilation cache, the profiler, the throughput benchmark, linear tracing."""

import glob
import json
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax._src.interpreters import partial_eval

import cnns
from configs import resnet18
from tests.cli_runner import run_cli
from tests.conftest import SESSION_CACHE, run_program, run_train
from app import cli, loop
from training import mesh

TINY = ('--config=configs/lenet5.py', '--config.dataset=synthetic',
        '--config.synthetic_train_examples=96', '--config.synthetic_eval_examples=32',
        '--config.batch_size=32', '--config.num_epochs=1', '--config.log_every_steps=1')


def test_bfloat16_keeps_float32_state_and_tracks_float32(tmp_path):
  losses, state_dtypes = {}, {}
  for dtype in ('float32', 'bfloat16'):
    config = resnet18.get_config()
    config.update({'dataset': 'synthetic', 'image_size': 32, 'num_classes': 10,
                   'synthetic_train_examples': 128, 'synthetic_eval_examples': 16,
                   'batch_size': 16, 'num_epochs': 1, 'log_every_steps': 1, 'dtype': dtype,
                   'learning_rate': 0.001})
    with loop.Run(config, str(tmp_path / dtype)) as run:
      run.train_epoch(0)
      state_dtypes[dtype] = {x.dtype for x in jax.tree.leaves(
          (run.state.params, run.state.batch_stats, run.state.opt_state))
                             if jnp.issubdtype(x.dtype, jnp.floating)}
    with open(tmp_path / dtype / 'metrics.jsonl', encoding='utf-8') as f:
      losses[dtype] = np.array([json.loads(line)['train/loss'] for line in f])
  # Parameters, BatchNorm statistics, optimizer state and the loss stay float32 ...
  assert state_dtypes['bfloat16'] == state_dtypes['float32'] == {np.dtype('float32')}
  # ... and bfloat16 compute follows float32: the same first loss (measured 0.7% apart), and
  # eight steps learning as fast (mean losses measured 3.5% apart). Step by step the losses part
  # by up to 40%: this task is learnt in a few steps, so small differences grow.
  bf16, f32 = losses['bfloat16'], losses['float32']
  assert len(bf16) == len(f32) == 8
  assert bf16[0] == pytest.approx(f32[0], rel=0.02)
  assert bf16.mean() == pytest.approx(f32.mean(), rel=0.1)
  assert bf16[-1] < bf16[0] / 2 and f32[-1] < f32[0] / 2


def test_prefetch_to_device_keeps_order_and_content():
  sharding = mesh.batch_sharding(mesh.create_mesh())
  batches = [{'image': np.full((4, 2), i, np.uint8), 'label': np.arange(4) + i} for i in range(7)]
  for size in (0, 1, 3):
    got = list(mesh.prefetch_to_device(iter(batches), sharding, size))
    assert len(got) == 7
    for g, b in zip(got, batches):
      assert isinstance(g['image'], jax.Array) and g['image'].sharding == sharding
      np.testing.assert_array_equal(g['image'], b['image'])
      np.testing.assert_array_equal(g['label'], b['label'])


def test_prefetch_to_device_raises_the_source_error_and_reads_at_most_size_ahead():
  sharding = mesh.batch_sharding(mesh.create_mesh())

  def failing():
    yield {'x': np.zeros(4)}
    raise OSError('disk gone')

  with pytest.raises(OSError, match='disk gone'):
    list(mesh.prefetch_to_device(failing(), sharding, 2))

  read = []
  endless = (read.append(i) or {'x': np.full(4, i)} for i in range(10**9))
  batches = mesh.prefetch_to_device(endless, sharding, 2)
  first, second = next(batches), next(batches)
  assert (int(first['x'][0]), int(second['x'][0])) == (0, 1)
  assert read == [0, 1, 2, 3]  # Two steps used, two placed ahead, nothing more read.
  batches.close()  # A consumer that stops early (a stop signal, divergence).


def cache_files(directory) -> set[str]:
  return {f for f in os.listdir(directory) if not f.startswith('.')}


def test_compilation_cache_makes_a_restart_compile_nothing(tmp_path):
  """The same run started again from scratch, and a rerun of the finished run (it restores and
  evaluates again), compile nothing: every program comes from the cache, so no entry is added.
  Counting entries counts compilations (one entry each). Each run is a new process, a restart:
  in this process the programs would come from JAX's memory, and the cache stay on after."""
  cache = tmp_path / 'cache'
  flag = f'--compilation_cache_dir={cache}'
  first = run_train(*TINY, f'--workdir={tmp_path / "run"}', flag)
  assert first.returncode == 0, first.stderr
  entries = cache_files(cache)
  assert {e.split('-')[0] for e in entries} >= {'jit_train_step', 'jit_eval_step'}
  for workdir in ('again', 'run'):
    again = run_train(*TINY, f'--workdir={tmp_path / workdir}', flag)
    assert again.returncode == 0, again.stderr
    assert cache_files(cache) == entries, workdir


def test_an_empty_or_unwritable_cache_directory_turns_the_cache_off(tmp_path, capsys):
  """--compilation_cache_dir= turns it off; a folder that cannot be written turns it off with one
  note, not an error."""
  unwritable = tmp_path / 'file'
  unwritable.write_text('')
  try:
    cli.enable_compilation_cache('')
    assert jax.config.jax_compilation_cache_dir is None
    assert capsys.readouterr().err == ''
    cli.enable_compilation_cache(str(tmp_path / 'cache'))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'cache')
    cli.enable_compilation_cache(str(unwritable / 'cache'))
    assert jax.config.jax_compilation_cache_dir is None
    assert capsys.readouterr().err.startswith('note: compilation cache off (')
  finally:  # The session's cache (tests/conftest.py), as before.
    cli.enable_compilation_cache(os.environ[SESSION_CACHE])


def test_profile_steps_write_a_trace_that_top_ops_reads(tmp_path):
  result = run_cli('train.py', *TINY, '--config.profile_steps=(1,3)', f'--workdir={tmp_path}')
  assert result.returncode == 0, result.stderr
  assert f'profile of steps 1 to 2 written to {tmp_path}/profile' in result.stderr
  assert glob.glob(str(tmp_path / 'profile' / 'plugins' / 'profile' / '*' / '*.trace.json.gz'))
  top = run_cli('benchmarks.top_ops', str(tmp_path), '--top=5')
  assert top.returncode == 0, top.stderr
  assert 'jit_train_step' in top.stdout and len(top.stdout.splitlines()) == 2 + 5
  bad = run_cli('train.py', *TINY, '--config.profile_steps=(3,1)', f'--workdir={tmp_path / "bad"}')
  assert bad.returncode == 2 and 'profile_steps=(3, 1) must be (start, stop)' in bad.stderr


def test_train_throughput_benchmark_runs_as_a_script(tmp_path):
  # A new process: the script makes the packages importable itself, and times its imports.
  out = tmp_path / 'figures.json'
  result = run_program('benchmarks/train_throughput.py', '--config=configs/lenet5.py', '--steps=2',
                       '--rounds=1', '--host_delay_ms=1', f'--json={out}')
  assert result.returncode == 0, result.stderr
  figures = json.loads(out.read_text())
  assert list(figures['img_per_s']) == ['framework, prefetch_to_device=2',
                                        'framework, prefetch_to_device=0', 'bare jax.jit loop']
  assert figures['dataset'] == 'synthetic' and figures['steps'] == 2
  assert figures['ratio'] > 0 and figures['time_to_first_step_s'] > figures['compile_s'] > 0
  assert 'ratio framework / bare (time per step)' in result.stdout


def test_tracing_a_model_builds_no_tracer_error_messages():
  """Flax probes `value.sharding` on every `variable[...] = value`; on a tracer JAX builds an
  error message by walking the whole trace so far (quadratic tracing). cnns/tracing.py avoids the
  probe: tracing construction and a training-mode forward pass builds no such message, and a
  model built under jit is the model built eagerly (the RNG counts advance as before: a wrong
  count would give layers the same or other keys, and other weights)."""
  def build():
    return cnns.create_model('resnet18', num_classes=10, image_size=32, rngs=nnx.Rngs(3))

  def train_forward(model, images):
    model.train()
    return model(images)

  with mock.patch.object(partial_eval.DynamicJaxprTracer, '_origin_msg', autospec=True,
                         return_value='') as origin_msg:
    cnns.trace('resnet18', num_classes=10, image_size=32, in_channels=3)
    jitted = jax.jit(lambda: nnx.state(build()))()
    nnx.jit(train_forward)(build(), np.zeros((2, 32, 32, 3), np.float32))
  assert origin_msg.call_count == 0
  eager = nnx.state(build())  # Equal up to XLA fusing the initializers' scaling (1 ulp).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), jitted, eager)

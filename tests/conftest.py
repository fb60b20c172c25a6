"""Shared test helpers: the repository on sys.path, Fashion-MNIST prepared once, the system Python
with torchvision, the entry points run as programs (tests/cli_runner.py runs them in this
process), the check of a user error's one line, and of sharded sources' batches."""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import system_python  # pylint: disable=wrong-import-position

DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'
SESSION_CACHE = 'CNNS_TEST_COMPILATION_CACHE'  # Names the session's JAX compilation cache.
SYSTEM_PYTHON = system_python.PYTHON  # Debian's, with python3-torchvision: PyTorch references.


def pytest_configure(config):
  # Caches the code keeps under ~/.cache (image folders' checks) go to a folder of this session.
  os.environ['XDG_CACHE_HOME'] = tempfile.mkdtemp(prefix='cnns-test-cache-')
  config.add_cleanup(lambda: shutil.rmtree(os.environ['XDG_CACHE_HOME'], ignore_errors=True))
  # One JAX compilation cache for the whole session, never the user's: the workers (which inherit
  # the controller's environment) and every program they start read what an earlier test compiled
  # (measured: a tenth of the suite's time). An entry is keyed by its program, so sharing changes
  # no result; one read while another process writes it is a miss, compiled again.
  # XLA's CPU backend at LLVM's optimisation level 1, not 3 (the workers and the programs they
  # start inherit the flag): most tests compile far more than they compute. Measured on a 2-core
  # VM: GoogLeNet's, AlexNet's and Inception-ResNet-v2's training steps 69 s of CPU against 92 s,
  # test_sharding.py's eight devices 48 s against 54 s (level 0 compiles faster still but runs
  # that one in 91 s). The operations are the same; only the machine code that runs them differs.
  if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = ' '.join([os.environ.get('XLA_FLAGS', ''),
                                        '--xla_backend_optimization_level=1']).strip()
  # The workers (and the programs they start) keep the memory they free for their next arrays,
  # rather than return it to the system and touch new pages: on a VM whose host takes freed pages
  # back, a page touched anew costs microseconds. Measured on this project's 2-core 24 GB VM: the
  # suite 7.3 minutes against 8.2, its memory in use peaking at 18 GB against 12.
  for name, value in (('MALLOC_MMAP_MAX_', '0'), ('MALLOC_TRIM_THRESHOLD_', str(1 << 34))):
    os.environ.setdefault(name, value)
  if SESSION_CACHE not in os.environ:  # The controller, or a run without workers.
    os.environ[SESSION_CACHE] = tempfile.mkdtemp(prefix='cnns-test-compilation-cache-')
    config.add_cleanup(lambda: shutil.rmtree(os.environ.pop(SESSION_CACHE), ignore_errors=True))
  from app import cli
  cli.enable_compilation_cache(os.environ[SESSION_CACHE])
  # Keras 3.15's TensorFlow backend converts variables with NumPy 1's __array__ protocol: one
  # DeprecationWarning per weight read in the published-weights tests, about Keras, not this code.
  config.addinivalue_line('filterwarnings', "ignore:__array__ implementation doesn't accept a "
                          'copy keyword:DeprecationWarning')


def made_once(tmp_path_factory, name: str, make) -> str:
  """The folder `name`, filled by `make(folder)` once in the session: by the first pytest-xdist
  worker that asks (the others wait for it), then shared. Its users only read it."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # The session's folder, which holds each worker's own.
  folder, done = root / name, root / f'{name}.done'
  with open(root / f'{name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
    if not done.exists():
      shutil.rmtree(folder, ignore_errors=True)  # What a worker that failed left.
      folder.mkdir()
      make(str(folder))
      done.touch()
  return str(folder)


@pytest.fixture(scope='session')
def fashion_mnist_dir(tmp_path_factory):
  """A TFDS data_dir holding fashion_mnist, prepared from Debian's files (no network)."""
  if not os.path.isdir(DEBIAN_FASHION_MNIST):
    pytest.fail('Fashion-MNIST files missing: apt-get install dataset-fashion-mnist')
  from input_pipeline import tfds_source
  return made_once(tmp_path_factory, 'tfds',
                   lambda data_dir: tfds_source.prepared_builder('fashion_mnist', data_dir))


@pytest.fixture(scope='session')
def lenet5_fashion_mnist(fashion_mnist_dir, tmp_path_factory):
  """The workdir of train.py's LeNet-5 (configs/lenet5.py) trained for 1 epoch on Fashion-MNIST,
  once in the session: test_fashion_mnist.py checks what it learnt, test_visualize.py draws it.
  Its users only read it."""
  from tests.cli_runner import run_cli

  def train(workdir):
    result = run_cli('train.py', '--config=configs/lenet5.py',
                     f'--config.data_dir={fashion_mnist_dir}', '--config.num_epochs=1',
                     '--config.log_every_steps=200', f'--workdir={workdir}')
    assert result.returncode == 0, result.stderr

  return made_once(tmp_path_factory, 'lenet5_fashion_mnist', train)


@pytest.fixture(scope='session')
def ilsvrc_dir(tmp_path_factory):
  """A TFDS data_dir holding the miniature ILSVRC2012 (ilsvrc_fixture.py), prepared by TFDS's own
  imagenet2012 builder from the tars, once in the session. Its users only read it."""
  from input_pipeline import imagenet
  from tests import ilsvrc_fixture

  def prepare(data_dir):
    ilsvrc_fixture.write_tars(imagenet.manual_dir(data_dir))
    imagenet.prepared_builder(data_dir, process_count=1)

  return made_once(tmp_path_factory, 'imagenet', prepare)


@pytest.fixture(scope='session')
def system_torchvision():
  """Debian's system Python with torchvision, which writes the reference models and files that
  the published-weights tests read (the virtual environment has no PyTorch): tests/system_python.py
  runs their scripts in one child process, started here, stopped at the end of the session."""
  if not system_python.start():
    pytest.fail(f'{SYSTEM_PYTHON} cannot import torchvision: apt-get install python3-torchvision '
                '(setup.sh installs it)')
  yield
  system_python.stop()


def train_command(*args: str) -> list[str]:
  return [sys.executable, os.path.join(ROOT, 'train.py'), *args]


def subprocess_env(num_devices: int = 1) -> dict[str, str]:
  """Environment for a child JAX process on `num_devices` fake CPU devices."""
  # The session's compilation cache (pytest_configure), never the user's ~/.cache.
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3',
             JAX_COMPILATION_CACHE_DIR=os.environ.get(SESSION_CACHE, ''))
  # XLA's CPU collectives abort the process when a fake device's thread reaches an all-reduce
  # more than 40 s after the others, which happens when the 2 cores are oversubscribed. The timeout
  # is this flag (a device delayed 6 s by a host callback aborts at =2, finishes at =600).
  # Flags already in XLA_FLAGS are kept (for example --xla_cpu_max_isa=SSE4_2, which gives the
  # float32 roundings of an older x86-64 CPU).
  env['XLA_FLAGS'] = ' '.join([os.environ.get('XLA_FLAGS', ''),
                               f'--xla_force_host_platform_device_count={num_devices}',
                               '--xla_cpu_collective_call_terminate_timeout_seconds=3600']).strip()
  return env


def run_program(program: str, *args: str, num_devices: int = 1, timeout: float = 600):
  """`python <program> ARGS` ('train.py', or '-m cnns.summary') in a new process, on `num_devices`
  fake CPU devices, to completion; returns the CompletedProcess (text output). For what needs a
  process: signals, another device count, the start as a program. tests/cli_runner.py's `run_cli`
  runs the entry points in the test's process otherwise."""
  return subprocess.run([sys.executable, *program.split(), *args], env=subprocess_env(num_devices),
                        cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def run_train(*args: str, **kwargs):
  return run_program('train.py', *args, **kwargs)


def run_in_one_process(commands: list[list[str]], num_devices: int) -> list:
  """`run_cli(*command)` of each command in turn, in one new process on `num_devices` fake CPU
  devices (what the second run compiles again, it takes from the first); their results."""
  done = run_program('-m tests.cli_runner', json.dumps(commands), num_devices=num_devices)
  assert done.returncode == 0, done.stderr
  return [subprocess.CompletedProcess(**result)
          for result in json.loads(done.stdout.splitlines()[-1])]


def assert_one_line_error(result, message):
  """A user error: non-zero exit, no traceback, one `error:` line, the last, holding `message`."""
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert lines[-1].startswith('error: ') and message in lines[-1], result.stderr
  assert sum(line.startswith('error: ') for line in lines) == 1


def read_metrics(workdir: str) -> list[dict]:
  """The records of a run's metrics.jsonl, in order."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def assert_same_global_batches(one_process, processes, global_batch, steps):
  """The processes' local batches, concatenated in process order, are the one process's."""
  per_process = [list(p.train_batches(0, 0, global_batch // len(processes), steps))
                 for p in processes]
  whole = list(one_process.train_batches(0, 0, global_batch, steps))
  assert len(whole) == steps
  for k, batch in enumerate(whole):
    for key in batch:  # image, label, and lighting where the source draws it.
      np.testing.assert_array_equal(np.concatenate([p[k][key] for p in per_process]), batch[key])

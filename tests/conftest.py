"""Shared fixtures: the repository on sys.path, Fashion-MNIST prepared once, a train.py runner."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'


@pytest.fixture(scope='session')
def fashion_mnist_dir(tmp_path_factory):
  """A TFDS data_dir holding fashion_mnist, prepared from Debian's files (no network)."""
  if not os.path.isdir(DEBIAN_FASHION_MNIST):
    pytest.fail('Fashion-MNIST files missing: apt-get install dataset-fashion-mnist')
  from input_pipeline import tfds_source
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  tfds_source.prepared_builder('fashion_mnist', data_dir)
  return data_dir


def train_command(*args: str) -> list[str]:
  return [sys.executable, os.path.join(ROOT, 'train.py'), *args]


def subprocess_env(num_devices: int = 1) -> dict[str, str]:
  """Environment for a child JAX process on `num_devices` fake CPU devices."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={num_devices}'
  return env


def run_train(*args: str, num_devices: int = 1, timeout: float = 600):
  """Runs train.py to completion; returns the CompletedProcess (text output)."""
  return subprocess.run(train_command(*args), env=subprocess_env(num_devices), cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout)


def read_metrics(workdir: str) -> list[dict]:
  """The records of a run's metrics.jsonl, in order."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]

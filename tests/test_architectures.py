"""Architectures of the seed against its tables and the papers, by abstract evaluation."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import cnns
from cnns import layers, summary
from tests.conftest import ROOT, subprocess_env
from training import steps
from training.state import create_train_state


def table(model, image_size=224, in_channels=3, num_classes=1000):
  return summary.summarize(model, image_size=image_size, in_channels=in_channels,
                           num_classes=num_classes)


def rows(result):
  return {row['name']: row for row in result['layers']}


def test_lenet5_table():
  result = table('lenet5', image_size=32, in_channels=1, num_classes=10)
  assert result['total_params'] == 61_706
  assert [tuple(r['output_shape']) for r in result['layers']] == [
      (28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (120,), (84,), (10,)]


def test_alexnet_follows_the_seed():
  result = table('alexnet', image_size=227)
  by_name = rows(result)
  assert by_name['conv1']['params'] == 34_848 + 96
  assert [(r['name'], tuple(r['output_shape'])) for r in result['layers']] == [
      ('conv1', (55, 55, 96)), ('pool1', (27, 27, 96)), ('norm1', (27, 27, 96)),
      ('conv2', (27, 27, 256)), ('pool2', (13, 13, 256)), ('norm2', (13, 13, 256)),
      ('conv3', (13, 13, 384)), ('conv4', (13, 13, 384)), ('conv5', (13, 13, 256)),
      ('pool3', (6, 6, 256)), ('fc6', (4096,)), ('fc7', (4096,)), ('fc8', (1000,))]
  assert by_name['fc6']['params'] == 6 * 6 * 256 * 4096 + 4096  # "9216 to 4096 neurons".
  assert result['total_params'] == 62_378_344


# Table 2 of the VGG paper, in millions.
VGG_MILLIONS = {'vgg11': 133, 'vgg11_lrn': 133, 'vgg13': 133, 'vgg16c': 134, 'vgg16': 138,
                'vgg19': 144}


@pytest.mark.parametrize('model', VGG_MILLIONS)
def test_vgg_parameters_match_table_2(model):
  assert round(table(model)['total_params'] / 1e6) == VGG_MILLIONS[model]


def test_vgg16_matches_the_seeds_worked_example():
  result = table('vgg16')
  biases = sum(r['output_shape'][-1] for r in result['layers'] if r['params'])
  assert result['total_params'] - biases == 138_344_128
  by_name = rows(result)
  assert by_name['conv1_1']['params'] - 64 == 1_728  # (3 x 3 x 3) x 64
  assert tuple(by_name['conv1_2']['output_shape']) == (224, 224, 64)
  assert tuple(by_name['pool3']['output_shape']) == (28, 28, 256)
  assert tuple(by_name['pool5']['output_shape']) == (7, 7, 512)
  assert by_name['fc6']['params'] - 4096 == 7 * 7 * 512 * 4096  # 102,760,448
  # Seed: about 15M activations, 60 MB per image forward, 550 + 60 x 128 = 8.2 GB per batch.
  assert 15.0e6 < result['total_activations'] < 15.5e6
  assert 8.0 < summary.batch_memory_gb(result, 128, 1) < 8.6
  assert result['total_macs'] == pytest.approx(15.47e9, rel=1e-3)


def test_vgg16c_has_the_1x1_convolutions():
  by_name = rows(table('vgg16c'))
  assert by_name['conv3_3']['params'] == 256 * 256 + 256
  assert by_name['conv5_3']['params'] == 512 * 512 + 512


def test_geometry_that_does_not_fit_names_the_layer():
  with pytest.raises(layers.GeometryError, match=r'conv1: .* = 54\.25 does not fit'):
    table('alexnet', image_size=224)


def test_summary_cli_json_and_geometry_error():
  command = [sys.executable, '-m', 'cnns.summary', '--config=configs/vgg19.py', '--json']
  result = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  import json
  data = json.loads(result.stdout)
  assert data['total_params'] == 143_667_240
  assert {'name', 'output_shape', 'params', 'macs'} <= set(data['layers'][0])
  bad = subprocess.run([sys.executable, '-m', 'cnns.summary', '--config=configs/alexnet.py',
                        '--config.image_size=224'], cwd=ROOT, env=subprocess_env(),
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and 'Traceback' not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1].startswith('error: conv1: ')


# Smallest inputs whose geometry fits: fast forward/backward passes on the CPU.
SMALL_INPUT = {'alexnet': 67, **{name: 32 for name in VGG_MILLIONS}}


@pytest.mark.parametrize('model', SMALL_INPUT)
def test_training_steps_lower_the_loss(model):
  net = cnns.create_model(model, num_classes=10, in_channels=3, image_size=SMALL_INPUT[model],
                          rngs=nnx.Rngs(0))
  tx = optax.sgd(0.01, momentum=0.9)
  graphdef, state = create_train_state(net, tx)
  step = steps.make_train_step(graphdef, tx, mean=(127.5,) * 3, std=(64.0,) * 3,
                               dtype=jnp.float32, num_classes=10, label_smoothing=0.0, seed=0,
                               out_sharding=None)
  evaluate = steps.make_eval_step(graphdef, mean=(127.5,) * 3, std=(64.0,) * 3,
                                  dtype=jnp.float32, out_sharding=None)
  rng = np.random.default_rng(0)
  size = SMALL_INPUT[model]
  batch = {'image': rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8),
           'label': np.arange(8, dtype=np.int32)}
  # Loss without dropout on the training batch, before and after five steps on it.
  loss = lambda state: float(evaluate(state, steps.zero_metrics(*steps.EVAL_METRICS),
                                      {**batch, 'mask': np.ones(8, bool)})['loss']) / 8
  before = loss(state)
  for _ in range(5):
    state, _ = step(state, steps.zero_metrics(*steps.TRAIN_METRICS), batch)
  after = loss(state)
  assert np.isfinite(after) and after < before, (before, after)

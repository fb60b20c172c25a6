"""visualize.py and plot_metrics.py on a LeNet-5 trained for two epochs on Fashion-MNIST."""

import html.parser
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import input_pipeline
from cnns import visualization
from configs import lenet5
from tests.cli_runner import run_cli
from tests.conftest import assert_one_line_error, read_metrics
from app import inference


@pytest.fixture(scope='module')
def trained(lenet5_fashion_mnist):
  return lenet5_fashion_mnist


@pytest.fixture(scope='module')
def checkpoint(trained, fashion_mnist_dir):
  config = lenet5.get_config()
  config.data_dir = fashion_mnist_dir
  return inference.load(config, trained, note=lambda _: None)


class Images(html.parser.HTMLParser):

  def __init__(self):
    super().__init__()
    self.sources, self.captions, self._caption = [], [], False

  def handle_starttag(self, tag, attrs):
    if tag == 'img':
      self.sources.append(dict(attrs)['src'])
    self._caption = tag == 'figcaption'

  def handle_data(self, data):
    if self._caption:
      self.captions.append(data)
      self._caption = False


def test_visualize_writes_every_picture_and_a_page_showing_them(trained, fashion_mnist_dir,
                                                                 tmp_path):
  out = tmp_path / 'pictures'
  result = run_cli('visualize.py', '--config=configs/lenet5.py',
                   f'--config.data_dir={fashion_mnist_dir}', f'--workdir={trained}', f'--out={out}',
                   '--example=3')
  assert result.returncode == 0, result.stderr
  expected = {'prediction.png', 'filters_conv1.png', 'filters_conv2.png', 'activations_conv1.png',
              'activations_pool1.png', 'activations_conv2.png', 'activations_pool2.png',
              'occlusion.png', 'saliency.png'}
  assert set(os.listdir(out)) == expected | {'index.html'}
  assert set(result.stdout.split()) == {str(out / name) for name in expected | {'index.html'}}
  for name in expected:
    with Image.open(out / name) as image:
      assert image.format == 'PNG' and 100 <= min(image.size) and max(image.size) <= 1000, (
          name, image.size)
      image.verify()
  page = Images()
  page.feed((out / 'index.html').read_text())
  assert sorted(page.sources) == sorted(expected) and len(page.captions) == len(expected)
  assert any('conv1: its 6 filters, grey' == c for c in page.captions), page.captions
  assert any(c.startswith('conv2: activation maps, output 10x10x16 (all channels)')
             for c in page.captions)


def test_visualize_mistakes_are_one_line(trained, tmp_path):
  for flags, message in ((['--image=/nonexistent.png'], '--image=/nonexistent.png: No such file'),
                         (['--image=x.png', '--example=1'], 'give --image or --example'),
                         (['--layers=conv9,fc3'], '--layers: conv9, fc3 not a layer of lenet5 '
                                                  'with activation maps or filters'),
                         (['--max_tiles=0'], '--max_tiles=0 must be at least 1')):
    image = tmp_path / 'x.png'
    Image.new('L', (40, 30), 128).save(image)
    flags = [f.replace('x.png', str(image)) for f in flags]
    result = run_cli('visualize.py', '--config=configs/lenet5.py', f'--workdir={trained}',
                     f'--out={tmp_path / "out"}', *flags)
    assert_one_line_error(result, message)


def test_filter_grid_holds_exactly_the_layers_filters(checkpoint):
  kernel = np.asarray(checkpoint.params['conv1']['conv']['kernel'])  # 5x5x1x6
  tiles = visualization.filter_tiles(kernel)
  assert tiles.shape == (6, 5, 5, 1)
  for i in range(6):
    f = kernel[..., 0, i]
    np.testing.assert_allclose(tiles[i, ..., 0], (f - f.min()) / (f.max() - f.min()), atol=1e-6)
  grid = visualization.filter_grid(kernel)
  assert grid.shape == (1 + 2 * 6, 1 + 3 * 6, 1)  # 3 columns x 2 rows of 5x5, 1-pixel gaps.
  for i in range(6):
    y, x = 1 + (i // 3) * 6, 1 + (i % 3) * 6
    np.testing.assert_array_equal(grid[y:y + 5, x:x + 5], tiles[i])


def evaluation_images(checkpoint, count: int):
  source = input_pipeline.create_source(checkpoint.config, process_index=0, process_count=1)
  batch = next(source.eval_batches(count, 1))
  return batch['image'][:count], batch['label'][:count]


def test_occluding_the_object_lowers_its_probability_more_than_an_empty_border(checkpoint):
  """On test images the net classifies right: hiding part of the garment (the worst of the
  squares that are at least half as inked as the most inked one) costs more probability than
  hiding the emptiest corner of the image."""
  import jax
  probability = jax.jit(lambda x: jax.nn.softmax(checkpoint.logits(checkpoint.params, x)))
  images, labels = evaluation_images(checkpoint, 40)
  right = [i for i in range(len(labels))
           if int(np.argmax(probability(images[i:i + 1])[0])) == labels[i]][:8]
  assert len(right) == 8
  size, stride = 8, 2
  for i in right:
    image = images[i]
    occlusion = visualization.occlusion_map(probability, image, int(labels[i]), size=size,
                                            stride=stride, fill=np.asarray(checkpoint.mean))
    ink = np.array([[image[y:y + size, x:x + size].sum() for x in range(0, 25, stride)]
                    for y in range(0, 25, stride)])
    empty = min([(0, 0), (0, -1), (-1, 0), (-1, -1)], key=lambda p: ink[p])
    on_object = ink >= ink.max() / 2
    assert ink[empty] < ink.max() / 2
    assert occlusion[on_object].min() < occlusion[empty], (i, occlusion, ink)


def test_saliency_has_the_inputs_shape(checkpoint):
  images, labels = evaluation_images(checkpoint, 1)
  gradient = visualization.saliency_gradient(
      lambda x: checkpoint.logits(checkpoint.params, x), images[0], int(labels[0]))
  assert gradient.shape == images[0].shape == (32, 32, 1)
  assert np.isfinite(gradient).all() and np.abs(gradient).max() > 0
  assert visualization.saliency_map(gradient).shape == (32, 32)


def test_plot_metrics_draws_a_resumed_run_and_two_runs(trained, tmp_path):
  resumed = tmp_path / 'resumed'
  resumed.mkdir()
  records = read_metrics(trained)
  # A resumed run of an older layout logged some records twice; each step is drawn once.
  with open(resumed / 'metrics.jsonl', 'w') as f:
    for record in records + records[-3:]:
      f.write(json.dumps(record) + '\n')
  import plot_metrics
  runs = plot_metrics.read_run(str(resumed))
  assert [(r['step'], 'eval/loss' in r) for r in runs] == sorted(
      {(r['step'], 'eval/loss' in r) for r in records})
  out = tmp_path / 'curves.png'
  result = run_cli('plot_metrics.py', trained, str(resumed), f'--out={out}', '--paper')
  assert result.returncode == 0, result.stderr
  with Image.open(out) as image:
    assert image.format == 'PNG' and image.size == (1600, 340)
  shutil.rmtree(resumed)
  result = run_cli('plot_metrics.py', str(resumed), f'--out={out}')
  assert_one_line_error(result, f'{resumed}/metrics.jsonl: No such file or directory')


def test_plot_metrics_skips_what_is_not_a_record_with_one_warning(tmp_path):
  """Damaged bytes, another program's lines, a torn line, a damaged config.json: drawn without
  them; nothing left to draw is one line."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  records = [{'step': 4, 'epoch': 0.5, 'train/loss': 2.3, 'train/learning_rate': 0.1},
             {'step': 8, 'epoch': 1.0, 'eval/loss': 2.0, 'eval/top1_acc': 0.3,
              'eval/top5_acc': 0.7}]
  good = [json.dumps(r).encode() for r in records]
  (workdir / 'metrics.jsonl').write_bytes(b'\n'.join(
      [good[0], b'\xff\xfe', b'42', b'["step"]', b'{"step": 6}', b'{"step": 7, "epoch": "1"}',
       b'{"step": 7, "epoch": 1, "train/loss": "high"}', good[1], b'{"step": 9, "ep']))
  (workdir / 'config.json').write_text('["not", "a", "config"]')
  out = tmp_path / 'curves.png'
  result = run_cli('plot_metrics.py', str(workdir), f'--out={out}', '--paper')
  assert result.returncode == 0, result.stderr
  assert result.stderr.splitlines() == [
      f'warning: {workdir}/metrics.jsonl: 7 lines (2, 3, 4, 5, 6, ...) are not records of '
      'train.py (torn by a crash or a full disk, damaged, or written by another program); skipped',
      f'warning: {workdir}/config.json: not the config.json train.py writes (TypeError: list '
      "indices must be integers or slices, not str); drawn without the paper's error"]
  import plot_metrics
  assert plot_metrics.read_run(str(workdir)) == records
  (workdir / 'metrics.jsonl').write_bytes(b'\xff\n42\n')
  result = run_cli('plot_metrics.py', str(workdir), f'--out={out}')
  assert_one_line_error(result, f'{workdir}/metrics.jsonl holds no numbers to draw yet')
  assert result.returncode == 2

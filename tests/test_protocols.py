"""The papers' evaluation protocols (app/evaluation.py) end to end on the miniature ILSVRC2012:
VGG's dense multi-scale testing against a reference computed image by image, its exactness at the
crop size, GoogLeNet's 144 crops with Polyak-averaged weights, ResNet's fully-convolutional
multi-scale testing on one and on two processes, and the configs' protocol strings."""

import importlib
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

import cnns
import input_pipeline
from configs import default
from input_pipeline import EvalView, views
from app import evaluation, loop, weights
from app.assembly import assemble_from_record
from training import metrics, steps
from training.errors import ConfigError
from tests.cli_runner import run_cli
from tests.conftest import assert_one_line_error, read_metrics
from tests.test_multiprocess import run_job

NUM_IMAGES = 13  # ilsvrc_fixture.VAL


def tiny_run(data_dir, workdir, config_name, **overrides):
  """One epoch (3 steps of 4 images) of `config_name` on the miniature ILSVRC2012, in `workdir`;
  returns the config."""
  config = importlib.import_module(f'configs.{config_name}').get_config()
  config.update({'data_dir': data_dir, 'batch_size': 4, 'num_epochs': 1, 'log_every_steps': 1,
                 'shuffle_buffer_size': 100, **overrides})
  loop.train_and_evaluate(config, workdir)
  return config


def flags(config_name, data_dir, **overrides):
  return (f'--config=configs/{config_name}.py', f'--config.data_dir={data_dir}',
          *(f'--config.{k}={v}' for k, v in overrides.items()))


@pytest.fixture(scope='module')
def vgg(ilsvrc_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('vgg11'))
  return tiny_run(ilsvrc_dir, workdir, 'vgg11', image_size=32, eval_resize=32,
                  train_scale_range=(32, 40)), workdir


@pytest.fixture(scope='module')
def resnet(ilsvrc_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('resnet18'))
  return tiny_run(ilsvrc_dir, workdir, 'resnet18', image_size=32, learning_rate=1e-3,
                  ema_decay=0.999), workdir  # Evaluated, as evaluate.py does, by its average.


def reference_probabilities(config, workdir, passes):
  """Per image (keyed by label and the first pass's pixels), the softmax outputs of the model (its
  averaged weights where training kept them) averaged over each pass's views and then over the
  passes, one image at a time in float64."""
  source = input_pipeline.create_source(config, process_index=0, process_count=1)
  graphdef, abstract = assemble_from_record(
      config, weights.recorded_config(workdir)).abstract_state(config)
  state = weights.restore(workdir, abstract)[0]
  model = nnx.merge(graphdef, state.params if state.ema_params is None else state.ema_params,
                    state.batch_stats)
  model.eval()
  mean, std = input_pipeline.normalization(config, source.spec)
  logits_of = nnx.jit(lambda model, x, dense: model.dense(x) if dense else model(x),
                      static_argnums=2)  # One compilation per image shape, not per operation.
  per_image = {}
  for view, mirror in passes:
    for batch in source.eval_batches(1, 0, view):
      image = batch['image'][0]
      shown = image[None] if image.ndim == 3 else image
      if mirror:
        shown = np.concatenate([shown, shown[:, :, ::-1]])
      x = steps.normalize(shown, mean, std, np.float32)
      logits = np.asarray(logits_of(model, x, view.crops == views.DENSE), np.float64)
      p = np.exp(logits - logits.max(1, keepdims=True))
      p = (p / p.sum(1, keepdims=True)).mean(0)
      key = int(batch['index'][0])
      per_image.setdefault(key, [int(batch['label'][0]), []])[1].append(p)
  return [(label, np.mean(ps, axis=0)) for label, ps in per_image.values()]


def assert_metrics_of(result, reference):
  labels = np.array([label for label, _ in reference])
  p = np.stack([p for _, p in reference])
  truth = p[np.arange(len(labels)), labels]
  rank = (p > truth[:, None]).sum(1)
  assert result['num_examples'] == NUM_IMAGES == len(reference)
  assert result['top1_acc'] == pytest.approx(np.mean(rank < 1), abs=1e-9)
  assert result['top5_acc'] == pytest.approx(np.mean(rank < 5), abs=1e-9)
  assert result['loss'] == pytest.approx(-np.log(truth).mean(), rel=1e-4)


def test_vgg_dense_multi_scale_testing_matches_a_per_image_reference(ilsvrc_dir, vgg):
  """VGG Table 4's protocol at small scales: whole images at two shorter sides and their
  mirrors, the class score maps averaged, the softmax outputs averaged over all four."""
  config, workdir = vgg
  result = run_cli('evaluate.py', *flags('vgg11', ilsvrc_dir, image_size=32, eval_batch_size=2),
                        f'--workdir={workdir}', '--dense', '--flip', '--scales=32,64')
  assert result.returncode == 0, result.stderr
  assert 'dense with the mirror image, shorter sides 32, 64' in result.stdout
  assert "note: the paper's numbers are for dense with the mirror image, shorter side 256" in (
      result.stdout)
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    record = json.load(f)
  assert record['protocol'] == {
      'description': 'dense with the mirror image, shorter sides 32, 64', 'crops': 0,
      'scales': [32, 64], 'dense': True, 'flip': True, 'views': 4, 'paper': False}
  passes = [(EvalView('dense', s), True) for s in (32, 64)]
  assert_metrics_of(record, reference_probabilities(config, workdir, passes))


def test_a_scale_vggs_pools_cannot_tile_is_one_line(ilsvrc_dir, vgg):
  _, workdir = vgg
  result = run_cli('evaluate.py', *flags('vgg11', ilsvrc_dir, image_size=32, eval_batch_size=2),
                        f'--workdir={workdir}', '--dense', '--scales=48')
  assert_one_line_error(result, 'vgg11 cannot test whole images densely at shorter side 48 (pool5')


def test_dense_testing_at_the_crop_size_is_single_crop_testing(ilsvrc_dir, vgg):
  """At Q equal to the crop size, a square image is its own centre crop, and fc6-as-a-convolution
  over pool5 is fc6: the same pixels and the same logits."""
  config, _ = vgg
  source = input_pipeline.create_source(config, process_index=0, process_count=1)
  dense = {int(b['index'][0]): b['image'][0] for b in source.eval_batches(1, 0,
                                                                        EvalView('dense', 32))}
  centre = {int(b['index'][0]): b['image'][0] for b in source.eval_batches(1, 0,
                                                                         EvalView('centre', 32))}
  records = tfds.builder('imagenet2012', data_dir=ilsvrc_dir).as_dataset(split='validation')
  square = [i for i, record in enumerate(records) if record['image'].shape[0] ==
            record['image'].shape[1]]  # The fixture's 256 x 256 and 500 x 500 images.
  assert len(square) == 2
  for i in square:
    np.testing.assert_array_equal(dense[i], centre[i])
  model = cnns.create_model('vgg11', num_classes=1000, image_size=32, rngs=nnx.Rngs(0))
  model.eval()
  x = steps.normalize(np.stack([dense[i] for i in square]), (120.0,) * 3, (60.0,) * 3,
                      np.float32)
  np.testing.assert_allclose(model.dense(x), model(x), rtol=1e-5, atol=1e-5)


def test_googlenets_144_crops_evaluate_the_averaged_weights(ilsvrc_dir, resnet):
  """GoogLeNet's protocol (144 crops: its 4 scales in proportion to the 32-pixel crops here) on
  the Polyak-averaged weights, every image once; --ema=false evaluates the raw weights. (That it is
  the GoogLeNet config's paper protocol: test_each_configs_protocol_string_says_what_evaluate_runs;
  evaluate.py's default of the paper's protocol: test_imagenet.py's ResNet-50.)"""
  _, workdir = resnet
  evaluate = lambda *more: run_cli('evaluate.py', *flags('resnet18', ilsvrc_dir, image_size=32,
                                                         eval_batch_size=4),
                                   f'--workdir={workdir}', *more)
  result = evaluate('--crops=144')
  assert result.returncode == 0, result.stderr
  assert ("13 validation images, GoogLeNet's 144 crops (3 squares x 6 crops x 4 scales, and "
          'mirrors), shorter sides 37, 41, 46, 50, 1 model, averaged weights') in result.stdout
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    averaged = json.load(f)
  assert averaged['protocol']['views'] == 144 and not averaged['protocol']['paper']
  assert averaged['ema'] and averaged['num_examples'] == NUM_IMAGES
  raw = evaluate('--crops=1', '--ema=false')
  assert raw.returncode == 0, raw.stderr
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    raw = json.load(f)
  assert not raw['ema'] and raw['protocol']['views'] == 1
  # Training's evaluation of the same centre crops scored the averaged weights.
  assert raw['loss'] != pytest.approx(read_metrics(workdir)[-1]['eval/loss'], rel=1e-6)


def test_resnet_multi_scale_counts_every_image_once_on_two_processes(ilsvrc_dir, resnet,
                                                                     tmp_path):
  """ResNet's fully-convolutional multi-scale testing (Table 4's, at small scales) on two
  processes, each evaluating its half on its own device: the numbers of the per-image reference.
  (One process's dense testing: the VGG test above.)"""
  config, workdir = resnet
  logs = run_job(2, (*flags('resnet18', ilsvrc_dir, image_size=32, eval_batch_size=4),
                     f'--workdir={workdir}', '--dense', '--scales=32,64'),
                 str(tmp_path), script='evaluate.py')
  assert 'dense, shorter sides 32, 64' in logs[0]
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    two = json.load(f)
  assert two['num_examples'] == NUM_IMAGES
  passes = [(EvalView('dense', s), False) for s in (32, 64)]
  assert_metrics_of(two, reference_probabilities(config, workdir, passes))


def test_ties_rank_the_lower_class_first_and_overflows_count_as_wrong():
  probabilities = np.array([[0.5, 0.5, 0, 0, 0, 0, 0], [0.1, 0.6, 0.3, 0, 0, 0, 0],
                            [0, 0, 0, 0, 0, 0, 1.0], [np.nan] * 7])
  log_probs = np.log(np.maximum(probabilities, np.finfo(np.float64).tiny))
  sums = metrics.classification_sums(log_probs, np.array([1, 1, 0, 0]), np.ones(4, bool))
  images, top1, top5, loss, nonfinite = (sums[k] for k in ('count', 'top1_acc', 'top5_acc',
                                                           'loss', 'nonfinite'))
  # Image 0 ties class 0, ranked before it: second. Image 2's ties with higher classes: second.
  assert (images, top1, top5, nonfinite) == (4, 1, 3, 1)
  assert loss == pytest.approx(-np.log(0.5) - np.log(0.6) - np.log(np.finfo(np.float64).tiny))


def test_impossible_protocols_are_refused_before_anything_is_read():
  config = importlib.import_module('configs.resnet18').get_config()
  for protocol, message in [
      (evaluation.Protocol(crops=3), '--crops=3: known crops per image are 1, 10, 50, 144'),
      (evaluation.Protocol(crops=50, flip=True), '--flip: 50 crops include their mirror'),
      (evaluation.Protocol(scales=(256, 256)), 'must be distinct positive shorter sides'),
      (evaluation.Protocol(scales=(256, 200)), 'shorter side 200 is smaller than the 224-pixel')]:
    with pytest.raises(ConfigError, match=message):
      evaluation.evaluate_checkpoints(config, ['/nonexistent'], protocol)


def imagenet_configs() -> list[str]:
  """Every config in configs/ that trains on ImageNet: a new one is checked without a list."""
  names = []
  for name in sorted(os.listdir(os.path.dirname(default.__file__))):
    module = importlib.import_module(f'configs.{name[:-3]}') if name.endswith('.py') else None
    if module and hasattr(module, 'get_config'):
      if module.get_config().dataset == 'imagenet2012':
        names.append(name[:-3])
  return names


@pytest.mark.parametrize('name', imagenet_configs())
def test_each_configs_protocol_string_says_what_evaluate_runs(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  protocol = evaluation.Protocol.of_paper(config)
  protocol.check()
  text = config.paper.protocol
  first = text.split(';')[0]  # The protocol of the numbers; alternatives follow a semicolon.
  if protocol.crops:
    assert f'{protocol.crops} crop' in first or f'{protocol.crops} patches' in first, text
  assert ('dense' in first) == protocol.dense, text
  assert ('mirror' in first and 'dense' in first) == (protocol.dense and protocol.flip), text
  for scale in protocol.scales:
    assert str(scale) in first, text
  if protocol.dense:  # The model has the fully-convolutional form the protocol needs.
    assert hasattr(cnns.trace(config.model, num_classes=10, in_channels=3, image_size=224)[0],
                   'dense')

"""Published weights: every covered Keras and torchvision model, imported, computes the source's
function; predict.py names the source's top-5; init_from fine-tunes from another run's layers.

The references are the sources' own models with random weights (and random BatchNorm statistics,
biases and scales, so that every mapped tensor matters), saved in their own formats: Keras
Applications in this process, torchvision in Debian's system Python (python3-torchvision; the
virtual environment has no PyTorch), in one child process (tests/system_python.py). Both sides see
the same photographs, each after its own preprocessing (Keras' `preprocess_input`, torchvision's
normalisation).
"""

import errno
import hashlib
import json
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import cnns
import input_pipeline
from cnns import published
from tests import ilsvrc_fixture, system_python
from tests.cli_runner import run_cli
from tests.conftest import assert_one_line_error, read_metrics, run_program
from training import steps
from training.state import split_model

pytestmark = pytest.mark.usefixtures('system_torchvision')

# Builds torchvision.models.<name> with random weights and statistics, saves its state dict, and
# its logits for images.npy after torchvision's own ImageNet normalisation.
TORCH_REFERENCE = r'''
import sys, numpy as np, torch, torchvision
from torchvision.transforms._presets import ImageClassification
name, directory, soft = sys.argv[1], sys.argv[2], sys.argv[3] == 'soft'
favoured = [int(i) for i in sys.argv[4].split(',') if i]
torch.manual_seed(0)
model = getattr(torchvision.models, name)(weights=None).eval()
with torch.no_grad():
  for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.running_mean.uniform_(-0.2, 0.2); m.running_var.uniform_(0.5, 1.5)
      m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
preset = ImageClassification(crop_size=224)
x = torch.from_numpy(np.load(f'{directory}/images.npy')).permute(0, 3, 1, 2).float() / 255
x = torchvision.transforms.functional.normalize(x, preset.mean, preset.std)
with torch.no_grad():
  if soft:  # Logits of standard deviation 2: probabilities that do not underflow to ties.
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    scale = 2 / model(x).std()
    classifier.weight.mul_(scale); classifier.bias.mul_(scale)
    classifier.bias[favoured] += 6  # Classes that then compete for the top ranks.
  np.save(f'{directory}/logits.npy', model(x).numpy())
torch.save(model.state_dict(), f'{directory}/{name}.pth')
'''


def photographs(size: int, count: int = 2) -> np.ndarray:
  rng = np.random.default_rng(size)
  return np.stack([ilsvrc_fixture.photo_like(rng, size, size) for _ in range(count)])


def torchvision_reference(name: str, directory, images: np.ndarray, soft: bool = False,
                          favoured=()) -> tuple[str, np.ndarray]:
  """(path of the saved .pth, the reference logits). `soft`: logits scaled to standard
  deviation 2, and the `favoured` classes' raised by 6 (3 standard deviations)."""
  np.save(directory / 'images.npy', images)
  system_python.run(TORCH_REFERENCE, name, str(directory), 'soft' if soft else 'raw',
                    ','.join(map(str, favoured)), cwd=directory)
  return str(directory / f'{name}.pth'), np.load(directory / 'logits.npy')


def keras_reference(name: str, module: str, directory, images: np.ndarray, *, legacy: bool,
                    classes: int = 1000) -> tuple[str, np.ndarray]:
  """Keras' model with random weights saved as the published files are (`legacy`: the Keras 2
  HDF5 layout of `*_weights_tf_dim_ordering_tf_kernels.h5`) or as Keras 3's `.weights.h5`."""
  input_pipeline.import_tensorflow_quietly()
  import h5py
  import keras
  from keras.src.legacy.saving import legacy_h5_format
  keras.utils.set_random_seed(0)
  model = getattr(keras.applications, name)(weights=None, classes=classes,
                                            input_shape=images.shape[1:],
                                            classifier_activation=None)
  rng = np.random.default_rng(0)
  for layer in model.layers:
    for w in layer.weights:
      if w.name in ('moving_mean', 'beta', 'bias'):
        w.assign(rng.uniform(-0.2, 0.2, w.shape).astype(np.float32))
      elif w.name in ('moving_variance', 'gamma'):
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
  if legacy:
    path = str(directory / f'{name}_weights_tf_dim_ordering_tf_kernels.h5')
    with h5py.File(path, 'w') as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, model)
  else:
    path = str(directory / f'{name}.weights.h5')
    model.save_weights(path)
  preprocess = getattr(keras.applications, module).preprocess_input
  logits = np.asarray(model(preprocess(images.astype(np.float32)), training=False))
  return path, logits


def imported_logits(path: str, model_name: str, images: np.ndarray, num_classes: int = 1000,
                    **model_kwargs):
  """This project's model with the file's weights, on the images after the source's input
  convention; and the weights."""
  chosen = published.variant(path, model_name)
  kwargs = {**chosen.model_kwargs, **model_kwargs}
  abstract, _ = cnns.trace(model_name, num_classes=num_classes, in_channels=3,
                           image_size=images.shape[1], **kwargs)
  params, batch_stats = published.load(path, chosen, abstract)
  model = nnx.merge(nnx.graphdef(abstract), params, batch_stats)
  model.eval()
  mean, std = input_pipeline.INPUT_CONVENTIONS[chosen.input_convention]
  return np.asarray(model(steps.normalize(images, mean, std, jnp.float32))), params


def assert_same_function(ours: np.ndarray, reference: np.ndarray) -> None:
  """Logits within 1e-4 of the largest reference logit, and the same top-5 classes."""
  assert np.isfinite(reference).all() and np.abs(reference).max() > 0
  error = np.abs(ours - reference).max() / np.abs(reference).max()
  assert error < 1e-4, f'relative logit error {error:.2e}'
  np.testing.assert_array_equal(np.argsort(-ours)[:, :5], np.argsort(-reference)[:, :5])


@pytest.mark.parametrize('name', ['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152',
                                  'vgg11', 'vgg13', 'vgg16', 'vgg19'])
def test_torchvision_models_compute_the_source_function(name, tmp_path):
  # ResNet's global average pool takes any size: 64 pixels, a twelfth of the work. VGG's fc6 is
  # sized for 224.
  images = photographs(224 if name.startswith('vgg') else 64)
  path, reference = torchvision_reference(name, tmp_path, images)
  assert_same_function(imported_logits(path, name, images)[0], reference)
  if name == 'resnet50':  # The padding option is what makes it exact: 'same' shifts the windows.
    shifted, _ = imported_logits(path, name, images, padding='same')
    assert np.abs(shifted - reference).max() / np.abs(reference).max() > 1e-3


@pytest.mark.parametrize('name, module, model, size, legacy, classes', [
    ('VGG16', 'vgg16', 'vgg16', 224, True, 1000),
    ('VGG19', 'vgg19', 'vgg19', 224, False, 1000),
    # ResNets at 64 pixels (their global average pool takes any size), Inception-ResNet-v2 at
    # Keras' smallest input: the weights do not depend on the size (the configs' 224 and 299).
    ('ResNet50', 'resnet', 'resnet50', 64, True, 1000),
    ('ResNet101', 'resnet', 'resnet101', 64, False, 10),  # A fine-tuned head, Keras 3's format.
    ('ResNet152', 'resnet', 'resnet152', 64, True, 1000),
    ('InceptionResNetV2', 'inception_resnet_v2', 'inception_resnet_v2', 75, True, 1000),
])
def test_keras_applications_compute_the_source_function(name, module, model, size, legacy,
                                                        classes, tmp_path):
  images = photographs(size)
  path, reference = keras_reference(name, module, tmp_path, images, legacy=legacy,
                                    classes=classes)
  assert_same_function(imported_logits(path, model, images, num_classes=classes)[0], reference)


def test_import_then_predict_gives_the_sources_top5(tmp_path):
  """import_weights.py writes a checkpoint; predict.py on a photograph names the torchvision
  model's own top-5 classes for the pixels predict.py prepared, with its probabilities."""
  image = tmp_path / 'photo.jpg'
  rng = np.random.default_rng(7)
  from PIL import Image
  Image.fromarray(ilsvrc_fixture.photo_like(rng, 300, 400)).save(image, quality=92)
  workdir = tmp_path / 'run'
  images = np.zeros((1, 224, 224, 3), np.uint8)
  # predict.py's own preparation of the photograph (Pillow decode, centre crop of 256).
  import ml_collections
  config = ml_collections.ConfigDict({'dataset': 'imagenet2012', 'image_size': 224,
                                      'eval_resize': -1, 'eval_antialias': False,
                                      'eval_crop': 'window'})
  images[0] = input_pipeline.prediction_image(config, input_pipeline.read_image(str(image), 3))
  path, reference = torchvision_reference('resnet50', tmp_path, images, soft=True)

  # import_weights.py's one start as a program (`python import_weights.py`; the tests run the
  # entry points in this process otherwise, tests/cli_runner.py).
  imported = run_program('import_weights.py', '--config=configs/resnet50.py', f'--weights={path}',
                         f'--workdir={workdir}')
  assert imported.returncode == 0, imported.stderr
  assert 'stride_on_3x3=True, padding=symmetric' in imported.stdout
  predicted = run_cli('predict.py', '--config=configs/resnet50.py', f'--workdir={workdir}',
                      '--json', str(image), str(tmp_path / 'resnet50.pth'))
  assert predicted.returncode == 1  # The .pth is not an image: one line, the photo predicted.
  assert f'error: {tmp_path / "resnet50.pth"}: ' in predicted.stderr
  assert 'Traceback' not in predicted.stderr
  [result] = json.loads(predicted.stdout)
  probabilities = np.exp(reference[0] - reference[0].max())
  probabilities /= probabilities.sum()
  top5 = np.argsort(-probabilities)[:5]
  assert result['image'] == str(image)
  assert [e['index'] for e in result['top5']] == top5.tolist()
  np.testing.assert_allclose([e['probability'] for e in result['top5']], probabilities[top5],
                             rtol=1e-4)
  from input_pipeline import imagenet
  names = imagenet.class_names()
  assert [e['name'] for e in result['top5']] == [names[i] for i in top5]
  assert names[0] == 'tench' and names[999] == 'toilet tissue'

  # Fine-tuning from the import must compute the same function: each option is asked for.
  fine_tune = ['--config=configs/resnet50.py', '--config.dataset=synthetic',
               '--config.image_size=32', f'--config.init_from={workdir}']
  for added, message in (([], 'add --config.input_convention=torch'),
                         (['--config.input_convention=torch'],
                          'add --config.model_kwargs.padding=symmetric')):
    result = run_cli('train.py', *fine_tune, *added, f'--workdir={tmp_path / "tuned"}')
    assert_one_line_error(result, message)
    assert not (tmp_path / 'tuned').exists()


def test_predict_reads_16_bit_and_odd_images_as_8_bit():
  from PIL import Image
  levels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16
  with tempfile.TemporaryDirectory() as folder:
    Image.fromarray(levels).save(os.path.join(folder, 'grey16.png'))
    Image.fromarray((levels // 257).astype(np.uint8)).convert('P').save(
        os.path.join(folder, 'palette.gif'))
    grey16 = input_pipeline.read_image(os.path.join(folder, 'grey16.png'), 3)
    palette = input_pipeline.read_image(os.path.join(folder, 'palette.gif'), 1)
  assert grey16.shape == (64, 64, 3) and grey16.dtype == np.uint8
  np.testing.assert_allclose(grey16[..., 0], levels / 257, atol=0.5)
  assert palette.shape == (64, 64, 1)
  np.testing.assert_allclose(palette[..., 0], levels // 257, atol=1)


def test_a_file_that_does_not_fit_is_one_line_and_writes_nothing(tmp_path):
  path, _ = torchvision_reference('resnet18', tmp_path, photographs(32, 1))
  for config, message in (
      ('configs/resnet50.py', 'layer1.0.conv1\'s kernel has shape (3, 3, 64, 64) where the '
                              'config\'s model has (1, 1, 64, 64)'),
      ('configs/resnet18.py --config.num_classes=10', 'fc\'s bias has shape (1000,) where the '
                                                      'config\'s model has (10,)'),
      ('configs/googlenet.py', 'torchvision weights are imported for resnet18'),
      ('configs/vgg11.py', 'has no tensor classifier.0.weight')):
    workdir = tmp_path / 'run'
    result = run_cli('import_weights.py', *f'--config={config}'.split(), f'--weights={path}',
                     f'--workdir={workdir}')
    assert_one_line_error(result, message)
    assert not workdir.exists()
  damaged = tmp_path / 'damaged.pth'
  damaged.write_bytes(open(path, 'rb').read()[:1000])
  result = run_cli('import_weights.py', '--config=configs/resnet18.py', f'--weights={damaged}',
                   f'--workdir={tmp_path / "run"}')
  assert_one_line_error(result, str(damaged))


def test_unknown_files_and_taken_workdirs_are_refused(tmp_path):
  weights = tmp_path / 'weights.npz'
  weights.write_bytes(b'')
  result = run_cli('import_weights.py', '--config=configs/resnet50.py', f'--weights={weights}',
                   f'--workdir={tmp_path / "run"}')
  assert_one_line_error(result, 'not a Keras (.h5, .weights.h5) or torchvision (.pth) file')
  result = run_cli('import_weights.py', '--config=configs/resnet50.py',
                   f'--weights={tmp_path / "missing.h5"}', f'--workdir={tmp_path / "run"}')
  assert_one_line_error(result, 'no such file')
  assert not (tmp_path / 'run').exists()


def test_a_failed_import_removes_what_it_wrote_and_keeps_what_was_there(tmp_path, monkeypatch):
  """A full disk once Orbax has begun the step (LeNet-5 as an ImageNet model, its weights zeros,
  for speed): one line, no temporary directory left, the workdir's earlier files untouched, a
  checkpoints directory the import made removed."""
  monkeypatch.setattr(published, 'variant', lambda path, model: published.Variant(
      'torchvision', model, {}, 'torch'))
  monkeypatch.setattr(published, 'load', lambda path, chosen, model, **_: jax.tree.map(
      lambda leaf: np.zeros(leaf.shape, np.float32), split_model(model)[1:]))

  async def full_disk(self, record, directory):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(ocp.JsonCheckpointHandler, '_save_fn', full_disk)
  weights = tmp_path / 'lenet5.pth'
  weights.write_bytes(b'')
  kept, new = tmp_path / 'kept', tmp_path / 'new'
  (kept / 'checkpoints' / '7.damaged-20250101-000000').mkdir(parents=True)
  (kept / 'notes.txt').write_text('mine')
  before = sorted(kept.rglob('*'))
  args = ['--config=configs/lenet5.py', '--config.dataset=imagenet2012',
          '--config.num_classes=10', '--config.in_channels=3', f'--weights={weights}']
  for workdir in kept, new:
    result = run_cli('import_weights.py', *args, f'--workdir={workdir}')
    assert_one_line_error(result, f'disk full while writing {workdir}: free space and rerun')
  assert sorted(kept.rglob('*')) == [*before, kept / 'train.lock']
  assert os.listdir(new) == ['train.lock']


def test_a_torchvision_file_names_hash_prefix_is_checked_unless_accepted(tmp_path):
  """As torch.hub: resnet18-<first hex digits of the SHA-256>.pth. Past the check, this file
  (text) is refused by the reader."""
  content = b'not weights\n'
  digest = hashlib.sha256(content).hexdigest()
  wrong, right = tmp_path / 'resnet18-00000000.pth', tmp_path / f'resnet18-{digest[:8]}.pth'
  for path in (wrong, right):
    path.write_bytes(content)
  import_args = ('--config=configs/resnet18.py', f'--workdir={tmp_path / "run"}')
  result = run_cli('import_weights.py', *import_args, f'--weights={wrong}')
  assert_one_line_error(result, f'{wrong}: its name says its SHA-256 starts with 00000000, it '
                                f'starts with {digest[:8]}')
  assert '--accept_hash_mismatch' in result.stderr
  for path, accept in ((wrong, ('--accept_hash_mismatch',)), (right, ())):
    result = run_cli('import_weights.py', *import_args, f'--weights={path}', *accept)
    assert_one_line_error(result, f'{path}: not a PyTorch checkpoint')
  assert not (tmp_path / 'run').exists()


def test_floor_padding_follows_caffe_and_refuses_what_cannot_fit():
  from cnns import layers
  x = jnp.arange(1 * 7 * 6 * 1, dtype=jnp.float32).reshape(1, 7, 6, 1) - 100  # All negative.
  pooled = layers.max_pool('pool', x, 3, 2, layers.Floor(1))
  assert pooled.shape == (1, 4, 3, 1)  # floor((7 + 2 - 3) / 2) + 1, floor((6 + 2 - 3) / 2) + 1
  # The first window covers rows -1..1 and columns -1..1: padding is -inf, never the maximum.
  assert float(pooled[0, 0, 0, 0]) == float(x[0, 1, 1, 0])
  # The last window of the columns covers 3..5: the padding column 6 is out of reach.
  assert float(pooled[0, 0, 2, 0]) == float(x[0, 1, 5, 0])
  with pytest.raises(cnns.GeometryError, match='does not fit'):
    layers.max_pool('pool', jnp.zeros((1, 1, 1, 1)), 5, 1, layers.Floor(1))


def test_init_from_copies_matching_layers_and_fine_tunes_a_new_head(tmp_path):
  """LeNet-5 trained on synthetic 5-class images starts a 10-class run: every layer but the
  classifier is copied, which the run says, and the loss falls."""
  common = ['--config=configs/lenet5.py', '--config.dataset=synthetic', '--config.batch_size=64',
            '--config.in_channels=1', '--config.num_epochs=1']
  source = tmp_path / 'source'
  result = run_cli('train.py', *common, '--config.num_classes=5',
                   '--config.synthetic_train_examples=256', f'--workdir={source}')
  assert result.returncode == 0, result.stderr
  tuned = tmp_path / 'tuned'
  args = [*common, '--config.num_classes=10', '--config.synthetic_train_examples=2048',
          '--config.synthetic_eval_examples=64', '--config.log_every_steps=8',
          f'--config.init_from={source}', f'--workdir={tuned}']
  result = run_cli('train.py', *args)
  assert result.returncode == 0, result.stderr
  assert (f'init_from {source} (step 4, lenet5): copied 4 of 5 layers, all but fc5'
          in result.stderr), result.stderr
  losses = [r['train/loss'] for r in read_metrics(str(tuned)) if 'train/loss' in r]
  assert losses[-1] < 0.8 * losses[0] < 2.5
  # The fine-tune's own checkpoints win on a rerun; init_from is not read again (even gone).
  shutil.rmtree(source)
  rerun = run_cli('train.py', *args)
  assert rerun.returncode == 0 and 'init_from' not in rerun.stderr, rerun.stderr


def test_init_from_refuses_other_pixels_before_touching_the_workdir(tmp_path):
  source = tmp_path / 'source'
  common = ['--config=configs/lenet5.py', '--config.dataset=synthetic', '--config.in_channels=3',
            '--config.num_epochs=1', '--config.batch_size=64',
            '--config.synthetic_train_examples=64', '--config.synthetic_eval_examples=64']
  result = run_cli('train.py', *common, '--config.input_convention=tf', f'--workdir={source}')
  assert result.returncode == 0, result.stderr
  result = run_cli('train.py', *common, f'--config.init_from={source}',
                   f'--workdir={tmp_path / "new"}')
  assert_one_line_error(result, 'add --config.input_convention=tf')
  assert not (tmp_path / 'new').exists()


def test_vgg_nets_share_the_paper_layer_names_of_net_a():
  """init_from matches layers by the paper's names: VGG's nets B-E find net A's layers."""
  from app import weights
  names = {}
  for model in ('vgg11', 'vgg16'):
    abstract, _ = cnns.trace(model, num_classes=1000, in_channels=3, image_size=224)
    names[model] = set(weights.layer_names(abstract).values())
  assert names['vgg11'] <= names['vgg16']
  assert {'conv1_1', 'conv2_1', 'conv3_1', 'conv3_2', 'fc6', 'fc7', 'fc8'} <= names['vgg11']

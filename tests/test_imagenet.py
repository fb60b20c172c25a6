"""The ImageNet path on a miniature ILSVRC2012 in the official tar layout (ilsvrc_fixture.py),
prepared by TFDS's own imagenet2012 builder: data, order, exact evaluation, train.py, evaluate.py."""

import glob
import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

import input_pipeline
from input_pipeline import EvalView
from configs import resnet50
from input_pipeline import imagenet, views
from tests import ilsvrc_fixture
from tests.cli_runner import run_cli
from tests.conftest import assert_one_line_error, assert_same_global_batches


@pytest.fixture
def data_dir(ilsvrc_dir):
  return ilsvrc_dir


def small_config(data_dir, **overrides):
  config = resnet50.get_config()
  config.data_dir = data_dir
  config.image_size, config.shuffle_buffer_size = 32, 100
  config.update(overrides)
  return config


def source(config, process_index=0, process_count=1):
  return input_pipeline.create_source(config, process_index=process_index,
                                      process_count=process_count)


def test_tfds_prepares_every_image_with_its_official_label(data_dir):
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  label = builder.info.features['label']
  train = list(builder.as_dataset(split='train').as_numpy_iterator())
  assert len(train) == sum(len(images) for images in ilsvrc_fixture.TRAIN.values())
  sizes = {name: (h, w) for images in ilsvrc_fixture.TRAIN.values() for name, h, w, _ in images}
  for example in train:
    name = example['file_name'].decode()
    assert label.int2str(example['label']) == name.split('_')[0]  # The synset of the file name.
    assert example['image'].shape == (*sizes[name], 3)  # Grayscale, CMYK and PNG became RGB.
  # TFDS's validation labels are the official ground truth, by file name order.
  truth = open(tfds.core.tfds_path('datasets/imagenet2012/validation_labels.txt')).read().split()
  val = list(builder.as_dataset(split='validation').as_numpy_iterator())
  assert sorted((e['file_name'].decode(), label.int2str(e['label'])) for e in val) == [
      (ilsvrc_fixture.val_name(i + 1), truth[i]) for i in range(len(ilsvrc_fixture.VAL))]


def test_png_and_cmyk_files_are_stored_as_rgb_jpegs(data_dir):
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  raw = builder.as_dataset(split='train', decoders={'image': tfds.decode.SkipDecoding()})
  stored = {e['file_name'].decode(): e['image'] for e in raw.as_numpy_iterator()}
  for name in (ilsvrc_fixture.PNG_FILE, ilsvrc_fixture.CMYK_FILE):
    image = Image.open(io.BytesIO(stored[name]))
    assert (image.format, image.mode) == ('JPEG', 'RGB')


def test_missing_tar_is_one_clear_error(tmp_path):
  manual = imagenet.manual_dir(str(tmp_path))
  os.makedirs(manual)
  open(os.path.join(manual, 'ILSVRC2012_img_val.tar'), 'wb').close()
  with pytest.raises(input_pipeline.DataError) as error:
    source(small_config(str(tmp_path)))
  message = str(error.value)
  assert f'ILSVRC2012_img_train.tar is missing from {manual}' in message
  assert f'python -m input_pipeline.imagenet --data_dir={tmp_path}' in message


def test_bad_tars_are_one_line_and_leave_nothing_a_rerun_with_good_ones_would_trust(tmp_path):
  """A text file, refused before TFDS starts; a validation tar cut short, which TFDS fails on
  after the training tar: TFDS removes what it prepared, and the good tars are prepared next."""
  manual = imagenet.manual_dir(str(tmp_path))
  ilsvrc_fixture.write_tars(manual)
  val = os.path.join(manual, 'ILSVRC2012_img_val.tar')
  with open(val, 'rb') as f:
    whole = f.read()
  for content, message in ((b'not a tar\n', f'{val} is not a tar archive'),
                           (whole[:len(whole) // 2], 'could not prepare imagenet2012 from the '
                                                     f'files in {manual} (OutOfRangeError')):
    with open(val, 'wb') as f:
      f.write(content)
    with pytest.raises(input_pipeline.DataError, match=re.escape(message)):
      imagenet.prepared_builder(str(tmp_path), process_count=1)
    assert not glob.glob(str(tmp_path / 'imagenet2012' / '*'))  # No 5.1.0, nor incomplete one.
  with open(val, 'wb') as f:
    f.write(whole)
  builder = imagenet.prepared_builder(str(tmp_path), process_count=1)
  assert builder.info.splits['validation'].num_examples == len(ilsvrc_fixture.VAL)


def test_train_py_without_the_tars_is_one_line_and_creates_nothing(tmp_path):
  workdir = tmp_path / 'resnet50'
  result = run_cli('train.py', '--config=configs/resnet50.py', f'--config.data_dir={tmp_path / "tfds"}',
                     f'--workdir={workdir}')
  assert_one_line_error(result, 'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar are missing')
  assert not workdir.exists()


def test_train_order_is_the_same_on_one_and_two_processes_and_resumable(data_dir):
  config = small_config(data_dir, data_shards=2, train_crop='scaled', train_scale_range=(32, 64),
                        pca_lighting=0.1)
  one = source(config)
  assert_same_global_batches(one, [source(config, i, 2) for i in range(2)], global_batch=4,
                             steps=3)
  epoch = list(one.train_batches(1, 0, 4, 3))
  resumed = list(source(config).train_batches(1, 1, 4, 3))
  assert len(resumed) == 2
  for full, again in zip(epoch[1:], resumed):  # Same images, same crops, same colour noise.
    for key in full:
      np.testing.assert_array_equal(full[key], again[key])
  assert not np.array_equal(epoch[0]['image'], next(one.train_batches(2, 0, 4, 3))['image'])


@pytest.mark.parametrize('kind', views.names())  # Every registered view (input_pipeline/views/).
def test_every_validation_image_is_counted_once_on_any_process_count(data_dir, kind):
  per_image = views.get(kind).per_image
  view = EvalView(kind, 64 if kind == views.DENSE else 40)
  shape = (None if kind == views.DENSE else (32, 32, 3) if per_image == 1
           else (per_image, 32, 32, 3))
  config = small_config(data_dir, batch_size=12)  # Training's batch: a multiple of 1, 2, 3 shards.
  num_images = len(ilsvrc_fixture.VAL)

  def records(process_count, global_batch):
    steps = input_pipeline.num_eval_steps(num_images, global_batch, process_count)
    found = []
    for p in range(process_count):
      indices = []
      for batch in source(config, p, process_count).eval_batches(
          global_batch // process_count, steps, view):
        if shape:
          assert batch['image'].shape[1:] == shape
        else:  # Whole images: shorter side 64, longer side a multiple of 32.
          assert min(batch['image'].shape[1:3]) == 64 and max(batch['image'].shape[1:3]) % 32 == 0
        found += [(label, image.tobytes()) for label, image, real in
                  zip(batch['label'], batch['image'], batch['mask']) if real]
        indices += list(batch['index'][batch['mask']])
      assert sorted(indices) == list(range(len(indices)))  # Each image of the slice, once.
    return sorted(found)

  one = records(1, 4)
  assert len(one) == num_images and len({image for _, image in one}) == num_images
  assert records(2, 4) == one and records(3, 6) == one


def test_resnet50_trains_and_evaluate_reports_ten_crops_beside_the_paper(data_dir, tmp_path):
  workdir = str(tmp_path / 'resnet50')
  overrides = ('--config=configs/resnet50.py', f'--config.data_dir={data_dir}',
               '--config.image_size=32', '--config.batch_size=4', '--config.num_epochs=1',
               '--config.shuffle_buffer_size=100', '--config.log_every_steps=1')
  result = run_cli('train.py', *overrides, f'--workdir={workdir}')
  assert result.returncode == 0, result.stderr
  assert 'on 13 examples' in result.stdout
  evaluate = run_cli('evaluate.py', *overrides, f'--workdir={workdir}')  # The paper's protocol.
  assert evaluate.returncode == 0, evaluate.stderr
  assert ("13 validation images, AlexNet's 10 crops (4 corners and centre, and mirrors), shorter "
          'side 37, 1 model (checkpoint step 3)') in evaluate.stdout
  assert '22.85%' in evaluate.stdout and '6.71%' in evaluate.stdout  # The paper's row.
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    results = json.load(f)
  assert (results['num_examples'], results['checkpoint_steps']) == (13, [3])
  assert results['protocol'] == {
      'description': "AlexNet's 10 crops (4 corners and centre, and mirrors), shorter side 37",
      'crops': 10, 'scales': [37], 'dense': False, 'flip': False, 'views': 10, 'paper': True}
  correct = results['top5_acc'] * 13
  assert abs(correct - round(correct)) < 1e-6  # A fraction of the 13 images.
  assert np.isclose(results['top1_error'], 100 * (1 - results['top1_acc']))


@pytest.mark.usefixtures('system_torchvision')
def test_evaluate_applies_an_imported_models_variant_and_input_convention(data_dir, tmp_path):
  """torchvision's ResNet-18 (random weights), imported: evaluate.py, given the plain ResNet-18
  config, takes v1.5, symmetric padding and torchvision's normalisation from the checkpoint and
  reports exactly the torchvision model's own top-1 and top-5 on the evaluation pixels. Imported
  with a running average of the weights (as configs/inception_resnet_v2.py keeps one), it starts
  at the imported weights: evaluate.py, which reads the average, computes the same function."""
  from tests.test_published import torchvision_reference
  config = small_config(data_dir, image_size=224, eval_antialias=True)
  batch = next(source(config).eval_batches(16, 1))
  real = batch['mask']
  labels = batch['label'][real]
  path, logits = torchvision_reference('resnet18', tmp_path, batch['image'][real], soft=True,
                                       favoured=sorted(set(labels)))
  ranked = np.argsort(-logits, axis=1)
  expected = [np.mean(ranked[:, 0] == labels), np.mean((ranked[:, :5] == labels[:, None]).any(1))]

  workdir = str(tmp_path / 'imported')
  flags = ('--config=configs/resnet18.py', f'--config.data_dir={data_dir}')
  result = run_cli('import_weights.py', *flags, '--config.ema_decay=0.9999', f'--weights={path}',
                   f'--workdir={workdir}')
  assert result.returncode == 0, result.stderr
  evaluate = run_cli('evaluate.py', *flags, '--config.eval_antialias=true', '--crops=1',
                     f'--workdir={workdir}')
  assert evaluate.returncode == 0, evaluate.stderr
  assert "note: using the checkpoint's input_convention=torch" in evaluate.stdout
  assert ', averaged weights' in evaluate.stdout
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    results = json.load(f)
  assert results['num_examples'] == 13
  assert [results['top1_acc'], results['top5_acc']] == pytest.approx(expected, abs=1e-6)
  assert 0 < expected[0] < 1  # Not vacuous: some images are right, some wrong.


def test_eval_crop_chooses_the_centre_views_pixels(data_dir):
  """eval_crop='torchvision' reaches the evaluation batches: each image's crop is
  `center_crop(..., crop='torchvision')` of its stored JPEG, other than the default window's."""
  from input_pipeline import preprocessing
  raw = tfds.builder('imagenet2012', data_dir=data_dir).as_dataset(
      split='validation', decoders={'image': tfds.decode.SkipDecoding()})
  shown = {}
  for crop in ('window', 'torchvision'):
    batch = next(source(small_config(data_dir, eval_crop=crop)).eval_batches(16, 1))
    shown[crop] = sorted(image.tobytes() for image in batch['image'][batch['mask']])
  expected = sorted(preprocessing.center_crop(example['image'], 32, 37, crop='torchvision')
                    .numpy().tobytes() for example in raw)
  assert shown['torchvision'] == expected and shown['window'] != expected


def test_decoding_only_the_crop_matches_decoding_the_whole_image(data_dir):
  """On the fixture's real (quality 90, subsampled) JPEGs: same pixels, up to libjpeg rounding."""
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  raw = builder.as_dataset(split='validation', decoders={'image': tfds.decode.SkipDecoding()})
  for example in raw.take(4).as_numpy_iterator():
    jpeg = tf.constant(example['image'])
    whole = tf.io.decode_jpeg(jpeg, channels=3).numpy().astype(int)
    h, w = whole.shape[:2]
    window = [h // 4, w // 3, h // 2, w // 2]
    crop = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3).numpy().astype(int)
    np.testing.assert_allclose(crop, whole[h // 4:h // 4 + h // 2, w // 3:w // 3 + w // 2],
                               atol=2)


def test_alexnet_recipe_trains_with_scaled_crops_and_colour_noise(data_dir, tmp_path):
  """AlexNet's pipeline end to end: scaled random crops, PCA colour noise added on the device."""
  from configs import alexnet
  from app import loop
  config = alexnet.get_config()
  config.update({'data_dir': data_dir, 'image_size': 67, 'train_scale_range': (67, 90),
                 'eval_resize': 76, 'batch_size': 4, 'num_epochs': 1, 'log_every_steps': 1,
                 'shuffle_buffer_size': 100})
  first = next(source(config).train_batches(0, 0, 4, 3))
  assert first['image'].shape == (4, 67, 67, 3) and first['lighting'].shape == (4, 3)
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary.steps == 3 and summary.last_eval['num_examples'] == 13
  assert np.isfinite(summary.last_eval['loss'])

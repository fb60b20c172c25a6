"""ImageNet preprocessing ops on small images: crop geometry, decoding only the window, flips,
the test crops' positions, AlexNet's colour-noise statistics, and the device-side normalisation."""

import json

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import preprocessing as pp
from input_pipeline.views import alexnet, dense, googlenet, vgg
from tests import system_python
from training import steps


def jpeg_and_pixels(height, width, seed=0):
  """A lossless-enough JPEG (quality 100, no chroma subsampling) and its own decoded pixels, so
  that crops can be compared exactly against slices of the full decode."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  image = np.stack([x % 256, y % 256, rng.integers(0, 256, (height, width))], -1).astype(np.uint8)
  jpeg = tf.io.encode_jpeg(image, quality=100, chroma_downsampling=False)
  return jpeg, tf.io.decode_jpeg(jpeg, channels=3).numpy()


def seeds(n):
  return [tf.constant([7, i], tf.int64) for i in range(n)]


def test_inception_window_respects_area_and_aspect_ranges():
  shape = tf.constant([375, 500, 3])
  windows = np.array([pp.inception_window(shape, s).numpy() for s in seeds(300)])
  y, x, h, w = windows.T
  assert (y >= 0).all() and (x >= 0).all() and (y + h <= 375).all() and (x + w <= 500).all()
  area = h * w / (375 * 500)
  # Integer rounding of the sides moves area and ratio slightly past the requested bounds.
  assert (area >= 0.08 - 0.01).all() and (area <= 1).all()
  assert ((w / h >= 3 / 4 - 0.02) & (w / h <= 4 / 3 + 0.02)).all()
  assert area.min() < 0.2 and area.max() > 0.8  # The whole range is used.
  assert len({tuple(w) for w in windows}) > 290  # Seeds give different crops ...
  np.testing.assert_array_equal(pp.inception_window(shape, seeds(1)[0]), windows[0])  # ... fixed.


# Sizes of the crop tests: ImageNet's common landscape and portrait ones, a small image, and two
# too elongated for most attempts (ratio 4 and 1/4.4), whose boxes often are the fallback.
CROP_TEST_SIZES = [(375, 500), (500, 333), (68, 121), (100, 400), (400, 90)]
CROP_TEST_DRAWS = 20_000
# Two-sample Kolmogorov-Smirnov distance that samples of CROP_TEST_DRAWS each from one
# distribution exceed with probability 0.1%: sqrt(-ln(0.0005) / 2) * sqrt(2 / n).
CROP_TEST_KS_BOUND = np.sqrt(-np.log(0.0005) / 2) * np.sqrt(2 / CROP_TEST_DRAWS)  # 0.0195.


@pytest.mark.usefixtures('system_torchvision')
def test_torchvision_window_draws_torchvisions_boxes(tmp_path):
  """`torchvision_window` against torchvision's own `RandomResizedCrop.get_params` (system
  Python): area, log ratio and centre agree in distribution; TensorFlow's sampler does not."""
  from benchmarks import crop_distributions as cd
  from benchmarks import references
  system_python.run(references.TORCHVISION_BOXES, json.dumps(CROP_TEST_SIZES),
                    str(CROP_TEST_DRAWS), '0', cwd=tmp_path)
  reference = np.load(tmp_path / 'boxes.npy')
  shapes = cd.cycled_shapes(CROP_TEST_SIZES, CROP_TEST_DRAWS)
  distances = cd.ks_distances(cd.project_boxes(pp.torchvision_window, shapes, seed=1), reference,
                              shapes)
  assert max(distances.values()) < CROP_TEST_KS_BOUND, distances
  tensorflows = cd.project_boxes(pp.inception_window, shapes, seed=1)
  assert cd.ks_distances(tensorflows, reference, shapes)['area'] > 0.05


def test_slim_window_draws_tf_slims_boxes():
  """`slim_window` against TF-slim's `distorted_bounding_box_crop` call (TensorFlow's stateful
  sampler with the whole image as the object's box); the 'inception' window's ranges differ."""
  from benchmarks import crop_distributions as cd
  from benchmarks import references
  shapes = cd.cycled_shapes(CROP_TEST_SIZES, CROP_TEST_DRAWS)
  reference = references.slim_boxes(shapes, seed=0)
  distances = cd.ks_distances(cd.project_boxes(pp.slim_window, shapes, seed=1), reference, shapes)
  assert max(distances.values()) < CROP_TEST_KS_BOUND, distances
  inception = cd.project_boxes(pp.inception_window, shapes, seed=1)
  assert cd.ks_distances(inception, reference, shapes)['area'] > 0.05


def test_scaled_crop_window_covers_the_crop_of_the_rescaled_image():
  shape = tf.constant([300, 400, 3])
  # S = 256: the 224 crop of the image rescaled to shorter side 256 is 224 * 300 / 256 = 262.5
  # original pixels: every window has side 262 (round half to even), anywhere in the image.
  fixed = np.array([pp.scaled_crop_window(shape, s, 224, (256, 256)).numpy() for s in seeds(400)])
  assert (fixed[:, 2:] == 262).all()
  assert fixed[:, 0].min() == 0 and fixed[:, 0].max() == 300 - 262
  assert fixed[:, 1].min() == 0 and fixed[:, 1].max() == 400 - 262
  # VGG's jitter S in [256, 512]: sides from 224 * 300 / 512 = 131 to 262.
  jitter = np.array([pp.scaled_crop_window(shape, s, 224, (256, 512)).numpy()
                     for s in seeds(400)])
  assert jitter[:, 2].min() < 140 and jitter[:, 2].max() > 255
  assert ((jitter[:, 2] >= 131) & (jitter[:, 2] <= 262)).all()
  assert (jitter[:, 0] + jitter[:, 2] <= 300).all() and (jitter[:, 1] + jitter[:, 3] <= 400).all()


def test_decode_window_decodes_exactly_that_window():
  jpeg, pixels = jpeg_and_pixels(48, 64)
  window = tf.constant([5, 9, 30, 40])
  cropped = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3).numpy()
  np.testing.assert_array_equal(cropped, pixels[5:35, 9:49])
  # Resizing to the window's own size changes nothing.
  np.testing.assert_array_equal(pp.resize(cropped, 30, 40).numpy(), cropped)
  assert pp.decode_window(jpeg, lambda shape: window, 16).shape == (16, 16, 3)
  # Other formats (an image folder's PNG files) are decoded whole, then cut: exactly the window.
  png = tf.io.encode_png(pixels)
  square = tf.constant([5, 9, 30, 30])
  np.testing.assert_array_equal(pp.decode_window(png, lambda shape: square, 30).numpy(),
                                pixels[5:35, 9:39])


def test_grayscale_jpeg_becomes_rgb():
  gray = tf.io.encode_jpeg(np.full((20, 30, 1), 77, np.uint8))
  example = pp.train_example(gray, seeds(1)[0], crop='inception', size=8,
                             area_range=(0.08, 1.0), scale_range=(8, 8), lighting=0.0)
  assert example['image'].shape == (8, 8, 3) and example['image'].dtype == tf.uint8
  assert np.abs(example['image'].numpy().astype(int) - 77).max() <= 1
  assert 'lighting' not in example


def test_random_flip_mirrors_half_of_the_images():
  image = tf.constant(np.arange(2 * 3 * 1).reshape(2, 3, 1), tf.uint8)
  flipped = [bool((pp.random_flip(image, s).numpy() != image.numpy()).any()) for s in seeds(400)]
  assert 160 < sum(flipped) < 240  # Binomial(400, 1/2): outside this range with p < 1e-4.
  mirrored = next(pp.random_flip(image, s) for s, f in zip(seeds(400), flipped) if f)
  np.testing.assert_array_equal(mirrored.numpy(), image.numpy()[:, ::-1])


def test_five_crops_are_the_corners_and_centre_of_the_central_square():
  # A 64 x 80 image: its central 64 x 64 square starts at column 8; resize_size 64 keeps it as is.
  jpeg, pixels = jpeg_and_pixels(64, 80)
  square = pixels[:, 8:72]
  crops = alexnet.five_crops(jpeg, 48, 64).numpy()
  assert crops.shape == (5, 48, 48, 3)
  expected = [square[:48, :48], square[:48, 16:], square[16:, :48], square[16:, 16:],
              square[8:56, 8:56]]
  for k, patch in enumerate(expected):
    np.testing.assert_array_equal(crops[k], patch)


@pytest.mark.parametrize('height,width', [(64, 112), (112, 64)])
def test_googlenet_crops_follow_the_paper_on_landscape_and_portrait_images(height, width):
  """Szegedy et al. (2015), section 7, at shorter side 64 (the image's own: no resize): the left,
  centre and right squares (top, centre, bottom for portrait images); of each, the 4 corners and
  the centre 48 x 48 crop and the square resized to 48 x 48."""
  jpeg, pixels = jpeg_and_pixels(height, width)
  crops = googlenet.googlenet_crops(jpeg, 48, 64).numpy()
  assert crops.shape == (18, 48, 48, 3)
  longer = max(height, width)
  for part, start in enumerate((0, (longer - 64) // 2, longer - 64)):
    square = pixels[start:start + 64] if height > width else pixels[:, start:start + 64]
    expected = [square[:48, :48], square[:48, 16:], square[16:, :48], square[16:, 16:],
                square[8:56, 8:56], pp.resize(square, 48, 48).numpy()]
    for k, patch in enumerate(expected):
      np.testing.assert_array_equal(crops[6 * part + k], patch)
  assert len({crop.tobytes() for crop in crops}) == 18


def test_googlenet_crops_rescale_the_shorter_side_first():
  jpeg, pixels = jpeg_and_pixels(60, 90)
  rescaled = pp.resize(pixels, 40, 60).numpy()  # Shorter side 40: 60 x 90 -> 40 x 60.
  crops = googlenet.googlenet_crops(jpeg, 32, 40).numpy()
  np.testing.assert_array_equal(crops[0], rescaled[:32, :32])  # Left square's top-left corner.
  np.testing.assert_array_equal(crops[17], pp.resize(rescaled[:, 20:], 32, 32).numpy())


def test_grid_crops_are_a_five_by_five_grid_over_the_whole_image():
  jpeg, pixels = jpeg_and_pixels(64, 96)
  crops = vgg.grid_crops(jpeg, 32, 64).numpy()
  assert crops.shape == (25, 32, 32, 3)
  for i in range(5):
    for j in range(5):
      y, x = 32 * i // 4, 64 * j // 4  # Corners included: from 0 to 64 - 32 and 96 - 32.
      np.testing.assert_array_equal(crops[5 * i + j], pixels[y:y + 32, x:x + 32])


@pytest.mark.parametrize('height,width,shorter,expected', [
    (64, 96, 64, (64, 96)), (96, 64, 64, (96, 64)), (64, 80, 64, (64, 64)),
    (64, 90, 64, (64, 96)), (375, 500, 224, (224, 288)), (100, 100, 256, (256, 256))])
def test_dense_images_keep_the_aspect_to_a_multiple_of_32_pixels(height, width, shorter,
                                                                  expected):
  jpeg, pixels = jpeg_and_pixels(height, width)
  image = dense.dense_image(jpeg, 0, shorter).numpy()
  assert image.shape == (*expected, 3)
  if (height, width) == expected:
    np.testing.assert_array_equal(image, pixels)  # At its own size, untouched.


def test_center_crop_is_the_centre_of_the_rescaled_image():
  jpeg, pixels = jpeg_and_pixels(60, 80)
  # 48 of a shorter side rescaled to 60 (the 0.8 ratio): the central 48 x 48 of the original.
  np.testing.assert_array_equal(pp.center_crop(jpeg, 48, 60).numpy(), pixels[6:54, 16:64])
  # Shorter side to 96, centre 48: the central 30 x 30 original pixels, resized to 48.
  expected = pp.resize(pixels[15:45, 25:55], 48, 48).numpy()
  np.testing.assert_array_equal(pp.center_crop(jpeg, 48, 96).numpy(), expected)


# (height, width, format) of the evaluation test's images: crops whose offsets round half to
# even (landscape and portrait), a reduction by more than 3, an enlargement, a square, greyscale.
TORCHVISION_CROP_IMAGES = [(64, 99, 'RGB'), (101, 64, 'RGB'), (200, 310, 'RGB'), (40, 50, 'RGB'),
                           (80, 80, 'L'), (90, 120, 'PNG')]


@pytest.mark.usefixtures('system_torchvision')
def test_torchvision_center_crop_is_torchvisions_pixels(tmp_path):
  """eval_crop='torchvision' against torchvision's Resize(64) + CenterCrop(48) of the files opened
  by PIL (system Python): subsampled and greyscale JPEGs and a PNG, of noise (which tells filters
  apart), from their bytes and from predict.py's decoded pixels. Equal to Debian's Pillow 9.4
  (TensorFlow's antialiased filter is up to 1 off; a Pillow that passes over the rows first, as
  13 does, also); the window crop is far off."""
  import input_pipeline
  from benchmarks import references
  from PIL import Image
  rng = np.random.default_rng(0)
  paths = []
  for height, width, kind in TORCHVISION_CROP_IMAGES:
    path = tmp_path / f'{height}x{width}.{"png" if kind == "PNG" else "jpg"}'
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    image.convert('L' if kind == 'L' else 'RGB').save(path, quality=90)
    paths.append(str(path))
  system_python.run(references.TORCHVISION_CROPS, '48', '64', *paths, cwd=tmp_path)
  for path, expected in zip(paths, np.load(tmp_path / 'crops.npy').astype(int)):
    encoded = tf.io.read_file(path)
    np.testing.assert_array_equal(pp.center_crop(encoded, 48, 64, crop='torchvision'), expected)
    decoded = pp.center_crop_image(input_pipeline.read_image(path, 3), 48, 64, crop='torchvision')
    np.testing.assert_array_equal(decoded, expected)
    window = pp.center_crop(encoded, 48, 64, antialias=True).numpy()
    assert np.abs(window - expected).max() > 1, path


def test_pca_lighting_has_alexnets_covariance():
  offsets = np.array([pp.pca_lighting(s, 0.1).numpy() for s in seeds(4000)], np.float64)
  vectors = np.array(pp.PCA_EIGENVECTORS)
  expected = 255.0 ** 2 * vectors @ np.diag((0.1 * np.array(pp.PCA_EIGENVALUES)) ** 2) @ vectors.T
  np.testing.assert_allclose(np.cov(offsets.T), expected, atol=0.05 * expected[0, 0])
  np.testing.assert_allclose(offsets.mean(0), 0, atol=0.2)
  # Nearly all of the variance lies along the first eigenvector (the brightness direction).
  along_first = offsets @ vectors[:, 0]
  assert along_first.var() / (offsets ** 2).sum(1).mean() > 0.98


def test_lighting_offset_is_added_before_normalisation():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 3, 3, 3), dtype=np.uint8)
  lighting = rng.normal(0, 5, (2, 3)).astype(np.float32)
  mean, std = (120.0, 110.0, 100.0), (60.0, 55.0, 50.0)
  expected = (images.astype(np.float64) + lighting[:, None, None, :] - mean) / std
  got = steps.normalize(images, mean, std, np.float32, lighting)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def random_image(height=12, width=10, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize('name', ['Brightness', 'Contrast', 'Color'])
@pytest.mark.parametrize('factor', [0.5, 0.8, 1.3, 1.5])
def test_howards_enhancements_are_pils(name, factor):
  from PIL import Image, ImageEnhance
  image = random_image()
  pil = np.asarray(getattr(ImageEnhance, name)(Image.fromarray(image)).enhance(factor), int)
  enhance = {'Brightness': pp.enhance_brightness, 'Contrast': pp.enhance_contrast,
             'Color': pp.enhance_color}[name]
  ours = pp.to_uint8(enhance(tf.constant(image, tf.float32), factor)).numpy().astype(int)
  # PIL rounds its luma, and truncates where this rounds: at most one grey level apart.
  assert np.abs(ours - pil).max() <= 1


def test_howard_distortion_draws_factors_in_its_range():
  # On a grey image contrast and colour change nothing: only the brightness factor shows.
  grey = tf.fill([4, 4, 3], tf.constant(100, tf.uint8))
  out = np.array([pp.howard_distortion(grey, s).numpy() for s in seeds(200)], float)
  assert (out == out[:, :1, :1, :1]).all()  # Still one grey level per image.
  factors = out[:, 0, 0, 0] / 100
  assert factors.min() >= 0.5 and factors.max() <= 1.5
  assert factors.min() < 0.6 and factors.max() > 1.4  # The whole range is used.
  # On a colour image, colour factors < 1 and > 1 both occur: saturation goes down and up.
  image = tf.constant(random_image())
  spread = [np.ptp(pp.howard_distortion(image, s).numpy().astype(int), axis=-1).mean()
            / np.ptp(random_image().astype(int), axis=-1).mean() for s in seeds(50)]
  assert min(spread) < 0.8 and max(spread) > 1.2


def test_inception_distortion_stays_within_its_deltas():
  # On a grey image saturation, hue and contrast change nothing: brightness moves it by at most
  # 32 grey levels.
  grey = tf.fill([4, 4, 3], tf.constant(128, tf.uint8))
  out = np.array([pp.inception_distortion(grey, s).numpy() for s in seeds(200)], int)
  assert np.abs(out - out[:, :1, :1, :1]).max() <= 1
  assert out.min() >= 128 - 32 and out.max() <= 128 + 32
  assert out.min() < 128 - 25 and out.max() > 128 + 25
  # Any image stays uint8 of the same shape, its values clipped to 0-255.
  image = tf.constant(random_image())
  distorted = pp.inception_distortion(image, seeds(1)[0])
  assert distorted.dtype == tf.uint8 and distorted.shape == image.shape


@pytest.mark.parametrize('distortion', ['howard', 'inception'])
def test_color_distortions_are_functions_of_the_seed(distortion):
  distort = pp.COLOR_DISTORTIONS[distortion]
  image = tf.constant(random_image())
  first, second = seeds(2)
  np.testing.assert_array_equal(distort(image, first), distort(image, first))
  assert (distort(image, first).numpy() != distort(image, second).numpy()).any()


def test_random_resize_chooses_each_of_the_four_methods():
  image = random_image(9, 7)
  by_method = {method: pp.resize(image, 4, 5, method=method).numpy().tobytes()
               for method in pp.RESIZE_METHODS}
  assert len(set(by_method.values())) == 4  # This image tells the methods apart.
  chosen = [pp.random_resize(image, 4, 5, s).numpy().tobytes() for s in seeds(200)]
  counts = {method: chosen.count(result) for method, result in by_method.items()}
  assert sum(counts.values()) == 200
  assert all(25 < count < 75 for count in counts.values())  # Binomial(200, 1/4): p < 1e-4.
  assert pp.random_resize(image, 4, 5, seeds(1)[0]).numpy().tobytes() == chosen[0]  # Fixed.


@pytest.mark.parametrize('crop', ['inception', 'slim', 'torchvision', 'scaled'])
def test_default_training_example_is_the_plain_crop_flip_and_lighting(crop):
  """Bilinear without colour distortion is exactly the path of earlier runs: the same seeds for
  the same crops, flips and colour noise."""
  jpeg, _ = jpeg_and_pixels(48, 64)
  augment = dict(crop=crop, size=24, area_range=(0.08, 1.0), scale_range=(24, 40), lighting=0.1)
  for seed in seeds(5):
    crop_seed, flip_seed, lighting_seed = pp.split_seed(seed, 3)
    window_of = {
        'inception': lambda shape: pp.inception_window(shape, crop_seed),
        'slim': lambda shape: pp.slim_window(shape, crop_seed),
        'torchvision': lambda shape: pp.torchvision_window(shape, crop_seed),
        'scaled': lambda shape: pp.scaled_crop_window(shape, crop_seed, 24, (24, 40))}[crop]
    plain = pp.random_flip(pp.decode_window(jpeg, window_of, 24), flip_seed)
    for example in (pp.train_example(jpeg, seed, **augment),
                    pp.train_example(jpeg, seed, **augment, interpolation='bilinear',
                                     color_distortion='none')):
      np.testing.assert_array_equal(example['image'], plain)
      np.testing.assert_array_equal(example['lighting'], pp.pca_lighting(lighting_seed, 0.1))
    distorted = pp.train_example(jpeg, seed, **augment, interpolation='random',
                                 color_distortion='howard')
    assert distorted['image'].shape == plain.shape and distorted['image'].dtype == tf.uint8
    np.testing.assert_array_equal(distorted['lighting'], pp.pca_lighting(lighting_seed, 0.1))


@pytest.mark.parametrize('bad', [dict(train_crop='center'), dict(train_scale_range=(200, 256)),
                                 dict(crop_area_range=(0.5, 0.1)), dict(eval_resize=100),
                                 dict(train_interpolation='lanczos3'),
                                 dict(color_distortion='autoaugment'), dict(eval_crop='pil')])
def test_impossible_preprocessing_is_a_clear_error(bad):
  from configs import vgg16
  from input_pipeline import DataError, photographs
  config = vgg16.get_config()
  config.update(bad)
  with pytest.raises(DataError, match=next(iter(bad))):  # Before looking for the data.
    photographs.Photographs(config)


def test_train_step_adds_the_lighting_offset_to_the_pixels():
  """An offset sent as `lighting` trains exactly as the same offset baked into the pixels."""
  import optax
  from flax import nnx

  import cnns
  from training.state import create_train_state
  model = cnns.create_model('lenet5', num_classes=10, in_channels=3, rngs=nnx.Rngs(0))
  tx = optax.sgd(0.1)
  graphdef, state = create_train_state(model, tx)
  step = steps.make_train_step(graphdef, tx, mean=(120.0,) * 3, std=(60.0,) * 3,
                               dtype=np.float32, num_classes=10, label_smoothing=0.0, seed=0,
                               out_sharding=None)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 200, (8, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 8).astype(np.int32)
  offset = np.array([[30, 5, 12]] * 8, np.float32)
  zero = steps.zero_train_metrics()
  run = lambda batch: step(state, dict(zero), batch)[1]['loss']
  sent = run({'image': images, 'label': labels, 'lighting': offset})
  baked = run({'image': (images + offset[:, None, None, :]).astype(np.uint8), 'label': labels})
  np.testing.assert_allclose(sent, baked, rtol=1e-6)
  assert abs(sent - run({'image': images, 'label': labels})) > 1e-3

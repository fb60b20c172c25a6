"""ImageNet preprocessing ops on small images: crop geometry, decoding only the window, flips,
10-crop positions, AlexNet's colour-noise statistics, and the device-side normalisation."""

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import preprocessing as pp
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


def test_ten_crops_are_corners_centre_and_their_mirrors():
  # A 64 x 80 image: its central 64 x 64 square starts at column 8; resize_size 64 keeps it as is.
  jpeg, pixels = jpeg_and_pixels(64, 80)
  square = pixels[:, 8:72]
  crops = pp.ten_crops(jpeg, 48, 64).numpy()
  assert crops.shape == (10, 48, 48, 3)
  expected = [square[:48, :48], square[:48, 16:], square[16:, :48], square[16:, 16:],
              square[8:56, 8:56]]
  for k, patch in enumerate(expected):
    np.testing.assert_array_equal(crops[k], patch)
    np.testing.assert_array_equal(crops[k + 5], patch[:, ::-1])


def test_center_crop_is_the_centre_of_the_rescaled_image():
  jpeg, pixels = jpeg_and_pixels(60, 80)
  # 48 of a shorter side rescaled to 60 (the 0.8 ratio): the central 48 x 48 of the original.
  np.testing.assert_array_equal(pp.center_crop(jpeg, 48, 60).numpy(), pixels[6:54, 16:64])
  # Shorter side to 96, centre 48: the central 30 x 30 original pixels, resized to 48.
  expected = pp.resize(pixels[15:45, 25:55], 48, 48).numpy()
  np.testing.assert_array_equal(pp.center_crop(jpeg, 48, 96).numpy(), expected)


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


@pytest.mark.parametrize('bad', [dict(train_crop='center'), dict(train_scale_range=(200, 256)),
                                 dict(crop_area_range=(0.5, 0.1)), dict(eval_resize=100)])
def test_impossible_preprocessing_is_a_clear_error(bad):
  from configs import vgg16
  from input_pipeline import DataError, imagenet
  config = vgg16.get_config()
  config.update(bad)
  with pytest.raises(DataError, match=next(iter(bad))):  # Before looking for the data.
    imagenet.Photographs(config, eval_crops=1)


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
  zero = steps.zero_metrics(*steps.TRAIN_METRICS)
  run = lambda batch: step(state, dict(zero), batch)[1]['loss']
  sent = run({'image': images, 'label': labels, 'lighting': offset})
  baked = run({'image': (images + offset[:, None, None, :]).astype(np.uint8), 'label': labels})
  np.testing.assert_allclose(sent, baked, rtol=1e-6)
  assert abs(sent - run({'image': images, 'label': labels})) > 1e-3

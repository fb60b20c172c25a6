r"""Evaluation pixels: this project's centre crops against torchvision's, photograph by photograph.

  python -m benchmarks.eval_pixels [--images=DIR] [--size=224] [--resize=256]

The reference is torchvision's classification evaluation, `Resize(resize) + CenterCrop(size)` of
each image opened by PIL and converted to RGB (as its ImageFolder loader does), run by Debian's
system Python (the virtual environment has no PyTorch). This project's side is
`preprocessing.center_crop` on the same files' bytes, in tf.data: the default 'window' crop
(TensorFlow's fast DCT, the centre window resized without and with antialiasing) and the
'torchvision' crop (`eval_crop='torchvision'`), plus TensorFlow's own antialiased resize of the
whole image decoded as PIL does, cut at torchvision's offsets, to show what the filter alone
leaves. Prints, per mode, the mean absolute difference over every pixel, the median and largest
per-image maximum, how many images are within 1 grey level everywhere (target for 'torchvision':
all), and images per second on this machine relative to the default.
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from benchmarks import references
from input_pipeline import preprocessing

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string('images', os.path.join(ROOT, '..', 'shared', 'data', 'imagenet-sample'),
                    'Directory of JPEG photographs.')
flags.DEFINE_integer('size', 224, 'Side of the centre crop.')
flags.DEFINE_integer('resize', 256, 'Shorter side the image is resized to first.')


def tensorflow_filter_crop(encoded: tf.Tensor, size: int, resize: int) -> tf.Tensor:
  """The image decoded as PIL does, resized whole as torchvision's Resize by TensorFlow's
  antialiased bilinear filter, cut at torchvision's offsets: all but Pillow's filter."""
  image = preprocessing.decode_as_pil(encoded)
  out_height, out_width, top, left = preprocessing.torchvision_center_geometry(
      tf.shape(image)[0], tf.shape(image)[1], size, resize)
  resized = preprocessing.resize(image, out_height, out_width, antialias=True)
  return resized[top:top + size, left:left + size]


def crops(paths: list[str], prepare) -> tuple[np.ndarray, float]:
  """(`prepare(encoded)` of each file, in order; seconds taken) in tf.data."""
  files = tf.data.Dataset.from_tensor_slices(paths).map(tf.io.read_file)
  files = files.cache()
  for _ in files:  # The bytes in memory: only the preparation is timed.
    pass
  start = time.perf_counter()
  prepared = files.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  out = np.stack(list(prepared.as_numpy_iterator()))
  return out, time.perf_counter() - start


def main(argv):
  del argv
  size, resize = FLAGS.size, FLAGS.resize
  paths = sorted(os.path.join(FLAGS.images, name) for name in os.listdir(FLAGS.images)
                 if name.lower().endswith(('.jpeg', '.jpg')))
  if not paths:
    raise app.UsageError(f'no JPEG files in {FLAGS.images}: pass --images=DIR')
  reference = references.run_system_python(references.TORCHVISION_CROPS, str(size), str(resize),
                                           *paths, output='crops.npy').astype(np.int16)
  modes = {
      "'window' (default)": lambda e: preprocessing.center_crop(e, size, resize),
      "'window', eval_antialias": lambda e: preprocessing.center_crop(e, size, resize, True),
      "TensorFlow's filter, whole": lambda e: tensorflow_filter_crop(e, size, resize),
      "'torchvision'": lambda e: preprocessing.center_crop(e, size, resize, crop='torchvision')}
  print(f'{len(paths)} photographs in {FLAGS.images}: centre {size} of shorter side {resize}, '
        "against torchvision's Resize + CenterCrop (PIL)")
  print(f'{"mode":<28}{"mean |diff|":>12}{"median max":>12}{"worst max":>11}'
        f'{"within 1":>10}{"images/s":>10}{"ratio":>7}')
  baseline = None
  for mode, prepare in modes.items():
    ours, seconds = crops(paths, prepare)
    difference = np.abs(ours.astype(np.int16) - reference)
    per_image = difference.reshape(len(paths), -1).max(axis=1)
    speed = len(paths) / seconds
    baseline = baseline or speed
    print(f'{mode:<28}{difference.mean():>12.3f}{np.median(per_image):>12.0f}'
          f'{per_image.max():>11}{(per_image <= 1).sum():>6}/{len(paths):<4}{speed:>9.0f}'
          f'{speed / baseline:>7.2f}')


if __name__ == '__main__':
  app.run(main)

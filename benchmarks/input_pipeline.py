r"""ImageNet training preprocessing throughput: this project's tf.data pipeline vs a PIL baseline.

  python -m benchmarks.input_pipeline [--images=DIR] [--num_images=2048] [--repeats=3]

Both sides do the same work on the same JPEG bytes, held in memory, on the same CPU cores, in one
run: decode, Inception random-resized crop (8-100% of the area, aspect 3/4-4/3), resize to
224x224, random flip, and stack batches of 128 uint8 images. The baseline is what one writes
first: PIL in a pool of one worker process per core, each turning a batch of files into an array
(as a PyTorch DataLoader worker does). This project's side is `preprocessing.train_example` in
tf.data, which decodes only the crop window and resizes bilinearly without antialiasing (as the
TF-slim and TPU pipelines that trained Inception and ResNet); two more rows change one of these
choices (decode the whole image, then crop; PIL's antialiasing filter) to show what each is
worth. Each side runs once to warm up, then `--repeats` times, alternating; the best of each
counts. Prints images per second per core and the ratio to the baseline (target >= 1.5).

Images: the JPEGs in --images (ImageNet's own, ideally), else photographs of ImageNet's typical
size: scikit-image's sample photographs, cropped at random and resized to 500x375 (or 375x500),
saved at quality 90.
"""

import functools
import io
import math
import multiprocessing
import os
import random
import time

import numpy as np
import tensorflow as tf
from absl import app, flags
from PIL import Image

from input_pipeline import preprocessing, sharded

FLAGS = flags.FLAGS
flags.DEFINE_string('images', None, 'Directory of JPEG files; default: generated photographs.')
flags.DEFINE_integer('num_images', 2048, 'Images per timed pass (files are cycled).')
flags.DEFINE_integer('repeats', 3, 'Timed passes per side (the best counts).')
SIZE, BATCH = 224, 128


def photographs(count: int = 256, seed: int = 0) -> list[bytes]:
  """`count` quality-90 JPEGs of 500x375 (a quarter portrait) cut from real photographs."""
  from skimage import data  # Only here: --images needs no scikit-image.
  rng = np.random.default_rng(seed)
  arrays = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.retina(),
            data.hubble_deep_field(), data.immunohistochemistry(), *data.stereo_motorcycle()[:2]]
  sources = [Image.fromarray(a).convert('RGB') for a in arrays]
  files = []
  for k in range(count):
    photo = sources[k % len(sources)]
    width, height = (375, 500) if k % 4 == 3 else (500, 375)
    scale = rng.uniform(0.6, 1.0) * min(photo.width / width, photo.height / height)
    box_w, box_h = width * scale, height * scale
    left = rng.uniform(0, photo.width - box_w)
    top = rng.uniform(0, photo.height - box_h)
    image = photo.resize((width, height), Image.BILINEAR, box=(left, top, left + box_w,
                                                               top + box_h))
    out = io.BytesIO()
    image.save(out, 'JPEG', quality=90)
    files.append(out.getvalue())
  return files


def read_images(directory: str) -> list[bytes]:
  names = sorted(n for n in os.listdir(directory) if n.lower().endswith(('.jpg', '.jpeg')))
  if not names:
    raise app.UsageError(f'no .jpg or .jpeg files in {directory}')
  files = []
  for name in names:
    with open(os.path.join(directory, name), 'rb') as f:
      files.append(f.read())
  return files


# --- The PIL baseline (one worker process per core; files inherited by fork). ---
_FILES: list[bytes] = []


def _pil_inception_crop(image: Image.Image, rng: random.Random) -> Image.Image:
  """torchvision's RandomResizedCrop.get_params: 10 tries, then the whole image."""
  area = image.width * image.height
  for _ in range(10):
    target = area * rng.uniform(0.08, 1.0)
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
    if 0 < w <= image.width and 0 < h <= image.height:
      x, y = rng.randint(0, image.width - w), rng.randint(0, image.height - h)
      return image.crop((x, y, x + w, y + h))
  return image


def _pil_batch(indices: list[int]) -> np.ndarray:
  rng = random.Random(indices[0])
  out = np.empty((len(indices), SIZE, SIZE, 3), np.uint8)
  for row, index in enumerate(indices):
    image = Image.open(io.BytesIO(_FILES[index % len(_FILES)])).convert('RGB')
    image = _pil_inception_crop(image, rng).resize((SIZE, SIZE), Image.BILINEAR)
    if rng.random() < 0.5:
      image = image.transpose(Image.FLIP_LEFT_RIGHT)
    out[row] = np.asarray(image)
  return out


def pil_pass(pool, num_images: int) -> int:
  chunks = [list(range(i, min(i + BATCH, num_images))) for i in range(0, num_images, BATCH)]
  return sum(len(batch) for batch in pool.imap(_pil_batch, chunks))


# --- This project's tf.data pipeline. ---
def variant(jpeg: tf.Tensor, seed: tf.Tensor, *, crop_only: bool, antialias: bool) -> tf.Tensor:
  """The same work with one choice changed: decoding every pixel first (what
  `decode_and_crop_jpeg` avoids), or resizing with PIL's antialiasing filter."""
  crop_seed, flip_seed = preprocessing.split_seed(seed, 2)
  window = preprocessing.inception_window(tf.image.extract_jpeg_shape(jpeg), crop_seed)
  if crop_only:
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
  else:
    y, x, h, w = tf.unstack(window)
    image = tf.io.decode_jpeg(jpeg, channels=3)[y:y + h, x:x + w]
  image = preprocessing.resize(image, SIZE, SIZE, antialias=antialias)
  return preprocessing.random_flip(image, flip_seed)


def this_project(jpeg: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  return preprocessing.train_example(jpeg, seed, crop='inception', size=SIZE,
                                     area_range=(0.08, 1.0), scale_range=(256, 256),
                                     lighting=0.0)['image']


def tf_dataset(files: list[bytes], num_images: int, example) -> tf.data.Dataset:
  ds = tf.data.Dataset.from_tensor_slices(files).repeat().take(num_images).enumerate()
  ds = sharded.parallel_map(
      ds, lambda index, jpeg: example(jpeg, tf.stack([tf.constant(0, tf.int64), index])))
  return ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def tf_pass(files: list[bytes], num_images: int, example) -> int:
  return sum(len(batch) for batch in tf_dataset(files, num_images, example).as_numpy_iterator())


def images_per_second(run) -> float:
  start = time.perf_counter()
  count = run()
  return count / (time.perf_counter() - start)


def main(argv):
  del argv
  tf.config.set_visible_devices([], 'GPU')
  files = read_images(FLAGS.images) if FLAGS.images else photographs()
  cores = len(os.sched_getaffinity(0))
  sizes = [Image.open(io.BytesIO(f)).size for f in files[:64]]
  print(f'{len(files)} JPEGs (mean {np.mean([len(f) for f in files]) / 1024:.0f} KiB, e.g. '
        f'{sizes[0][0]}x{sizes[0][1]}), {FLAGS.num_images} images per pass, {cores} cores')
  global _FILES
  _FILES = files
  n = FLAGS.num_images
  baseline = 'PIL, process per core (baseline)'
  sides = {
      baseline: None,
      'tf.data, decode whole then crop': functools.partial(
          tf_pass, files, n, functools.partial(variant, crop_only=False, antialias=False)),
      'tf.data, crop only, antialiased resize': functools.partial(
          tf_pass, files, n, functools.partial(variant, crop_only=True, antialias=True)),
      'tf.data, crop only (this project)': functools.partial(tf_pass, files, n, this_project),
  }
  with multiprocessing.get_context('fork').Pool(cores) as pool:
    sides[baseline] = functools.partial(pil_pass, pool, n)
    for run in sides.values():  # Warm-up: pool start, tf.data graph building.
      run()
    rates = {name: [] for name in sides}
    for _ in range(FLAGS.repeats):  # Alternating, so drifts in machine load hit every side.
      for name, run in sides.items():
        rates[name].append(images_per_second(run))
  print(f'\n{"pipeline":42}{"images/s":>10}{"per core":>10}{"vs PIL":>8}')
  for name, values in rates.items():
    best = max(values)
    print(f'{name:42}{best:10.0f}{best / cores:10.1f}{best / max(rates[baseline]):7.2f}x')


if __name__ == '__main__':
  app.run(main)

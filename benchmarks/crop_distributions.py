r"""Training-crop boxes: this project's windows against the reference implementations' own draws.

  python -m benchmarks.crop_distributions [--images=DIR] [--draws=100000] [--seed=0]

Draws `--draws` boxes from each of this project's Inception-style crop windows
(input_pipeline/preprocessing.py: 'inception', 'slim', 'torchvision') and from the references
behind the published recipes, on the sizes of the photographs in --images (draw k on the k-th
image, cycling): torchvision's `RandomResizedCrop.get_params` (its classification recipe's crop,
references/classification/presets.py), run by Debian's system Python (the virtual environment has
no PyTorch), and TF-slim's `distorted_bounding_box_crop` (research/slim/preprocessing/
inception_preprocessing.py: TensorFlow's stateful sampler with slim's arguments). Prints, for each
(mode, reference) pair, the two-sample Kolmogorov-Smirnov distance of the boxes' area fraction,
log aspect ratio and relative centre; at 100,000 draws a side, equal distributions stay under
0.0087 with probability 99.9%. Target: at most 0.01 for the mode that follows the reference.
"""

import json
import os

import numpy as np
import tensorflow as tf
from absl import app, flags
from PIL import Image
from scipy import stats

from benchmarks import references
from input_pipeline import preprocessing

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string('images', os.path.join(ROOT, '..', 'shared', 'data', 'imagenet-sample'),
                    'Directory of photographs whose sizes the boxes are drawn on.')
flags.DEFINE_integer('draws', 100_000, 'Boxes per side of each comparison.')
flags.DEFINE_integer('seed', 0, 'Seed of both sides.')
STATISTICS = ('area', 'log ratio', 'centre x', 'centre y')


def image_sizes(folder: str) -> list[tuple[int, int]]:
  """(height, width) of each image in `folder`, in name order, from the files' headers."""
  sizes = []
  for name in sorted(os.listdir(folder)):
    try:
      with Image.open(os.path.join(folder, name)) as image:
        sizes.append((image.height, image.width))
    except OSError:
      continue  # Not an image (a README).
  return sizes


def cycled_shapes(sizes, draws: int) -> np.ndarray:
  """[draws, 3] image shapes: draw k on size k modulo their number."""
  return np.array([(*sizes[k % len(sizes)], 3) for k in range(draws)], np.int32)


def project_boxes(window, shapes: np.ndarray, seed: int) -> np.ndarray:
  """Boxes of `window(shape, seed)` (preprocessing's signature), one in an image of each of
  `shapes` [N, 3], box k with the stateless seed (seed, k) as the input pipeline seeds an
  example's crop; in tf.data."""
  boxes = tf.data.Dataset.from_tensor_slices(shapes).enumerate().map(
      lambda k, shape: window(shape, tf.stack([tf.constant(seed, tf.int64), k])),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return np.concatenate(list(boxes.batch(8192).as_numpy_iterator()))


def torchvision_boxes(sizes, draws: int, seed: int) -> np.ndarray:
  """torchvision's `RandomResizedCrop.get_params` boxes, drawn by the system Python."""
  return references.run_system_python(references.TORCHVISION_BOXES, json.dumps(sizes),
                                      str(draws), str(seed), output='boxes.npy')


def box_statistics(boxes: np.ndarray, shapes: np.ndarray) -> dict[str, np.ndarray]:
  """Each box's area fraction, log aspect ratio (width / height) and centre (fractions of the
  image's width and height), `STATISTICS`; box k lies in an image of shapes[k]."""
  y, x, h, w = np.asarray(boxes, np.float64).T
  height, width = shapes[:, :2].T.astype(np.float64)
  return dict(zip(STATISTICS, (h * w / (height * width), np.log(w / h), (x + w / 2) / width,
                               (y + h / 2) / height)))


def ks_distances(boxes, reference, shapes) -> dict[str, float]:
  """Two-sample Kolmogorov-Smirnov distance of each of `STATISTICS` between two sets of boxes,
  box k of each in an image of shapes[k]."""
  ours, theirs = box_statistics(boxes, shapes), box_statistics(reference, shapes)
  return {name: stats.ks_2samp(ours[name], theirs[name]).statistic for name in STATISTICS}


def main(argv):
  del argv
  sizes = image_sizes(FLAGS.images)
  if not sizes:
    raise app.UsageError(f'no images in {FLAGS.images}: pass --images=DIR')
  n, seed = FLAGS.draws, FLAGS.seed
  shapes = cycled_shapes(sizes, n)
  drawn_by = {'torchvision': torchvision_boxes(sizes, n, seed),
              'TF-slim': references.slim_boxes(shapes, seed)}
  modes = {'inception': preprocessing.inception_window, 'slim': preprocessing.slim_window,
           'torchvision': preprocessing.torchvision_window}
  drawn = {mode: project_boxes(window, shapes, seed + 1) for mode, window in modes.items()}
  print(f'{n:,} boxes a side on the sizes of {len(sizes)} images in {FLAGS.images}; '
        f'two-sample KS distance (target <= 0.01 for the mode that follows the reference)')
  print(f'{"mode":<12} {"reference":<12}' + ''.join(f'{name:>10}' for name in STATISTICS)
        + f'{"largest":>10}')
  for mode, reference in (('inception', 'torchvision'), ('torchvision', 'torchvision'),
                          ('inception', 'TF-slim'), ('slim', 'TF-slim')):
    distances = ks_distances(drawn[mode], drawn_by[reference], shapes)
    print(f'{mode:<12} {reference:<12}' + ''.join(f'{d:>10.4f}' for d in distances.values())
          + f'{max(distances.values()):>10.4f}')


if __name__ == '__main__':
  app.run(main)

"""Your own images: `--config.dataset=image_folder --config.data_dir=ROOT`, TFDS's ImageFolder layout.

  ROOT/train/<class>/<image>    the training split; classes are the folder names, sorted
  ROOT/val/<class>/<image>      the evaluation split (or ROOT/validation/, ROOT/test/), same classes

Trained and evaluated exactly as ImageNet is (`imagenet.Photographs`: the config's training crops,
flips and colour noise; one or ten evaluation crops; preprocessing.py), in the sharded, resumable
order of every source (`tfds_source.ShardedSource`), with file names (not bytes) shuffled whole.
JPEG, PNG, GIF and BMP files; grayscale and CMYK images become RGB.

Before the first run reads it, every image is decoded once with Pillow, so that a damaged file is
one error naming it rather than a crash hours later, and the per-channel mean and standard
deviation of the training images are computed (unless `dataset_mean` and `dataset_std` are set).
The result is cached in ~/.cache/cnns/image_folder/ under a hash of every file's name, size and
modification time, so adding, removing or changing an image checks the folder again.
"""

import hashlib
import json
import os
import sys

import numpy as np
import tensorflow as tf

from input_pipeline import base, imagenet
from input_pipeline.tfds_source import parallel_map

SUFFIXES = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')
EVAL_SPLITS = ('val', 'validation', 'test')


def _folders(path: str) -> list[str]:
  return sorted(n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n))
                and not n.startswith('.'))


def scan(root: str) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
  """(class names, {'train' and the eval split: [(path, label)] in name order}), or one DataError
  naming what is wrong with the layout."""
  layout = 'ROOT/train/<class>/<image> and ROOT/val/<class>/<image>'
  if not os.path.isdir(root):
    raise base.DataError(f'data_dir={root} is not a directory of images ({layout})')
  splits = _folders(root)
  if 'train' not in splits:
    raise base.DataError(f'{root} has no train/ folder ({layout})')
  evaluation = next((s for s in EVAL_SPLITS if s in splits), None)
  if evaluation is None:
    raise base.DataError(f'{root} has no evaluation folder ({", ".join(EVAL_SPLITS)}; {layout})')
  classes = _folders(os.path.join(root, 'train'))
  if not classes:
    raise base.DataError(f'{os.path.join(root, "train")} has no class folders ({layout})')
  files = {}
  for split in ('train', evaluation):
    found = _folders(os.path.join(root, split))
    if found != classes:
      differ = sorted(set(found) ^ set(classes))
      raise base.DataError(f'{os.path.join(root, split)} has other classes than train/: '
                           f'{", ".join(differ[:5])} in only one of them')
    files[split] = []
    for label, name in enumerate(classes):
      folder = os.path.join(root, split, name)
      images = sorted(f for f in os.listdir(folder) if f.lower().endswith(SUFFIXES))
      if not images:
        raise base.DataError(f'{folder} holds no images ({", ".join(SUFFIXES)})')
      files[split] += [(os.path.join(folder, f), label) for f in images]
  return classes, files


def _cache_path(files: dict) -> str:
  digest = hashlib.sha256()
  for split in sorted(files):
    for path, label in files[split]:
      stat = os.stat(path)
      digest.update(f'{split}\0{path}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())
  cache = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
                       'cnns', 'image_folder')
  return os.path.join(cache, f'{digest.hexdigest()[:32]}.json')


def checked_statistics(files: dict) -> tuple[list[float], list[float]]:
  """Per-channel mean and standard deviation of the training images (0-255 RGB), after decoding
  every image of every split once; cached (see the module's docstring)."""
  path = _cache_path(files)
  if os.path.isfile(path):
    with open(path, encoding='utf-8') as f:
      cached = json.load(f)
    return cached['mean'], cached['std']
  total = sum(len(v) for v in files.values())
  print(f'checking the {total:,} images once (cached in {os.path.dirname(path)})', flush=True)
  sums, squares, count = np.zeros(3), np.zeros(3), 0
  from PIL import Image  # pylint: disable=import-outside-toplevel
  for split, examples in files.items():
    for image_path, _ in examples:
      try:
        with Image.open(image_path) as image:
          image.draft('RGB', (256, 256))  # JPEG: decode at a reduced scale; statistics hold.
          pixels = np.asarray(image.convert('RGB'), np.float64).reshape(-1, 3)
      except Exception as e:  # pylint: disable=broad-except  (Pillow raises many types)
        raise base.DataError(f'{image_path} is not a readable image ({type(e).__name__}: {e}); '
                             'repair or remove it') from e
      if split == 'train':
        sums += pixels.sum(0)
        squares += np.square(pixels).sum(0)
        count += len(pixels)
  mean = sums / count
  std = np.sqrt(np.maximum(squares / count - np.square(mean), 0)) + 1e-3
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f'{path}.{os.getpid()}', 'w', encoding='utf-8') as f:
      json.dump({'mean': mean.tolist(), 'std': std.tolist()}, f)
    os.replace(f'{path}.{os.getpid()}', path)
  except OSError as e:
    print(f'note: cannot cache the check in {path} ({e.strerror}); it runs again next time',
          file=sys.stderr)
  return mean.tolist(), std.tolist()


@base.register('image_folder')
class ImageFolderSource(imagenet.PhotographSource):

  @classmethod
  def from_config(cls, name, config, *, eval_crops, seed, process_index, process_count,
                  num_shards):
    del name
    photographs = imagenet.Photographs(config, eval_crops)
    if not config.data_dir:
      raise base.DataError('dataset=image_folder needs --config.data_dir=ROOT, the folder of '
                           'train/ and val/')
    given = (tuple(config.dataset_mean), tuple(config.dataset_std))
    if any(given) and not all(len(v) == 3 for v in given):
      raise base.DataError(f'dataset_mean={given[0]} and dataset_std={given[1]} must both be '
                           'three numbers (RGB, 0-255), or both () to compute them')
    root = os.path.expanduser(config.data_dir)
    classes, files = scan(root)
    if 0 < config.num_classes != len(classes):
      raise base.DataError(f'num_classes={config.num_classes} but {root} has {len(classes)} '
                           'classes: set --config.num_classes=-1')
    mean, std = checked_statistics(files)
    if any(given):
      mean, std = given
    train, evaluation = files.pop('train'), next(iter(files.values()))
    spec = base.DatasetSpec(len(classes), (0, 0, 3), 'train', 'eval', tuple(mean), tuple(std))
    return cls(spec, classes, train, evaluation, photographs, seed=seed,
               process_index=process_index, process_count=process_count, num_shards=num_shards)

  def __init__(self, spec: base.DatasetSpec, classes: list[str], train: list, evaluation: list,
               photographs: imagenet.Photographs, *, seed: int, process_index: int,
               process_count: int, num_shards: int):
    slices = {s: base.process_slice(len(train), s, num_shards)
              for s in base.process_shards(num_shards, process_index, process_count)}
    super().__init__(spec, image_shape=photographs.image_shape, seed=seed,
                     num_train_examples=len(train), num_eval_examples=len(evaluation),
                     train_parts={s: train[part] for s, part in slices.items()},
                     eval_part=evaluation[base.process_slice(len(evaluation), process_index,
                                                             process_count)])
    self.class_names = classes
    self._photographs = photographs

  def _records(self, part, shuffle_seed):
    ds = tf.data.Dataset.from_tensor_slices((tf.constant([p for p, _ in part], tf.string),
                                             np.array([l for _, l in part], np.int32)))
    if shuffle_seed is not None:
      ds = ds.shuffle(max(len(part), 1), seed=shuffle_seed, reshuffle_each_iteration=False)
    return parallel_map(ds, lambda path, label: {'image': tf.io.read_file(path), 'label': label})

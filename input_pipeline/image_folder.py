"""Your own images: `--config.dataset=image_folder --config.data_dir=ROOT`, TFDS ImageFolder layout.

  ROOT/train/<class>/<image>    the training split; classes are the folder names, sorted
  ROOT/val/<class>/<image>      the evaluation split (or ROOT/validation/, ROOT/test/), same classes

Trained and evaluated exactly as ImageNet is (photographs.py: the config's training crops, flips
and colour noise; one or ten evaluation crops; preprocessing.py), in the sharded, resumable order
of every source (`sharded.ShardedSource`), with file names (not bytes) shuffled whole.
JPEG, PNG, GIF and BMP files; grayscale and CMYK images become RGB.

Before the first run reads it, every image is decoded once, in parallel and by the decoder that
training uses, so that a file it cannot read is one error naming it rather than a crash hours
later, and the per-channel mean and standard deviation of the training images are computed
(unless `dataset_mean` and `dataset_std` are set). The result is cached in
~/.cache/cnns/image_folder/ under a hash of every file's name, size and modification time, so
adding, removing or changing an image checks the folder again; the same hash is saved with each
checkpoint, and a resume on a changed folder is refused (the order would change).
"""

import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf

from input_pipeline import base, photographs, preprocessing, sharded
from input_pipeline.sharded import parallel_map

SUFFIXES = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')
EVAL_SPLITS = ('val', 'validation', 'test')


def _folders(path: str) -> list[str]:
  return sorted(n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n))
                and not n.startswith('.'))


def scan(root: str) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
  """(class names, {'train' and the eval split: [(path, label)] in name order}), or one DataError
  naming what is wrong with the layout. Hidden files (macOS's ._ copies) are not images."""
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
      images = sorted(f for f in os.listdir(folder)
                      if f.lower().endswith(SUFFIXES) and not f.startswith('.'))
      if not images:
        raise base.DataError(f'{folder} holds no images ({", ".join(SUFFIXES)})')
      files[split] += [(os.path.join(folder, f), label) for f in images]
  return classes, files


def fingerprint(files: dict) -> str:
  """A digest of every file's split, path, label, size and modification time: what the order and
  the statistics are a function of."""
  digest = hashlib.sha256()
  for split in sorted(files):
    for path, label in files[split]:
      stat = os.stat(path)
      digest.update(b'\0'.join([split.encode(), os.fsencode(path), str(label).encode(),
                                 str(stat.st_size).encode(), str(stat.st_mtime_ns).encode()]))
  return digest.hexdigest()[:32]


def _measure(paths: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
  """(per-channel sum, sum of squares, pixel count) over `paths`, each decoded as the pipeline
  decodes it (TensorFlow, RGB), in parallel; DataError naming the first file that does not
  decode."""
  def stats(path):
    pixels = tf.reshape(tf.cast(preprocessing.decode(tf.io.read_file(path)), tf.float64), [-1, 3])
    return (tf.reduce_sum(pixels, 0), tf.reduce_sum(tf.square(pixels), 0),
            tf.shape(pixels, out_type=tf.int64)[0])

  sums, squares, count = np.zeros(3), np.zeros(3), 0
  names = tf.constant([os.fsencode(p) for p in paths] or [b''], tf.string)[:len(paths)]
  try:
    for s, q, n in parallel_map(tf.data.Dataset.from_tensor_slices(names), stats):
      sums, squares, count = sums + s.numpy(), squares + q.numpy(), count + int(n)
  except tf.errors.OpError:
    for path in paths:  # Which one: one by one, in order.
      try:
        stats(tf.constant(os.fsencode(path)))
      except tf.errors.OpError as e:
        raise base.DataError(f'{path} is not a readable image ({" ".join(e.message.split())}); '
                             'repair or remove it') from e
    raise
  return sums, squares, count


def checked_statistics(files: dict, digest: str, announce: bool) -> tuple[list[float], list[float]]:
  """Per-channel mean and standard deviation of the training images (0-255 RGB), after decoding
  every image of every split once; cached (see the module's docstring)."""
  cache = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
                       'cnns', 'image_folder')
  path = os.path.join(cache, f'{digest}.json')
  try:
    with open(path, encoding='utf-8') as f:
      cached = json.load(f)
    return cached['mean'], cached['std']
  except (OSError, ValueError, KeyError):
    pass  # Not checked yet, or a damaged cache entry: check again.
  if announce:
    print(f'checking the {sum(len(v) for v in files.values()):,} images once (cached in '
          f'{cache})', flush=True)
  sums, squares, count = _measure([p for p, _ in files['train']])
  for split in files.keys() - {'train'}:
    _measure([p for p, _ in files[split]])
  mean = sums / count
  # At least 1 (of 255): a channel that never changes must not amplify noise a thousandfold.
  std = np.maximum(np.sqrt(np.maximum(squares / count - np.square(mean), 0)), 1.0)
  try:
    os.makedirs(cache, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache, suffix='.json')
    try:
      with os.fdopen(handle, 'w', encoding='utf-8') as f:
        json.dump({'mean': mean.tolist(), 'std': std.tolist()}, f)
      os.replace(temporary, path)
    except OSError:
      os.unlink(temporary)
      raise
  except OSError as e:
    print(f'note: cannot cache the check in {cache} ({e.strerror}); it runs again next time',
          file=sys.stderr)
  return mean.tolist(), std.tolist()


class Files:
  """An image folder's records (`sharded.Records`): this process's parts of the file lists, each
  part a list of (path, label), shuffled whole as names (not bytes) and read as encoded bytes."""

  def __init__(self, train: list, evaluation: list, *, process_index: int, process_count: int,
               num_shards: int):
    self.parts = sharded.Parts(
        num_train_examples=len(train), num_eval_examples=len(evaluation),
        train={s: train[base.process_slice(len(train), s, num_shards)]
               for s in base.process_shards(num_shards, process_index, process_count)},
        eval=evaluation[base.process_slice(len(evaluation), process_index, process_count)])

  def read(self, part, shuffle_seed):
    ds = tf.data.Dataset.from_tensor_slices((
        tf.constant([os.fsencode(p) for p, _ in part] or [b''], tf.string)[:len(part)],
        np.array([l for _, l in part], np.int32)))
    if shuffle_seed is not None:
      ds = ds.shuffle(max(len(part), 1), seed=shuffle_seed, reshuffle_each_iteration=False)
    return parallel_map(ds, lambda path, label: {'image': tf.io.read_file(path), 'label': label})


@base.register('image_folder')
class ImageFolderSource(sharded.ShardedSource):
  """`Files` of the folder, turned into examples by `Photographs`."""
  EVAL_VIEWS = photographs.EVAL_VIEWS
  PHOTOGRAPHS = True

  @classmethod
  def from_config(cls, name, config, *, seed, process_index, process_count, num_shards):
    del name
    examples = photographs.Photographs(config)
    if not config.data_dir:
      raise base.DataError('dataset=image_folder needs --config.data_dir=ROOT, the folder of '
                           'train/ and val/')
    given = (tuple(config.dataset_mean), tuple(config.dataset_std))
    if any(given) and not all(len(v) == 3 for v in given):
      raise base.DataError(f'dataset_mean={given[0]} and dataset_std={given[1]} must both be '
                           'three numbers (RGB, 0-255), or both () to compute them')
    if any(given) and min(given[1]) <= 0:
      raise base.DataError(f'dataset_std={given[1]} must be positive')
    if config.in_channels not in (-1, 3):
      raise base.DataError(f'in_channels={config.in_channels}: image folders are read as RGB; '
                           'set --config.in_channels=3')
    root = os.path.expanduser(config.data_dir)
    classes, files = scan(root)
    if 0 < config.num_classes != len(classes):
      raise base.DataError(f'num_classes={config.num_classes} but {root} has {len(classes)} '
                           'classes: set --config.num_classes=-1')
    digest = fingerprint(files)
    mean, std = checked_statistics(files, digest, announce=process_index == 0)
    if any(given):
      mean, std = given
    splits = list(files)
    spec = base.DatasetSpec(len(classes), (0, 0, 3), splits[0], splits[1], tuple(mean),
                            tuple(std))
    records = Files(files[splits[0]], files[splits[1]], process_index=process_index,
                    process_count=process_count, num_shards=num_shards)
    return cls(spec, classes, records, examples, seed=seed, fingerprint=digest)

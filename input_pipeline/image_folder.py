"""Your own images: `--config.dataset=image_folder --config.data_dir=ROOT`, TFDS ImageFolder layout.

  ROOT/train/<class>/<image>    the training split; classes are the folder names, sorted
  ROOT/val/<class>/<image>      the evaluation split (or ROOT/validation/, ROOT/test/), same classes

Trained and evaluated exactly as ImageNet is (photographs.py: the config's training crops, flips
and colour noise; one or ten evaluation crops; preprocessing.py), in the sharded, resumable order
of every source (`sharded.ShardedSource`), with file names (not bytes) shuffled whole.
JPEG, PNG, GIF and BMP files; grayscale and CMYK images become RGB.

A folder is identified by its files' paths below ROOT, sizes and contents (folder_identity.py), not
by where it is or when its files were written: moved, staged to another disk, touched or copied back
byte for byte, it is the same folder. The fingerprint is saved with each checkpoint, and a resume
on other files is refused, saying which files were added, removed or changed (the order and the
statistics would change), unless `accept_changed_data` is set.

Before the first run reads a folder, every image is decoded once, in parallel and by the decoder
that training uses, so that a file it cannot read is one error naming it rather than a crash hours
later, and the per-channel mean and standard deviation of the training images are computed
(unless `dataset_mean` and `dataset_std` are set). A file that cannot be read later, during a run
(deleted, or overwritten), is named too (`Folder.naming_unreadable`). What is known of folders is
cached in ~/.cache/cnns/image_folder/ (`folder_identity.Cache`).
"""

import dataclasses
import os
import re
import sys
import time

import numpy as np
import tensorflow as tf

from input_pipeline import base, photographs, preprocessing, sharded
from input_pipeline import folder_identity as identity
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


def _paths(paths: list[str]) -> tf.Tensor:
  """`paths` as a string tensor, of shape [0] when there are none."""
  return tf.constant([os.fsencode(p) for p in paths] or [b''], tf.string)[:len(paths)]


def _reason(error: tf.errors.OpError) -> str:
  """TensorFlow's reason for `error`, without the names of its functions and ops."""
  return ' '.join(re.sub(r'\{\{.*?\}\}|\[\[.*?\]\]|\[Op:.*|Error in user-defined function .*?'
                         r'Iterator::\S+: ', '', error.message, flags=re.DOTALL).split())


def unreadable(paths: list[str]) -> list[tuple[str, str]]:
  """(path, TensorFlow's reason) of each of `paths` that does not read or decode as training
  decodes it: all decoded in parallel, the failures (which tf.data drops) once more alone."""
  decoded = parallel_map(tf.data.Dataset.from_tensor_slices(_paths(paths)),
                         lambda path: (path, tf.shape(preprocessing.decode(tf.io.read_file(path)))))
  readable = {path for path, _ in decoded.ignore_errors().as_numpy_iterator()}
  failed = []
  for path in paths:
    if os.fsencode(path) not in readable:
      try:
        preprocessing.decode(tf.io.read_file(path))
      except tf.errors.OpError as e:
        failed.append((path, _reason(e)))
  return failed


def _measure(paths: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
  """(per-channel sum, sum of squares, pixel count) over `paths`, each decoded as the pipeline
  decodes it (TensorFlow, RGB), in parallel; DataError naming the first file that does not
  decode."""
  def stats(path):
    pixels = tf.reshape(tf.cast(preprocessing.decode(tf.io.read_file(path)), tf.float64), [-1, 3])
    return (tf.reduce_sum(pixels, 0), tf.reduce_sum(tf.square(pixels), 0),
            tf.shape(pixels, out_type=tf.int64)[0])

  sums, squares, count = np.zeros(3), np.zeros(3), 0
  try:
    for s, q, n in parallel_map(tf.data.Dataset.from_tensor_slices(_paths(paths)), stats):
      sums, squares, count = sums + s.numpy(), squares + q.numpy(), count + int(n)
  except tf.errors.OpError as error:
    failed = unreadable(paths)
    if not failed:
      raise
    path, reason = failed[0]
    raise base.DataError(f'{path} is not a readable image ({reason}); repair or remove '
                         'it') from error
  return sums, squares, count


def checked_statistics(files: dict, digest: str, cache: identity.Cache,
                       announce: bool) -> tuple[list[float], list[float]]:
  """Per-channel mean and standard deviation of the training images (0-255 RGB), after decoding
  every image of every split once; cached by the folder's fingerprint `digest`."""
  cached = cache.read(f'{digest}.json')
  if isinstance(cached, dict) and {'mean', 'std'} <= cached.keys():
    return cached['mean'], cached['std']
  if announce:
    print(f'checking the {sum(len(v) for v in files.values()):,} images once (cached in '
          f'{cache.path})', flush=True)
  sums, squares, count = _measure([p for p, _ in files['train']])
  for split in files.keys() - {'train'}:
    _measure([p for p, _ in files[split]])
  mean = sums / count
  # At least 1 (of 255): a channel that never changes must not amplify noise a thousandfold.
  std = np.maximum(np.sqrt(np.maximum(squares / count - np.square(mean), 0)), 1.0)
  cache.write(f'{digest}.json', {'mean': mean.tolist(), 'std': std.tolist()})
  return mean.tolist(), std.tolist()


def _changed_since(path: str, time_ns: int) -> bool:
  """Whether `path` is gone, or its inode changed (contents, times, name) at `time_ns` or later."""
  try:
    return os.stat(path).st_ctime_ns >= time_ns
  except OSError:
    return True


@dataclasses.dataclass(frozen=True)
class Folder:
  """An image folder as a run found it: `files` ({split: [(path, label)]}) under `root`, their
  `fingerprint`, and the time (`listed_ns`) before they were listed."""
  root: str
  files: dict
  cache: identity.Cache
  fingerprint: str
  listed_ns: int

  def changes_since(self, recorded: str | None) -> str | None:
    """What differs between the files a checkpoint recorded (its fingerprint; None before there
    were any) and these, in a few words; None where nothing does. A fingerprint of the old kind
    (absolute paths and times) is compared as it was made: equal, or refused as moved, touched
    or changed, which it cannot tell apart."""
    if recorded is None or recorded == self.fingerprint:
      return None
    if not recorded.startswith(identity.FINGERPRINT_PREFIX):
      if recorded == identity.legacy_fingerprint(self.files):
        return None
      return ('the checkpoint identified the folder by its absolute path and its files\' times, '
              'which differ now (moved, touched or changed: it cannot tell which)')
    before = identity.manifest(self.cache, recorded)
    now = identity.manifest(self.cache, self.fingerprint)
    if before is None or now is None:
      return (f'the files differ; which ones is known where {self.cache.path} holds the '
              'checkpoint\'s list (the machine that trained it, unless its cache was cleared)')
    return identity.differences(before, now)

  def naming_unreadable(self, batches, files: list[tuple[str, int]]):
    """`batches` of `files` ([(path, label)]), with TensorFlow's error on a file that can no
    longer be read (deleted, or overwritten by something that does not decode: an error that
    names no file) turned into one DataError naming it and what to do. Only after a failure are
    the files changed since they were listed decoded again (all of them where none of those
    fails), in parallel."""
    try:
      yield from batches
    except tf.errors.OpError as error:
      paths = [path for path, _ in files]
      failed = unreadable([p for p in paths if _changed_since(p, self.listed_ns)])
      if not failed:
        print(f'note: {_reason(error)}; decoding the {len(paths):,} images again to find which',
              file=sys.stderr, flush=True)
        failed = unreadable(paths)
      if not failed:
        raise
      (path, reason), others = failed[0], [p for p, _ in failed[1:]]
      what = ('was deleted' if not os.path.exists(path) else
              f'is no longer a readable image ({reason})')
      also = f', and {base.name_groups([("more", others)])}' if others else ''
      them = 'them' if others else 'it'
      raise base.DataError(
          f'{path} {what} during the run{also}: restore {them} and rerun the same command '
          f'(training resumes from its newest checkpoint), or remove {them} and add '
          '--config.accept_changed_data=True') from error


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
        _paths([p for p, _ in part]), np.array([l for _, l in part], np.int32)))
    if shuffle_seed is not None:
      ds = ds.shuffle(max(len(part), 1), seed=shuffle_seed, reshuffle_each_iteration=False)
    return parallel_map(ds, lambda path, label: {'image': tf.io.read_file(path), 'label': label})


@base.register('image_folder')
class ImageFolderSource(sharded.ShardedSource):
  """`Files` of the folder, turned into examples by `Photographs`; what changed in the folder since
  a checkpoint (`Folder.changes_since`) and a file that can no longer be read during a run
  (`Folder.naming_unreadable`) are named."""
  EVAL_VIEWS = photographs.EVAL_VIEWS
  PHOTOGRAPHS = True

  def __init__(self, folder: Folder, *args, **kwargs):
    super().__init__(*args, fingerprint=folder.fingerprint, **kwargs)
    self._folder = folder

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
    listed_ns = time.time_ns()
    classes, files = scan(root)
    if 0 < config.num_classes != len(classes):
      raise base.DataError(f'num_classes={config.num_classes} but {root} has {len(classes)} '
                           'classes: set --config.num_classes=-1')
    cache = identity.Cache()
    announce = process_index == 0
    folder = Folder(root, files, cache, identity.fingerprint(root, files, cache, announce),
                    listed_ns)
    mean, std = checked_statistics(files, folder.fingerprint, cache, announce)
    if any(given):
      mean, std = given
    splits = list(files)
    spec = base.DatasetSpec(len(classes), (0, 0, 3), splits[0], splits[1], tuple(mean),
                            tuple(std))
    records = Files(files[splits[0]], files[splits[1]], process_index=process_index,
                    process_count=process_count, num_shards=num_shards)
    return cls(folder, spec, classes, records, examples, seed=seed)

  def data_changes(self, recorded):
    return self._folder.changes_since(recorded)

  def train_batches(self, *args, **kwargs):
    shards = self._records.parts.train.values()
    return self._folder.naming_unreadable(super().train_batches(*args, **kwargs),
                                          [file for files in shards for file in files])

  def eval_batches(self, *args, **kwargs):
    return self._folder.naming_unreadable(super().eval_batches(*args, **kwargs),
                                          self._records.parts.eval)

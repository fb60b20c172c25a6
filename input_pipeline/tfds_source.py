"""tf.data sources: the sharded, resumable order they share (also image_folder's), TFDS datasets,
and the small ones (MNIST, Fashion-MNIST, CIFAR-10), which are cached decoded in host memory.

TensorFlow only reads and preprocesses here; it is kept off every accelerator so that JAX owns them.
Each epoch's order is a function of (seed, epoch, shard) alone, which is what lets a resumed run
rebuild it and skip the batches it already trained on.
"""

import abc
import logging
import os
import socket
from collections.abc import Iterator

import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import base, local_files

tf.config.set_visible_devices([], 'GPU')
tf.config.set_visible_devices([], 'TPU')
# TFDS warns that a folder being prepared has no dataset_info.json yet: expected, not for users.
logging.getLogger('absl').addFilter(lambda record: 'has no dataset_info.json' not in
                                    record.getMessage())

SPECS = {
    'mnist': base.DatasetSpec(10, (28, 28, 1), 'train', 'test', (33.32,), (78.57,)),
    'fashion_mnist': base.DatasetSpec(10, (28, 28, 1), 'train', 'test', (72.94,), (90.02,)),
    'cifar10': base.DatasetSpec(10, (32, 32, 3), 'train', 'test',
                                (125.31, 122.95, 113.87), (62.99, 62.09, 66.70)),
}


def _can_download(host: str = 'storage.googleapis.com') -> bool:
  """Whether TFDS's download host answers; without it TFDS retries for minutes before failing."""
  try:
    socket.create_connection((host, 443), timeout=5).close()
    return True
  except OSError:
    return False


def parallel_map(ds: tf.data.Dataset, fn) -> tf.data.Dataset:
  """`ds.map(fn)` on all cores, without AutoGraph: these functions have no Python control flow on
  tensors to convert, and AutoGraph's conversion cache once handed one source method's converted
  code to another in a long test session."""
  return ds.map(tf.autograph.experimental.do_not_convert(fn), num_parallel_calls=tf.data.AUTOTUNE)


def prepared_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The TFDS builder of `name`, prepared from local files or downloaded if it is not yet."""
  data_dir = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
  if os.path.exists(data_dir) and not os.path.isdir(data_dir):
    raise base.DataError(f'data_dir {data_dir} is not a directory')
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  dirs = local_files.candidate_dirs(name, data_dir)
  local_dir = local_files.find_local_dir(name, dirs)
  if local_dir is not None:
    local_files.prepare_from_local_files(name, data_dir, local_dir)
  elif _can_download():
    builder.download_and_prepare()
  else:
    files = ', '.join(local_files.source_file_names(name))
    hint = ' (or: apt-get install dataset-fashion-mnist)' if name == 'fashion_mnist' else ''
    raise base.DataError(
        f'dataset {name!r} is not prepared in {data_dir} and cannot be downloaded (no network); '
        f'put its files ({files}) in {dirs[0]}{hint}, or copy a prepared {name}/ from another '
        f'machine into {data_dir}')
  return tfds.builder(name, data_dir=data_dir)


class ShardedSource(base.Source):
  """A source read as this process's train shards and eval slice, in the sharded, resumable order.

  Every shard of epoch e is shuffled with the seed of (seed, e, shard), cut to the epoch's
  batches, and only then preprocessed, each example with a seed of its own (the shard's seed, its
  position), so that resuming skips raw records rather than decoded images and redoes exactly the
  same augmentation. Subclasses say what a part of a split is (`train_parts`: shard -> part,
  `eval_part`) and how its records are read and turned into examples: `_records`,
  `_train_examples`, `_eval_examples` (by default records are examples, and no per-example map
  costs anything).
  """

  def __init__(self, spec: base.DatasetSpec, *, image_shape: tuple[int, int, int], seed: int,
               num_train_examples: int, num_eval_examples: int, train_parts: dict, eval_part):
    self.spec = spec
    self.image_shape = image_shape
    self._seed = seed
    self.num_train_examples, self.num_eval_examples = num_train_examples, num_eval_examples
    self._train_splits, self._eval_split = train_parts, eval_part

  @abc.abstractmethod
  def _records(self, part, shuffle_seed: int | None) -> tf.data.Dataset:
    """The records of a part of a split, shuffled with `shuffle_seed` unless it is None."""

  def _train_examples(self, records: tf.data.Dataset, seed: int,
                      first: int) -> tf.data.Dataset:
    """Training examples (`image`, `label`, ...) of an epoch's shuffled records from position
    `first` on; `seed` with an example's position seeds its augmentation."""
    return records.skip(first)

  def _eval_examples(self, records: tf.data.Dataset, view: base.EvalView) -> tf.data.Dataset:
    """Evaluation examples of `view` (by default records are examples: the centre view)."""
    del view
    return records

  def _shard_batches(self, shard: int, epoch: int, first_step: int, per_shard: int,
                     steps_per_epoch: int) -> tf.data.Dataset:
    seed = base.epoch_seed(self._seed, epoch, shard)
    records = self._records(self._train_splits[shard], seed).take(steps_per_epoch * per_shard)
    return self._train_examples(records, seed, first_step * per_shard).batch(
        per_shard, drop_remainder=True)

  def train_batches(self, epoch, first_step, local_batch, steps_per_epoch) -> Iterator[base.Batch]:
    per_shard = local_batch // len(self._train_splits)
    shards = [self._shard_batches(s, epoch, first_step, per_shard, steps_per_epoch)
              for s in self._train_splits]
    ds = shards[0] if len(shards) == 1 else parallel_map(
        tf.data.Dataset.zip(tuple(shards)),
        lambda *parts: {k: tf.concat([p[k] for p in parts], axis=0) for k in parts[0]})
    return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()

  def eval_batches(self, local_batch, num_steps, view=base.CENTRE) -> Iterator[base.Batch]:
    ds = self._eval_examples(self._records(self._eval_split, None), view).enumerate()
    ds = parallel_map(ds, lambda index, example: {**example, 'index': index})
    if view.crops == 'dense':  # Whole images: a batch holds images of one shape.
      ds = ds.group_by_window(
          key_func=lambda e: tf.cast(tf.shape(e['image'])[0] * 65536 + tf.shape(e['image'])[1],
                                     tf.int64),
          reduce_func=lambda _, images: images.batch(local_batch), window_size=local_batch)
    else:
      ds = ds.batch(local_batch)
    return base.pad_eval_batches(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator(), local_batch,
                                 num_steps)


class TFDSSource(ShardedSource):
  """A prepared TFDS dataset: parts are TFDS split strings ('train[0%:50%]')."""

  def __init__(self, builder: tfds.core.DatasetBuilder, spec: base.DatasetSpec, *,
               image_shape: tuple[int, int, int], seed: int, process_index: int,
               process_count: int, num_shards: int):
    self._builder = builder
    splits = builder.info.splits
    train_shards = tfds.even_splits(spec.train_split, n=num_shards)
    super().__init__(
        spec, image_shape=image_shape, seed=seed,
        num_train_examples=splits[spec.train_split].num_examples,
        num_eval_examples=splits[spec.eval_split].num_examples,
        train_parts={s: train_shards[s]
                     for s in base.process_shards(num_shards, process_index, process_count)},
        eval_part=tfds.split_for_jax_process(spec.eval_split, process_index=process_index,
                                             process_count=process_count))


@base.register('mnist', 'fashion_mnist', 'cifar10')
class SmallImageSource(TFDSSource):
  """MNIST, Fashion-MNIST, CIFAR-10: decoded once, cached in host memory, zero-padded (centred)
  to image_size; each epoch is a fresh shuffle of the cache."""

  @classmethod
  def from_config(cls, name, config, **kwargs):
    return cls(name, data_dir=config.data_dir, image_size=config.image_size,
               shuffle_buffer_size=config.shuffle_buffer_size, **kwargs)

  @classmethod
  def known_record(cls, name, config):
    return {'mean': SPECS[name].mean, 'std': SPECS[name].std,
            'class_names': tfds.builder_cls(name)().info.features['label'].names}

  def __init__(self, name: str, *, data_dir: str | None, image_size: int,
               shuffle_buffer_size: int, **kwargs):
    spec = SPECS[name]
    height, width, channels = spec.image_shape
    if image_size < max(height, width):
      raise base.DataError(f'image_size={image_size} is smaller than {name}\'s {height}x{width} '
                           'images; this pipeline pads, it does not crop')
    super().__init__(prepared_builder(name, data_dir), spec,
                     image_shape=(image_size, image_size, channels), **kwargs)
    self.class_names = self._builder.info.features['label'].names

    def pad(example):
      return {'image': tf.image.resize_with_crop_or_pad(example['image'], image_size, image_size),
              'label': tf.cast(example['label'], tf.int32)}

    splits = [*self._train_splits.values(), self._eval_split]
    self._cache = {split: parallel_map(self._builder.as_dataset(split=split, shuffle_files=False),
                                       pad).cache() for split in splits}
    self._buffer = {split: min(shuffle_buffer_size, self._builder.info.splits[split].num_examples)
                    for split in splits}

  def _records(self, split, shuffle_seed):
    if shuffle_seed is None:
      return self._cache[split]
    return self._cache[split].shuffle(self._buffer[split], seed=shuffle_seed,
                                      reshuffle_each_iteration=False)

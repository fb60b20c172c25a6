"""TFDS datasets: preparing them (downloaded, or from local files), the records parts that read
their splits in the sharded order (sharded.py), and the small datasets' source (MNIST,
Fashion-MNIST, CIFAR-10), whose records are cached decoded in host memory.
"""

import logging
import math
import os
import socket

import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import base, local_files, sharded
from input_pipeline.sharded import parallel_map

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


def split_parts(builder: tfds.core.DatasetBuilder, spec: base.DatasetSpec, *, process_index: int,
                process_count: int, num_shards: int) -> sharded.Parts:
  """The parts of `builder`'s splits that this process reads, as TFDS split strings: its shards of
  the train split (`tfds.even_splits`, 'train[0%:50%]') and its slice of the eval split."""
  splits = builder.info.splits
  train_shards = tfds.even_splits(spec.train_split, n=num_shards)
  return sharded.Parts(
      num_train_examples=splits[spec.train_split].num_examples,
      num_eval_examples=splits[spec.eval_split].num_examples,
      train={s: train_shards[s]
             for s in base.process_shards(num_shards, process_index, process_count)},
      eval=tfds.split_for_jax_process(spec.eval_split, process_index=process_index,
                                      process_count=process_count))


class EncodedImages:
  """The records of a TFDS dataset of photographs, images left encoded (JPEG bytes) for
  photographs.py to decode only the window each crop needs: shuffled on those bytes, with the
  file order shuffled by the same seed as the records (`sharded.Records`)."""

  def __init__(self, builder: tfds.core.DatasetBuilder, parts: sharded.Parts,
               shuffle_buffer_size: int):
    self.parts = parts
    self._builder = builder
    self._shuffle_buffer_size = shuffle_buffer_size

  def read(self, split, shuffle_seed):
    shuffle = shuffle_seed is not None
    ds = self._builder.as_dataset(
        split=split, shuffle_files=shuffle, decoders={'image': tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed))
    ds = parallel_map(ds, lambda record: {'image': record['image'],
                                          'label': tf.cast(record['label'], tf.int32)})
    if shuffle:
      ds = ds.shuffle(self._shuffle_buffer_size, seed=shuffle_seed, reshuffle_each_iteration=False)
    return ds


class CachedImages:
  """The records of a small TFDS dataset, examples already: decoded once, zero-padded (centred) to
  `image_size` and cached in host memory; each epoch is a fresh shuffle of the cache
  (`sharded.Records`)."""

  def __init__(self, builder: tfds.core.DatasetBuilder, parts: sharded.Parts, image_size: int,
               shuffle_buffer_size: int):
    self.parts = parts

    def pad(example):
      return {'image': tf.image.resize_with_crop_or_pad(example['image'], image_size, image_size),
              'label': tf.cast(example['label'], tf.int32)}

    splits = [*parts.train.values(), parts.eval]
    self._cache = {split: parallel_map(builder.as_dataset(split=split, shuffle_files=False),
                                       pad).cache() for split in splits}
    self._buffer = {split: min(shuffle_buffer_size, builder.info.splits[split].num_examples)
                    for split in splits}

  def read(self, split, shuffle_seed):
    if shuffle_seed is None:
      return self._cache[split]
    return self._cache[split].shuffle(self._buffer[split], seed=shuffle_seed,
                                      reshuffle_each_iteration=False)


@base.register('mnist', 'fashion_mnist', 'cifar10')
class SmallImageSource(sharded.ShardedSource):
  """MNIST, Fashion-MNIST, CIFAR-10: `CachedImages`, padded to image_size, never cropped."""

  @classmethod
  def from_config(cls, name, config, *, seed, **sharding):
    spec = SPECS[name]
    height, width, channels = spec.image_shape
    size = config.image_size
    if size < max(height, width):
      raise base.DataError(f'image_size={size} is smaller than {name}\'s {height}x{width} '
                           'images; this pipeline pads, it does not crop')
    builder = prepared_builder(name, config.data_dir)
    parts = split_parts(builder, spec, **sharding)
    # The cache: this process's shards of the training split and its slice of the other.
    cached = (parts.num_train_examples * len(parts.train) // sharding['num_shards']
              + math.ceil(parts.num_eval_examples / sharding['process_count']))
    base.check_host_memory(name, cached, (size, size, channels))
    records = CachedImages(builder, parts, size, config.shuffle_buffer_size)
    return cls(spec, builder.info.features['label'].names, records,
               sharded.Decoded((size, size, channels)), seed=seed)

  @classmethod
  def known_record(cls, name, config):
    return {'mean': SPECS[name].mean, 'std': SPECS[name].std,
            'class_names': tfds.builder_cls(name)().info.features['label'].names}

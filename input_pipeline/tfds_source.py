"""TFDS + tf.data source for the small classification datasets (MNIST, Fashion-MNIST, CIFAR-10).

TensorFlow only reads and shuffles here; it is kept off every accelerator so that JAX owns them.
The decoded split is cached in host memory after the first pass (these datasets are small);
each epoch is then a fresh shuffle of that cache with a seed derived from (seed, epoch), which is
what lets a resumed run rebuild the exact order and skip the batches it already trained on.
"""

import os
import socket
from collections.abc import Iterator

import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import base, local_files

tf.config.set_visible_devices([], 'GPU')
tf.config.set_visible_devices([], 'TPU')

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


class TFDSSource(base.Source):

  def __init__(self, name: str, *, data_dir: str | None, image_size: int, shuffle_buffer_size: int,
               seed: int, process_index: int, process_count: int, num_shards: int):
    self.spec = SPECS[name]
    height, width, channels = self.spec.image_shape
    if image_size < max(height, width):
      raise base.DataError(f'image_size={image_size} is smaller than {name}\'s {height}x{width} '
                           'images; this pipeline pads, it does not crop')
    self.image_shape = (image_size, image_size, channels)
    self._seed = seed
    builder = prepared_builder(name, data_dir)
    splits = builder.info.splits
    self.num_train_examples = splits[self.spec.train_split].num_examples
    self.num_eval_examples = splits[self.spec.eval_split].num_examples

    def read(split):
      ds = builder.as_dataset(split=split, shuffle_files=False)
      pad = lambda ex: (tf.image.resize_with_crop_or_pad(ex['image'], image_size, image_size),
                        tf.cast(ex['label'], tf.int32))
      return ds.map(pad, num_parallel_calls=tf.data.AUTOTUNE).cache()

    train_shards = tfds.even_splits(self.spec.train_split, n=num_shards)
    self._train = {s: (read(train_shards[s]),
                       min(shuffle_buffer_size, splits[train_shards[s]].num_examples))
                   for s in base.process_shards(num_shards, process_index, process_count)}
    self._eval = read(tfds.split_for_jax_process(
        self.spec.eval_split, process_index=process_index, process_count=process_count))

  def train_batches(self, epoch, first_step, local_batch, steps_per_epoch) -> Iterator[base.Batch]:
    per_shard = local_batch // len(self._train)
    shards = [ds.shuffle(buffer, seed=base.epoch_seed(self._seed, epoch, s),
                         reshuffle_each_iteration=False).batch(per_shard, drop_remainder=True)
              for s, (ds, buffer) in self._train.items()]
    ds = shards[0] if len(shards) == 1 else tf.data.Dataset.zip(tuple(shards)).map(
        lambda *parts: tuple(tf.concat(column, axis=0) for column in zip(*parts)))
    ds = ds.take(steps_per_epoch).skip(first_step)
    ds = ds.map(lambda image, label: {'image': image, 'label': label})
    return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()

  def eval_batches(self, local_batch, num_steps) -> Iterator[base.Batch]:
    ds = self._eval.batch(local_batch).map(lambda image, label: {'image': image, 'label': label})
    return base.pad_eval_batches(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator(), local_batch,
                                 num_steps)

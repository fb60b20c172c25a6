"""The one source of every tf.data dataset, built from two parts rather than subclassed.

A `ShardedSource` reads this process's train shards and eval slice in the sharded, resumable order
(base.py) and knows nothing of any dataset: its records part says which parts of each split this
process reads (`Parts`) and how one part is read (`read`: TFDS splits in tfds_source.py, an image
folder's files in image_folder.py), and its examples part how records become examples
(`Decoded` for records that are examples already, photographs.py's `Photographs` for encoded
photographs). A dataset's file builds the parts in its `from_config`.

TensorFlow only reads and preprocesses here; it is kept off every accelerator so that JAX owns them.
Each epoch's order is a function of (seed, epoch, shard) alone, which is what lets a resumed run
rebuild it and skip the batches it already trained on.
"""

import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol

import tensorflow as tf

from input_pipeline import base, views

tf.config.set_visible_devices([], 'GPU')
tf.config.set_visible_devices([], 'TPU')


def parallel_map(ds: tf.data.Dataset, fn) -> tf.data.Dataset:
  """`ds.map(fn)` on all cores, without AutoGraph: these functions have no Python control flow on
  tensors to convert, and AutoGraph's conversion cache once handed one source method's converted
  code to another in a long test session."""
  return ds.map(tf.autograph.experimental.do_not_convert(fn), num_parallel_calls=tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class Parts:
  """The parts of a dataset's splits that one process reads, each what the records part's `read`
  takes (a TFDS split string, a list of files)."""
  num_train_examples: int  # Whole split, all processes.
  num_eval_examples: int
  train: dict[int, Any]  # Shard of the training order -> its part, for this process's shards.
  eval: Any  # This process's slice of the eval split.


class Records(Protocol):
  """Where this process's records are, and how they are read: `image` (decoded, or encoded bytes)
  and int32 `label`."""
  parts: Parts

  def read(self, part, shuffle_seed: int | None) -> tf.data.Dataset:
    """The records of `part`, shuffled with `shuffle_seed` unless it is None."""


class Examples(Protocol):
  """How records become the examples of batches, at `image_shape`."""
  image_shape: tuple[int, int, int]

  def train_examples(self, records: tf.data.Dataset, seed: int, first: int) -> tf.data.Dataset:
    """Training examples (`image`, `label`, ...) of an epoch's shuffled records from position
    `first` on; `seed` with an example's position seeds its augmentation."""

  def eval_examples(self, records: tf.data.Dataset, view: base.EvalView) -> tf.data.Dataset:
    """Evaluation examples of `view`."""


class Decoded:
  """The examples part of records that are examples already (decoded at `image_shape`): no
  per-example map costs anything, and evaluation shows the images as they are, the centre view."""

  def __init__(self, image_shape: tuple[int, int, int]):
    self.image_shape = image_shape

  def train_examples(self, records, seed, first):
    del seed
    return records.skip(first)

  def eval_examples(self, records, view):
    del view
    return records


class ShardedSource(base.Source):
  """A source read as this process's train shards and eval slice, in the sharded, resumable order.

  Every shard of epoch e is shuffled with the seed of (seed, e, shard), cut to the epoch's
  batches, and only then turned into examples, each with a seed of its own (the shard's seed, its
  position), so that resuming skips raw records rather than decoded images and redoes exactly the
  same augmentation. A dataset's file subclasses it only to register it (`base.register`) with its
  `from_config`, `known_record` and what it supports (`EVAL_VIEWS`, `PHOTOGRAPHS`); image_folder's
  also names a file that can no longer be read, and what changed in its folder.
  """

  def __init__(self, spec: base.DatasetSpec, class_names: list[str], records: Records,
               examples: Examples, *, seed: int, fingerprint: str | None = None):
    self.spec, self.class_names, self.fingerprint = spec, class_names, fingerprint
    self.image_shape = examples.image_shape
    self.num_train_examples = records.parts.num_train_examples
    self.num_eval_examples = records.parts.num_eval_examples
    self._records, self._examples, self._seed = records, examples, seed

  def _shard_batches(self, shard: int, epoch: int, first_step: int, per_shard: int,
                     steps_per_epoch: int) -> tf.data.Dataset:
    seed = base.epoch_seed(self._seed, epoch, shard)
    records = self._records.read(self._records.parts.train[shard], seed).take(
        steps_per_epoch * per_shard)
    return self._examples.train_examples(records, seed, first_step * per_shard).batch(
        per_shard, drop_remainder=True)

  def train_batches(self, epoch, first_step, local_batch, steps_per_epoch) -> Iterator[base.Batch]:
    shards = self._records.parts.train
    per_shard = local_batch // len(shards)
    batches = [self._shard_batches(s, epoch, first_step, per_shard, steps_per_epoch)
               for s in shards]
    ds = batches[0] if len(batches) == 1 else parallel_map(
        tf.data.Dataset.zip(tuple(batches)),
        lambda *parts: {k: tf.concat([p[k] for p in parts], axis=0) for k in parts[0]})
    return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()

  def eval_batches(self, local_batch, num_steps, view=base.CENTRE) -> Iterator[base.Batch]:
    records = self._records.read(self._records.parts.eval, None)
    ds = self._examples.eval_examples(records, view).enumerate()
    ds = parallel_map(ds, lambda index, example: {**example, 'index': index})
    if view.crops == views.DENSE:  # Whole images: a batch holds images of one shape.
      ds = ds.group_by_window(
          key_func=lambda e: tf.cast(tf.shape(e['image'])[0] * 65536 + tf.shape(e['image'])[1],
                                     tf.int64),
          reduce_func=lambda _, images: images.batch(local_batch), window_size=local_batch)
    else:
      ds = ds.batch(local_batch)
    return base.pad_eval_batches(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator(), local_batch,
                                 num_steps)

"""What every data source gives the training loop, and the padding that makes evaluation exact.

A source yields host-local numpy batches: `image` uint8 NHWC (normalised later, on the device, so
that a quarter of the bytes cross to the accelerator) and `label` int32; evaluation batches also
carry `mask`, False on padding. Each process reads only its own slice of every split.

The training order is defined over `num_shards` contiguous shards of the train split, each
shuffled on its own; global batch k is the k-th sub-batch of every shard, concatenated in shard
order, and each process reads only the shards it owns. So two runs with the same number of shards
train on identical global batches however many processes share the work (by default there is one
shard per process).
"""

import abc
import dataclasses
import math
import os
from collections.abc import Iterable, Iterator

import numpy as np
import tqdm

Batch = dict[str, np.ndarray]


class DataError(ValueError):
  """Data a user asked for that is missing or does not fit the config."""


def name_groups(groups: list[tuple[str, list[str]]]) -> str:
  """'2 added (a, b), 1 removed (c)': the size and first names of each non-empty group of names
  (what differs between two lists of files or classes), in one line."""
  return ', '.join(f'{len(names)} {what} ({", ".join(names[:3])}'
                   f'{", ..." if len(names) > 3 else ""})' for what, names in groups if names)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Facts the loop needs about a dataset before reading it."""
  num_classes: int
  image_shape: tuple[int, int, int]  # As stored: height, width, channels.
  train_split: str
  eval_split: str
  mean: tuple[float, ...]  # Per channel, on the 0-255 scale.
  std: tuple[float, ...]


def host_memory() -> int:
  """This machine's physical memory, in bytes."""
  return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def check_host_memory(dataset: str, num_images: int, image_shape: tuple[int, ...]) -> None:
  """Refuses a source that would keep more uint8 images in host memory than this machine has:
  one line naming the image size, where the allocation would fail (or the system kill the
  process) while the data is read."""
  needed, memory = num_images * math.prod(image_shape), host_memory()
  if needed > memory:
    raise DataError(f'image_size={image_shape[0]}: {dataset} keeps {num_images:,} images of '
                    f'{"x".join(map(str, image_shape))} in host memory, {in_bytes(needed)}, more '
                    f"than this machine's {in_bytes(memory)}; use a smaller image_size")


def in_bytes(n: int) -> str:
  """'1.20MB', '25.3GB', '3.80TB'."""
  return tqdm.tqdm.format_sizeof(n, 'B', 1000)


def eval_resize_size(image_size: int, eval_resize: int) -> int:
  """`eval_resize`, or -1 for the common ratio 224/256 = 0.875 (256 for 224, 342 for 299)."""
  return eval_resize if eval_resize > 0 else round(image_size / 0.875)


def epoch_seed(seed: int, epoch: int, shard: int = 0) -> int:
  """An independent 32-bit seed for each (seed, epoch, shard), so each epoch's order can be rebuilt
  alone; shard 0 keeps the seed of (seed, epoch), the order of a single-shard run."""
  entropy = [seed, epoch] + ([shard] if shard else [])
  return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def process_shards(num_shards: int, process_index: int, process_count: int) -> range:
  """The shards of the training order that `process_index` reads (`num_shards` divides evenly)."""
  if num_shards % process_count:
    raise DataError(f'data_shards={num_shards} must be a multiple of the {process_count} '
                    'processes')
  per_process = num_shards // process_count
  return range(process_index * per_process, (process_index + 1) * per_process)


def process_slice(num_examples: int, process_index: int, process_count: int) -> slice:
  """Contiguous, near-equal slice of a split for one process (as `tfds.even_splits` cuts it)."""
  bounds = [num_examples * i // process_count for i in range(process_count + 1)]
  return slice(bounds[process_index], bounds[process_index + 1])


def num_eval_steps(num_examples: int, global_batch: int, process_count: int) -> int:
  """Steps that let every process see all of its slice; the same number on every process."""
  largest_slice = math.ceil(num_examples / process_count)
  return math.ceil(largest_slice / (global_batch // process_count))


def pad_eval_batches(batches: Iterable[Batch], local_batch: int, num_steps: int) -> Iterator[Batch]:
  """Pads each batch to `local_batch` rows and appends all-padding batches up to `num_steps`.

  So the last partial batch is evaluated rather than dropped, every process runs the same number of
  steps (a collective program needs that), and `mask` says which rows are real. Batches may differ
  in image shape (dense evaluation's whole images); each is padded in its own.
  """
  template = None
  steps = 0
  for batch in batches:
    n = len(batch['label'])
    template = template or {k: (v.shape[1:], v.dtype) for k, v in batch.items()}
    padded = {k: np.zeros((local_batch, *v.shape[1:]), v.dtype) for k, v in batch.items()}
    for k, v in batch.items():
      padded[k][:n] = v
    padded['mask'] = np.arange(local_batch) < n
    steps += 1
    yield padded
  if template is None:
    raise DataError('the evaluation split of this process is empty')
  for _ in range(num_steps - steps):
    empty = {k: np.zeros((local_batch, *shape), dtype) for k, (shape, dtype) in template.items()}
    empty['mask'] = np.zeros(local_batch, bool)
    yield empty


@dataclasses.dataclass(frozen=True)
class EvalView:
  """How one pass of an evaluation protocol shows each image to the model: `crops` names a
  registered kind of view (input_pipeline/views/: 'centre', AlexNet's 'five', VGG's 'grid',
  'googlenet', 'dense'), at shorter side `scale` (0: the config's `eval_resize`). Mirror images
  are added on the device (app/evaluation.py), not here.
  """
  crops: str = 'centre'
  scale: int = 0


CENTRE = EvalView()
# Dense evaluation's whole images: the longer side is rounded to a multiple of the networks' total
# stride (32), so that ImageNet's images fall into a few dozen shapes per scale (one compilation
# each) instead of hundreds; the aspect ratio changes by at most 16 pixels of the longer side.
DENSE_MULTIPLE = 32


_SOURCES: dict[str, type['Source']] = {}


def register(*names: str):
  """Class decorator: the `Source` reads the datasets `names` (`config.dataset`)."""

  def wrap(cls):
    for name in names:
      if name in _SOURCES:
        raise ValueError(f'dataset {name!r} registered twice')
      _SOURCES[name] = cls
    return cls

  return wrap


def registered(name: str) -> type['Source'] | None:
  return _SOURCES.get(name)


class Source(abc.ABC):
  """A dataset read by one process: its slice of the train and eval splits.

  A source registers the dataset names it reads (`@register`) and declares what it supports:
  `EVAL_VIEWS`, the kinds of `EvalView` its evaluation batches show, and `PHOTOGRAPHS`, whether
  images of any size are centre-cropped as ImageNet's (True) or padded to `image_size` as the
  small datasets' (False), which predict.py follows. `from_config` checks every config field the
  source reads, one DataError each, before it reads any data.
  """

  EVAL_VIEWS: tuple[str, ...] = ('centre',)
  PHOTOGRAPHS: bool = False

  spec: DatasetSpec
  image_shape: tuple[int, int, int]  # As fed to the model (after padding).
  num_train_examples: int  # Whole split, all processes.
  num_eval_examples: int
  class_names: list[str]  # By label; saved with each checkpoint for predict.py.
  # What the data's order and statistics are a function of, where a user can change it between
  # a run's starts (an image folder's files); a resume on other data is refused, saying what
  # differs (`data_changes`), unless the config's `accept_changed_data` is set.
  fingerprint: str | None = None

  def data_changes(self, recorded: str | None) -> str | None:
    """What differs between the data of a checkpoint's recorded `fingerprint` (None before there
    were any) and this source's, in a few words, for a resume to refuse or print; None where
    nothing does."""
    return None if None in (recorded, self.fingerprint) or recorded == self.fingerprint else (
        'other data')

  @classmethod
  @abc.abstractmethod
  def from_config(cls, name: str, config, *, seed: int, process_index: int, process_count: int,
                  num_shards: int) -> 'Source':
    """The source of dataset `name` for `config`, reading this process's part."""

  @classmethod
  def known_record(cls, name: str, config) -> dict | None:
    """The dataset's channel statistics and class names where they need no data ('mean', 'std',
    'class_names'): what predict.py uses for checkpoints saved before they were recorded."""
    del name, config
    return None

  @abc.abstractmethod
  def train_batches(self, epoch: int, first_step: int, local_batch: int,
                    steps_per_epoch: int) -> Iterator[Batch]:
    """Batches `first_step` .. `steps_per_epoch - 1` of `epoch`, in an order fixed by the seed."""

  @abc.abstractmethod
  def eval_batches(self, local_batch: int, num_steps: int,
                   view: EvalView = CENTRE) -> Iterator[Batch]:
    """Padded batches covering this process's eval slice once, each image as `view` shows it,
    then all-padding batches up to `num_steps` (a dense view may need more than
    num_eval_steps: its batches hold images of one shape); `index` numbers the images of the
    slice (dense batches group them by shape, out of order)."""

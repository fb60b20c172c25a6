"""Prepares a TFDS dataset from files already on disk, when TFDS cannot download them.

TFDS downloads each source file from a URL and checks it against its registered checksum. Offline,
the same files are often on disk under the same names, but not byte-identical: Debian's
`dataset-fashion-mnist` ships the four upstream Fashion-MNIST IDX files re-compressed, so their gzip
checksums differ from TFDS's registry and TFDS refuses them as manual downloads.

`prepare_from_local_files` runs the dataset's own, unmodified TFDS builder and only swaps its
download step: each URL is mapped to the file with the same base name in a local directory, which
TFDS then extracts as usual. The examples, features, splits and on-disk format are the builder's
own, so `tfds.builder(name, data_dir=...)` afterwards loads the result like a downloaded dataset.

Files found on disk are not checksummed by TFDS, so they are checked before and after. Before:
each `.gz` file is gzip-compressed, and each IDX file (MNIST's, Fashion-MNIST's) is whole and holds
the array TFDS's builder reads without looking at its header (60,000 or 10,000 labels or 28x28
images); anything TFDS still fails on is one `DataError` naming the directory. After: the prepared
splits hold the official label counts, so that wrong files (valid IDX files of other data, labels
all zero, ...) are refused rather than cached for every later run. Preparation, extraction
included, happens in a staging directory that only a checked dataset leaves, so nothing extracted
from bad files is reused after the user replaces them.
"""

import contextlib
import functools
import gzip
import io
import math
import os
import shutil
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core.download.extractor import ExtractError

from input_pipeline.base import DataError

# Directories where system packages put the source files of a TFDS dataset, by TFDS name.
SYSTEM_DIRS = {
    'fashion_mnist': ('/usr/share/datasets/fashion-mnist',),
}


# Examples per class in each split of the original files (MNIST: LeCun et al.'s distribution).
LABEL_COUNTS = {
    'fashion_mnist': {'train': [6000] * 10, 'test': [1000] * 10},
    'mnist': {'train': [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
              'test': [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]},
    'cifar10': {'train': [5000] * 10, 'test': [1000] * 10},
}


# The array in each IDX file of MNIST and Fashion-MNIST (the same names in both), as TFDS reads it.
IDX_SHAPES = {
    'train-images-idx3-ubyte.gz': (60_000, 28, 28),
    'train-labels-idx1-ubyte.gz': (60_000,),
    't10k-images-idx3-ubyte.gz': (10_000, 28, 28),
    't10k-labels-idx1-ubyte.gz': (10_000,),
}
_IDX_UBYTE = b'\0\0\x08'  # An IDX file's magic number before its dimension count: unsigned bytes.
_GZIP_MAGIC = b'\x1f\x8b'
_REPLACE = 'replace it with the original file (nothing was prepared)'

# What TFDS's builders raise on source files that are not what they expect: archives cut short or
# not archives at all (its extraction's ExtractError, tarfile's, gzip's, zlib's and tf.io.gfile's
# errors), arrays of other sizes (ValueError).
BAD_FILE_ERRORS = (ExtractError, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile,
                   tf.errors.OpError, ValueError)


def candidate_dirs(name: str, data_dir: str) -> list[str]:
  """Where to look for `name`'s files: TFDS's manual dir first, then system packages' dirs."""
  return [os.path.join(data_dir, 'downloads', 'manual', name), *SYSTEM_DIRS.get(name, ())]


def source_file_names(name: str) -> list[str]:
  """Base names of the files that TFDS would download for `name` (from its checksums registry)."""
  builder_cls = tfds.builder_cls(name)
  return sorted({os.path.basename(url) for url in builder_cls.url_infos or {}})


def find_local_dir(name: str, dirs: Sequence[str]) -> str | None:
  """The first directory holding every source file of `name`, or None."""
  files = source_file_names(name)
  if not files:
    return None
  for directory in dirs:
    if all(os.path.isfile(os.path.join(directory, f)) for f in files):
      return directory
  return None


def _describe(shape: tuple[int, ...]) -> str:
  return f'{shape[0]} labels' if len(shape) == 1 else f'{shape[0]} images of {shape[1]}x{shape[2]}'


def _check_idx(path: str, expected: tuple[int, ...]) -> None:
  """Raises DataError unless the gzip-compressed IDX file `path` is whole and holds `expected`."""
  magic, header_size = _IDX_UBYTE + bytes([len(expected)]), 4 + 4 * len(expected)
  try:
    with gzip.open(path) as f:
      header = f.read(header_size)
      if len(header) >= 4 and header[:4] != magic:
        raise DataError(f'{path} is not an IDX file of {_describe(expected)} (its magic number is '
                        f'{header[:4].hex()}, not {magic.hex()}): ' + _REPLACE)
      if len(header) < header_size:
        raise DataError(f'{path}: its IDX header is cut short ({len(header)} of {header_size} '
                        'bytes): ' + _REPLACE)
      shape = struct.unpack(f'>{len(expected)}I', header[4:])
      if shape != expected:
        raise DataError(f'{path} holds {_describe(shape)} where the original holds '
                        f'{_describe(expected)}: ' + _REPLACE)
      size = sum(map(len, iter(functools.partial(f.read, 1 << 20), b'')))
  except (EOFError, zlib.error, gzip.BadGzipFile) as e:
    raise DataError(f'{path} is a damaged gzip file ({e}): ' + _REPLACE) from e
  if size != math.prod(shape):
    raise DataError(f'{path} holds {size} bytes after its header, which declares '
                    f'{_describe(shape)} ({math.prod(shape)} bytes): ' + _REPLACE)


def check_source_files(name: str, directory: str) -> None:
  """Raises DataError naming the first source file of `name` in `directory` that TFDS's builder
  would fail on with a traceback, or read wrongly: a `.gz` file that is not gzip-compressed, or an
  IDX file that is damaged or holds another array (TFDS reads IDX files without their headers)."""
  for file in source_file_names(name):
    path = os.path.join(directory, file)
    if file.endswith('.gz'):
      with open(path, 'rb') as f:
        start = f.read(8)
      if not start.startswith(_GZIP_MAGIC):
        raise DataError(f'{path} is not a gzip file (it starts with {start!r}): ' + _REPLACE)
    if file in IDX_SHAPES:
      _check_idx(path, IDX_SHAPES[file])


@contextlib.contextmanager
def bad_files_reported(name: str, directory: str):
  """TFDS's errors on bad source files, while it prepares `name` from `directory`, as one
  DataError naming the directory (TFDS leaves nothing prepared then)."""
  try:
    yield
  except BAD_FILE_ERRORS as e:
    reason = (str(e).strip().splitlines() or [''])[0]
    raise DataError(f'could not prepare {name} from the files in {directory} ({type(e).__name__}: '
                    f'{reason}): replace them with the original, complete files and rerun '
                    '(nothing was prepared)') from e


class _LocalFilesDownloadManager:
  """Stands in for TFDS's DownloadManager: URL -> local file of the same name, then extract."""

  def __init__(self, dl_manager, directory: str):
    self._dl_manager = dl_manager
    self._directory = directory

  def _local(self, url: str) -> epath.Path:
    return epath.Path(self._directory) / os.path.basename(str(url))

  def download(self, url_or_urls):
    return tfds.core.utils.map_nested(self._local, url_or_urls)

  def download_and_extract(self, url_or_urls):
    return self._dl_manager.extract(self.download(url_or_urls))

  def __getattr__(self, attr):
    return getattr(self._dl_manager, attr)


def check_label_counts(builder: tfds.core.DatasetBuilder, name: str, directory: str) -> None:
  """Raises DataError unless each split holds the original files' examples per class."""
  for split, expected in LABEL_COUNTS.get(name, {}).items():
    records = builder.as_dataset(split=split, decoders={'image': tfds.decode.SkipDecoding()})
    labels = np.concatenate(list(tfds.as_numpy(records.map(lambda x: x['label']).batch(10_000))))
    counts = np.bincount(labels, minlength=len(expected)).tolist()
    if counts != expected:
      raise DataError(f'the files in {directory} are not the original {name}: its {split} split '
                      f'has {counts} examples per class, the original {expected}; replace them '
                      'with the original files (nothing was prepared)')


def prepare_from_local_files(name: str, data_dir: str, directory: str) -> None:
  """Builds TFDS dataset `name` into `data_dir` from the source files in `directory`."""
  check_source_files(name, directory)
  registered_cls = tfds.builder_cls(name)

  class LocalFilesBuilder(registered_cls, skip_registration=True):

    def _split_generators(self, dl_manager, *args, **kwargs):
      return super()._split_generators(
          _LocalFilesDownloadManager(dl_manager, directory), *args, **kwargs)

  LocalFilesBuilder.name = registered_cls.name
  os.makedirs(data_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f'.{name}-preparing-', dir=data_dir)
  print(f'preparing {name} from {directory} in {data_dir} (once)')
  try:
    # TFDS's own lines would name the staging directory and call this a download, and its
    # progress bars fill a screen for the seconds these small datasets take.
    tfds.display_progress_bar(False)
    try:
      with contextlib.redirect_stdout(io.StringIO()), bad_files_reported(name, directory):
        LocalFilesBuilder(data_dir=staging).download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    finally:
      tfds.display_progress_bar(True)
    prepared = tfds.builder(name, data_dir=staging)
    check_label_counts(prepared, name, directory)
    target = os.path.join(data_dir, os.path.relpath(prepared.data_dir, staging))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
      os.rename(prepared.data_dir, target)
    except OSError:
      if not os.path.isdir(target):  # Else another process prepared it meanwhile: keep theirs.
        raise
  finally:
    shutil.rmtree(staging, ignore_errors=True)

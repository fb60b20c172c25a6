"""Prepares a TFDS dataset from files already on disk, when TFDS cannot download them.

TFDS downloads each source file from a URL and checks it against its registered checksum. Offline,
the same files are often on disk under the same names, but not byte-identical: Debian's
`dataset-fashion-mnist` ships the four upstream Fashion-MNIST IDX files re-compressed, so their gzip
checksums differ from TFDS's registry and TFDS refuses them as manual downloads.

`prepare_from_local_files` runs the dataset's own, unmodified TFDS builder and only swaps its
download step: each URL is mapped to the file with the same base name in a local directory, which
TFDS then extracts as usual. The examples, features, splits and on-disk format are the builder's
own, so `tfds.builder(name, data_dir=...)` afterwards loads the result like a downloaded dataset.

Files found on disk are not checksummed by TFDS, so the prepared splits are checked against the
official label counts before they are kept: wrong files (valid IDX files of other data, labels all
zero, ...) are refused rather than cached for every later run. Preparation, extraction included,
happens in a staging directory that only a checked dataset leaves, so nothing extracted from bad
files is reused after the user replaces them.
"""

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

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
    labels = np.concatenate(list(tfds.as_numpy(
        builder.as_dataset(split=split).map(lambda x: x['label']).batch(10_000))))
    counts = np.bincount(labels, minlength=len(expected)).tolist()
    if counts != expected:
      raise DataError(f'the files in {directory} are not the original {name}: its {split} split '
                      f'has {counts} examples per class, the original {expected}; replace them '
                      'with the original files (nothing was prepared)')


def prepare_from_local_files(name: str, data_dir: str, directory: str) -> None:
  """Builds TFDS dataset `name` into `data_dir` from the source files in `directory`."""
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
      with contextlib.redirect_stdout(io.StringIO()):
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

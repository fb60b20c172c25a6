"""Prepares a TFDS dataset from files already on disk, when TFDS cannot download them.

TFDS downloads each source file from a URL and checks it against its registered checksum. Offline,
the same files are often on disk under the same names, but not byte-identical: Debian's
`dataset-fashion-mnist` ships the four upstream Fashion-MNIST IDX files re-compressed, so their gzip
checksums differ from TFDS's registry and TFDS refuses them as manual downloads.

`prepare_from_local_files` runs the dataset's own, unmodified TFDS builder and only swaps its
download step: each URL is mapped to the file with the same base name in a local directory, which
TFDS then extracts as usual. The examples, features, splits and on-disk format are the builder's
own, so `tfds.builder(name, data_dir=...)` afterwards loads the result like a downloaded dataset.
"""

import os
from collections.abc import Sequence

import tensorflow_datasets as tfds
from etils import epath

# Directories where system packages put the source files of a TFDS dataset, by TFDS name.
SYSTEM_DIRS = {
    'fashion_mnist': ('/usr/share/datasets/fashion-mnist',),
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


def prepare_from_local_files(name: str, data_dir: str, directory: str) -> None:
  """Builds TFDS dataset `name` into `data_dir` from the source files in `directory`."""
  registered_cls = tfds.builder_cls(name)

  class LocalFilesBuilder(registered_cls, skip_registration=True):

    def _split_generators(self, dl_manager, *args, **kwargs):
      return super()._split_generators(
          _LocalFilesDownloadManager(dl_manager, directory), *args, **kwargs)

  LocalFilesBuilder.name = registered_cls.name
  LocalFilesBuilder(data_dir=data_dir).download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))

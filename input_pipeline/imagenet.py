"""ImageNet (ILSVRC2012) from TFDS's `imagenet2012`, prepared from the two official tars.

  python -m input_pipeline.imagenet --data_dir=~/tensorflow_datasets   # prepare it once

runs TFDS's own builder on <data_dir>/downloads/manual/ILSVRC2012_img_{train,val}.tar, as
`tfds build imagenet2012` does (whose command line, in TFDS 4.9.10, fails to start without
apache-beam installed).

Images stay JPEG bytes (tfds_source.EncodedImages) until a map decodes only the window each crop
needs (photographs.py, preprocessing.py); shuffling happens on those bytes (about 110 kB an image),
with the file order shuffled by the same seed as the examples, so an epoch's order is a function of
(seed, epoch, shard) as for every source.
"""

import os
import sys
import tarfile

import tensorflow_datasets as tfds

from input_pipeline import base, local_files, photographs, sharded, tfds_source

NAME = 'imagenet2012'
TARS = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')
# Per-channel mean and standard deviation of ImageNet's training pixels (0-255), as torchvision.
SPEC = base.DatasetSpec(num_classes=1000, image_shape=(0, 0, 3), train_split='train',
                        eval_split='validation', mean=(123.675, 116.28, 103.53),
                        std=(58.395, 57.12, 57.375))
CLASS_NAMES_FILE = os.path.join(os.path.dirname(__file__), 'imagenet_classes.txt')


def class_names() -> list[str]:
  """The synset words by label (`imagenet_classes.txt`: TFDS's synset order, torchvision's and
  Keras' `decode_predictions`' names), as predict.py prints them."""
  with open(CLASS_NAMES_FILE, encoding='utf-8') as f:
    return [line.rstrip('\n').split('\t')[1] for line in f]


def manual_dir(data_dir: str) -> str:
  """Where TFDS looks for the tars: <data_dir>/downloads/manual."""
  return os.path.join(data_dir, 'downloads', 'manual')


def prepared_builder(data_dir: str | None, process_count: int) -> tfds.core.DatasetBuilder:
  """The `imagenet2012` builder, prepared from the manual tars on first use (single process)."""
  data_dir = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
  builder = tfds.builder(NAME, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  manual = manual_dir(data_dir)
  missing = [tar for tar in TARS if not os.path.isfile(os.path.join(manual, tar))]
  build = f'python -m input_pipeline.imagenet --data_dir={data_dir}'
  if missing:
    raise base.DataError(
        f'{NAME} is not prepared in {data_dir} and {" and ".join(missing)} '
        f'{"is" if len(missing) == 1 else "are"} missing from {manual}: download '
        f'{" and ".join(TARS)} from https://image-net.org/download-images (free registration) '
        f'into that directory, then run `{build}` (README, "ImageNet")')
  if process_count > 1:
    raise base.DataError(f'{NAME} is not prepared in {data_dir}; several processes cannot prepare '
                         f'it together: run `{build}` once first')
  for tar in TARS:  # Else a bad validation tar is found after the hours the training one takes.
    if not tarfile.is_tarfile(os.path.join(manual, tar)):
      raise base.DataError(f'{os.path.join(manual, tar)} is not a tar archive: download it again '
                           'from https://image-net.org/download-images (nothing was prepared)')
  print(f'preparing {NAME} in {data_dir} from the tars in {manual} (one to two hours for the '
        f'full dataset; `{build}` does it ahead of time)', flush=True)
  with local_files.bad_files_reported(NAME, manual):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual, try_download_gcs=False))
  return tfds.builder(NAME, data_dir=data_dir)


@base.register('imagenet2012')
class ImageNetSource(sharded.ShardedSource):
  """`tfds_source.EncodedImages` of imagenet2012, turned into examples by `Photographs`."""
  EVAL_VIEWS = photographs.EVAL_VIEWS
  PHOTOGRAPHS = True

  @classmethod
  def from_config(cls, name, config, *, seed, process_index, process_count, num_shards):
    del name
    examples = photographs.Photographs(config)
    builder = prepared_builder(config.data_dir, process_count)
    parts = tfds_source.split_parts(builder, SPEC, process_index=process_index,
                                    process_count=process_count, num_shards=num_shards)
    records = tfds_source.EncodedImages(builder, parts, config.shuffle_buffer_size)
    return cls(SPEC, class_names(), records, examples, seed=seed)

  @classmethod
  def known_record(cls, name, config):
    return {'mean': SPEC.mean, 'std': SPEC.std, 'class_names': class_names()}


def main(argv: list[str]) -> None:
  flags = dict(arg[2:].split('=', 1) for arg in argv[1:] if arg.startswith('--') and '=' in arg)
  if len(flags) != len(argv) - 1 or set(flags) - {'data_dir'}:
    sys.exit('usage: python -m input_pipeline.imagenet [--data_dir=DIR]')
  try:
    builder = prepared_builder(flags.get('data_dir'), process_count=1)
  except base.DataError as e:
    sys.exit(f'error: {e}')
  splits = builder.info.splits
  print(f'{NAME} is prepared in {builder.data_dir}: {splits["train"].num_examples:,} training and '
        f'{splits["validation"].num_examples:,} validation images')


if __name__ == '__main__':
  main(sys.argv)

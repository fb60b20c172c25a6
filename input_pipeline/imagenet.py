"""ImageNet (ILSVRC2012) from TFDS's `imagenet2012`, prepared from the two official tars.

  python -m input_pipeline.imagenet --data_dir=~/tensorflow_datasets   # prepare it once

runs TFDS's own builder on <data_dir>/downloads/manual/ILSVRC2012_img_{train,val}.tar, as
`tfds build imagenet2012` does (whose command line, in TFDS 4.9.10, fails to start without
apache-beam installed).

Images stay JPEG bytes until a map decodes only the window each crop needs (preprocessing.py);
shuffling happens on those bytes (about 110 kB an image), with the file order shuffled by the same
seed as the examples, so an epoch's order is a function of (seed, epoch, shard) as for every source.
"""

import os
import sys

import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import base, preprocessing
from input_pipeline.tfds_source import TFDSSource, parallel_map

NAME = 'imagenet2012'
TARS = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')
# Per-channel mean and standard deviation of ImageNet's training pixels (0-255), as torchvision.
SPEC = base.DatasetSpec(num_classes=1000, image_shape=(0, 0, 3), train_split='train',
                        eval_split='validation', mean=(123.675, 116.28, 103.53),
                        std=(58.395, 57.12, 57.375))
TRAIN_CROPS = ('inception', 'scaled')
EVAL_CROPS = (1, 10)


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
  print(f'preparing {NAME} in {data_dir} from the tars in {manual} (one to two hours for the '
        f'full dataset; `{build}` does it ahead of time)', flush=True)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual, try_download_gcs=False))
  return tfds.builder(NAME, data_dir=data_dir)


def eval_resize_size(image_size: int, eval_resize: int) -> int:
  """`eval_resize`, or -1 for the common ratio 224/256 = 0.875 (256 for 224, 342 for 299)."""
  return eval_resize if eval_resize > 0 else round(image_size / 0.875)


class ImageNetSource(TFDSSource):

  def __init__(self, *, data_dir: str | None, image_size: int, shuffle_buffer_size: int,
               train_crop: str, crop_area_range, train_scale_range, pca_lighting: float,
               eval_resize: int, eval_antialias: bool, eval_crops: int, process_count: int,
               **kwargs):
    if train_crop not in TRAIN_CROPS:
      raise base.DataError(f'unknown train_crop {train_crop!r}; known: {", ".join(TRAIN_CROPS)}')
    if eval_crops not in EVAL_CROPS:
      raise base.DataError(f'crops={eval_crops}: evaluation takes 1 (centre) or 10 crops')
    low, high = train_scale_range
    if train_crop == 'scaled' and not image_size <= low <= high:
      raise base.DataError(f'train_scale_range={tuple(train_scale_range)} must be an interval '
                           f'of shorter sides from image_size={image_size} up')
    if not 0 < crop_area_range[0] <= crop_area_range[1] <= 1:
      raise base.DataError(f'crop_area_range={tuple(crop_area_range)} must be fractions of the '
                           'image area, smallest first')
    self._eval_resize = eval_resize_size(image_size, eval_resize)
    if self._eval_resize < image_size:
      raise base.DataError(f'eval_resize={self._eval_resize} is smaller than the '
                           f'{image_size}-pixel crop')
    super().__init__(prepared_builder(data_dir, process_count), SPEC,
                     image_shape=(image_size, image_size, 3), process_count=process_count,
                     **kwargs)
    self._shuffle_buffer_size = shuffle_buffer_size
    self._image_size = image_size
    self._eval_crops = eval_crops
    self._eval_antialias = eval_antialias
    self._augment = dict(crop=train_crop, size=image_size, area_range=tuple(crop_area_range),
                         scale_range=tuple(train_scale_range), lighting=pca_lighting)

  def _records(self, split, shuffle_seed):
    shuffle = shuffle_seed is not None
    ds = self._builder.as_dataset(
        split=split, shuffle_files=shuffle, decoders={'image': tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed))
    ds = parallel_map(ds, lambda record: {'image': record['image'],
                                          'label': tf.cast(record['label'], tf.int32)})
    if shuffle:
      ds = ds.shuffle(self._shuffle_buffer_size, seed=shuffle_seed, reshuffle_each_iteration=False)
    return ds

  def _train_examples(self, records, seed, first):
    def example(position, record):
      seeds = tf.stack([tf.constant(seed, tf.int64), position])
      return {**preprocessing.train_example(record['image'], seeds, **self._augment),
              'label': record['label']}

    return parallel_map(records.enumerate().skip(first), example)

  def _eval_examples(self, records):
    crop = preprocessing.ten_crops if self._eval_crops == 10 else preprocessing.center_crop
    return parallel_map(records, lambda record: {
        'image': crop(record['image'], self._image_size, self._eval_resize,
                      self._eval_antialias),
        'label': record['label']})


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

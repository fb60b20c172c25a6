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
from input_pipeline.tfds_source import ShardedSource, TFDSSource, parallel_map

NAME = 'imagenet2012'
TARS = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')
# Per-channel mean and standard deviation of ImageNet's training pixels (0-255), as torchvision.
SPEC = base.DatasetSpec(num_classes=1000, image_shape=(0, 0, 3), train_split='train',
                        eval_split='validation', mean=(123.675, 116.28, 103.53),
                        std=(58.395, 57.12, 57.375))
TRAIN_CROPS = ('inception', 'scaled')
TRAIN_INTERPOLATIONS = ('bilinear', 'random')
COLOR_DISTORTIONS = ('none', *preprocessing.COLOR_DISTORTIONS)
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
  print(f'preparing {NAME} in {data_dir} from the tars in {manual} (one to two hours for the '
        f'full dataset; `{build}` does it ahead of time)', flush=True)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual, try_download_gcs=False))
  return tfds.builder(NAME, data_dir=data_dir)


class Photographs:
  """ImageNet's preprocessing of encoded photographs (preprocessing.py), set up from the config
  and checked before any data is read; every source of photographs uses it (imagenet2012,
  image_folder): training crops with flips and colour noise, and every `base.EvalView`."""

  def __init__(self, config):
    if config.train_crop not in TRAIN_CROPS:
      raise base.DataError(f'unknown train_crop {config.train_crop!r}; known: '
                           f'{", ".join(TRAIN_CROPS)}')
    if config.train_interpolation not in TRAIN_INTERPOLATIONS:
      raise base.DataError(f'unknown train_interpolation {config.train_interpolation!r}; known: '
                           f'{", ".join(TRAIN_INTERPOLATIONS)}')
    if config.color_distortion not in COLOR_DISTORTIONS:
      raise base.DataError(f'unknown color_distortion {config.color_distortion!r}; known: '
                           f'{", ".join(COLOR_DISTORTIONS)}')
    low, high = config.train_scale_range
    size = config.image_size
    if config.train_crop == 'scaled' and not size <= low <= high:
      raise base.DataError(f'train_scale_range={tuple(config.train_scale_range)} must be an '
                           f'interval of shorter sides from image_size={size} up')
    area = config.crop_area_range
    if not 0 < area[0] <= area[1] <= 1:
      raise base.DataError(f'crop_area_range={tuple(area)} must be fractions of the image area, '
                           'smallest first')
    self._eval_resize = base.eval_resize_size(size, config.eval_resize)
    if self._eval_resize < size:
      raise base.DataError(f'eval_resize={self._eval_resize} is smaller than the {size}-pixel '
                           'crop')
    self.image_shape = (size, size, 3)
    self._antialias = config.eval_antialias
    self._augment = dict(crop=config.train_crop, size=size, area_range=tuple(area),
                         scale_range=(low, high), lighting=config.pca_lighting,
                         interpolation=config.train_interpolation,
                         color_distortion=config.color_distortion)

  def train_examples(self, records: tf.data.Dataset, seed: int, first: int) -> tf.data.Dataset:
    def example(position, record):
      seeds = tf.stack([tf.constant(seed, tf.int64), position])
      return {**preprocessing.train_example(record['image'], seeds, **self._augment),
              'label': record['label']}

    return parallel_map(records.enumerate().skip(first), example)

  def eval_examples(self, records: tf.data.Dataset, view: base.EvalView) -> tf.data.Dataset:
    size, scale = self.image_shape[0], view.scale or self._eval_resize
    if scale < size:
      raise base.DataError(f'evaluation at shorter side {scale} is smaller than the {size}-pixel '
                           'crop')
    crop = {
        'centre': lambda image: preprocessing.center_crop(image, size, scale, self._antialias),
        'five': lambda image: preprocessing.five_crops(image, size, scale, self._antialias),
        'grid': lambda image: preprocessing.grid_crops(image, size, scale, self._antialias),
        'googlenet': lambda image: preprocessing.googlenet_crops(image, size, scale,
                                                                 self._antialias),
        'dense': lambda image: preprocessing.dense_image(image, scale, base.DENSE_MULTIPLE,
                                                         self._antialias),
    }[view.crops]
    return parallel_map(records, lambda record: {'image': crop(record['image']),
                                                 'label': record['label']})


class PhotographSource(ShardedSource):
  """A source of encoded photographs, turned into examples by its `Photographs`."""
  EVAL_VIEWS = ('centre', 'five', 'grid', 'googlenet', 'dense')
  PHOTOGRAPHS = True
  _photographs: Photographs

  def _train_examples(self, records, seed, first):
    return self._photographs.train_examples(records, seed, first)

  def _eval_examples(self, records, view):
    return self._photographs.eval_examples(records, view)


@base.register('imagenet2012')
class ImageNetSource(PhotographSource, TFDSSource):

  @classmethod
  def known_record(cls, name, config):
    return {'mean': SPEC.mean, 'std': SPEC.std, 'class_names': class_names()}

  @classmethod
  def from_config(cls, name, config, **kwargs):
    del name
    return cls(Photographs(config), data_dir=config.data_dir,
               shuffle_buffer_size=config.shuffle_buffer_size, **kwargs)

  def __init__(self, photographs: Photographs, *, data_dir: str | None,
               shuffle_buffer_size: int, process_count: int, **kwargs):
    super().__init__(prepared_builder(data_dir, process_count), SPEC,
                     image_shape=photographs.image_shape, process_count=process_count, **kwargs)
    self.class_names = class_names()
    self._photographs = photographs
    self._shuffle_buffer_size = shuffle_buffer_size

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

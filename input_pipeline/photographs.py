"""Photographs of any size, as ImageNet is trained and evaluated: the examples part that every
source of encoded photographs holds (imagenet.py, image_folder.py).

Training crops with flips and colour noise are preprocessing.py's ops, and every `base.EvalView`
is a registered view's (input_pipeline/views/); this sets them up from the config and checks it
before any data is read.
"""

import tensorflow as tf

from input_pipeline import base, preprocessing, views
from input_pipeline.sharded import parallel_map

TRAIN_CROPS = ('inception', 'slim', 'torchvision', 'scaled')
TRAIN_INTERPOLATIONS = ('bilinear', 'random')
COLOR_DISTORTIONS = ('none', *preprocessing.COLOR_DISTORTIONS)
EVAL_CROPS = ('window', 'torchvision')  # `preprocessing.center_crop`'s.
# The kinds of `base.EvalView` that `Photographs.eval_examples` shows, every registered one: a
# photograph source's `EVAL_VIEWS`.
EVAL_VIEWS = views.names()


class Photographs:
  """Encoded photographs (`image`: JPEG, PNG, GIF or BMP bytes) turned into examples at the
  config's `image_size` (`sharded.Examples`)."""

  def __init__(self, config):
    for field, known in (('train_crop', TRAIN_CROPS), ('train_interpolation',
                                                       TRAIN_INTERPOLATIONS),
                         ('color_distortion', COLOR_DISTORTIONS), ('eval_crop', EVAL_CROPS)):
      if config[field] not in known:
        raise base.DataError(f'unknown {field} {config[field]!r}; known: {", ".join(known)}')
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
    self._resize = dict(antialias=config.eval_antialias, crop=config.eval_crop)
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
    prepare = views.get(view.crops).prepare
    return parallel_map(records, lambda record: {
        'image': prepare(record['image'], size, scale, **self._resize), 'label': record['label']})

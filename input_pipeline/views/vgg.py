"""VGG's multi-crop evaluation (Simonyan & Zisserman, 2015, section 3.2, after Szegedy et al.)."""

from input_pipeline.views.registry import register


@register('grid', crops=50, per_image=25, mirrors=True, paper='VGG',
          description="VGG's 50 crops (a 5 x 5 grid, and mirrors)")
def grid_crops(encoded, size: int, shorter: int, antialias: bool = False,
               crop: str = 'window'):
  """The crops before their mirrors: a 5 x 5 regular grid of size x size crops over the whole
  image rescaled to shorter side `shorter`, corners included. Returns [25, size, size, 3], row by
  row. `crop` is not used: the paper's geometry."""
  del crop
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from input_pipeline import preprocessing as pp  # pylint: disable=import-outside-toplevel
  image = pp.rescale(pp.decode(encoded), shorter, antialias=antialias)
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  return tf.stack([image[(height - size) * i // 4:(height - size) * i // 4 + size,
                         (width - size) * j // 4:(width - size) * j // 4 + size]
                   for i in range(5) for j in range(5)])

"""GoogLeNet's 144-crop testing (Szegedy et al., 2015, section 7): 4 scales x 3 squares x 6 crops,
and their mirrors."""

from input_pipeline.views.registry import register


@register('googlenet', crops=144, per_image=18, mirrors=True, paper='GoogLeNet',
          paper_scales=(256, 288, 320, 352),
          description="GoogLeNet's 144 crops (3 squares x 6 crops x 4 scales, and mirrors)")
def googlenet_crops(encoded, size: int, shorter: int, antialias: bool = False,
                    crop: str = 'window'):
  """One scale before the mirrors: the image rescaled to shorter side `shorter`, its left, centre
  and right squares (top, centre and bottom for portrait images), and of each square the four
  corner and the centre size x size crops and the square itself resized to size x size. Returns
  [18, size, size, 3]: per square, the five crops then the resized square. `crop` is not used:
  the paper's geometry."""
  del crop
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from input_pipeline import preprocessing as pp  # pylint: disable=import-outside-toplevel
  image = pp.rescale(pp.decode(encoded), shorter, antialias=antialias)
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  squares = []
  for part in range(3):  # Left (top), centre, right (bottom).
    y, x = (height - shorter) * part // 2, (width - shorter) * part // 2
    square = image[y:y + shorter, x:x + shorter]
    squares += [pp.corners_and_centre(square, size), pp.resize(square, size, size, antialias)[None]]
  return tf.concat(squares, axis=0)

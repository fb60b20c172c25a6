"""AlexNet's 10 test patches (Krizhevsky et al., 2012, section 4.1)."""

from input_pipeline.views.registry import register


@register('five', crops=10, per_image=5, mirrors=True, paper='AlexNet',
          description="AlexNet's 10 crops (4 corners and centre, and mirrors)")
def five_crops(encoded, size: int, shorter: int, antialias: bool = False,
               crop: str = 'window'):
  """The patches before their mirrors: the four corner and the centre size x size patches of the
  central shorter x shorter square of the image rescaled to shorter side `shorter`. Returns
  [5, size, size, 3]. `crop` is not used: the paper's geometry."""
  del crop
  from input_pipeline import preprocessing as pp  # pylint: disable=import-outside-toplevel
  square = pp.decode_window(encoded, lambda shape: pp.central_window(shape, 1.0), shorter,
                            antialias)
  return pp.corners_and_centre(square, size)

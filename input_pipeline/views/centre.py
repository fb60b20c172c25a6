"""The single centre crop: the common protocol (224 of 256), and training's evaluation."""

from input_pipeline.views.registry import register


@register('centre', crops=1, per_image=1, description='the centre crop')
def center_crop(encoded, size: int, shorter: int, antialias: bool = False, crop: str = 'window'):
  """The centre size x size of the image rescaled to shorter side `shorter`, cut as `crop` says
  (`preprocessing.center_crop`, which predict.py's decoded images share). Returns
  [size, size, 3]."""
  from input_pipeline import preprocessing  # pylint: disable=import-outside-toplevel
  return preprocessing.center_crop(encoded, size, shorter, antialias, crop)

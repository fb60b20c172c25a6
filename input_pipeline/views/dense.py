"""Dense (fully-convolutional) testing of the whole image: VGG's (section 3.2) and ResNet's
multi-scale testing (section 3.4), asked for with --dense."""

from input_pipeline.views.registry import DENSE, register


@register(DENSE, crops=None, per_image=1, description='dense')
def dense_image(encoded, size: int, shorter: int, antialias: bool = False,
                crop: str = 'window'):
  """The whole image rescaled to shorter side `shorter`, its longer side rounded to a multiple of
  `base.DENSE_MULTIPLE` (the networks' total stride): [h, w, 3], h and w varying from image to
  image. `size` is not used: the model slides its windows over the whole image, nor `crop`."""
  del size, crop
  from input_pipeline import base, preprocessing  # pylint: disable=import-outside-toplevel
  return preprocessing.rescale(preprocessing.decode(encoded), shorter, base.DENSE_MULTIPLE,
                               antialias)

r"""VGG configuration E (Simonyan & Zisserman, 2015): `python train.py --config=configs/vgg19.py`.

Reported: 27.3% top-1 / 9.0% top-5 validation error. Recipe: `default.get_vgg_config`.
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_vgg_config('vgg19', top1_error=27.3, top5_error=9.0)

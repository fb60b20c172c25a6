r"""VGG configuration D (Simonyan & Zisserman, 2015): `python train.py --config=configs/vgg16.py`.

Reported: 27.0% top-1 / 8.8% top-5 validation error. Recipe: `default.get_vgg_config`.
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_vgg_config('vgg16', top1_error=27.0, top5_error=8.8)

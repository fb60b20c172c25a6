r"""VGG configuration C (Simonyan & Zisserman, 2015): `python train.py --config=configs/vgg16c.py`.

Reported: 28.1% top-1 / 9.4% top-5 validation error. Recipe: `default.get_vgg_config`.
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_vgg_config('vgg16c', top1_error=28.1, top5_error=9.4)

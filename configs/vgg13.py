r"""VGG configuration B (Simonyan & Zisserman, 2015): `python train.py --config=configs/vgg13.py`.

Reported: 28.7% top-1 / 9.9% top-5 validation error. Recipe: `default.get_vgg_config`.
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_vgg_config('vgg13', top1_error=28.7, top5_error=9.9)

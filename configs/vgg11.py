r"""VGG configuration A (Simonyan & Zisserman, 2015): `python train.py --config=configs/vgg11.py`.

Reported: 29.6% top-1 / 10.4% top-5 validation error. Recipe: `default.get_vgg_config`.
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_vgg_config('vgg11', top1_error=29.6, top5_error=10.4)

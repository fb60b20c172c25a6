r"""VGG configuration A-LRN (Simonyan & Zisserman, 2015): `python train.py --config=configs/vgg11_lrn.py`.

Reported: 29.7% top-1 / 10.5% top-5 validation error. Recipe: `default.get_vgg_config`.
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_vgg_config('vgg11_lrn', top1_error=29.7, top5_error=10.5)

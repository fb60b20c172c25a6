r"""ResNet-101 (He et al., 2016).

  python train.py --config=configs/resnet101.py --workdir=runs/resnet101
  python -m cnns.summary --config=configs/resnet101.py

Reported: 21.75% top-1 / 6.05% top-5 validation error, 10-crop testing (Table 3).
Recipe: `default.get_resnet_config`. Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_resnet_config(101, top1_error=21.75, top5_error=6.05,
                                   protocol='10 crops, single model (Table 3)')

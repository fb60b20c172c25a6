r"""ResNet-50 (He et al., 2016).

  python train.py --config=configs/resnet50.py --workdir=runs/resnet50
  python -m cnns.summary --config=configs/resnet50.py

Reported: 22.85% top-1 / 6.71% top-5 validation error, 10-crop testing (Table 3).
Recipe: `default.get_resnet_config`. Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_resnet_config(50, top1_error=22.85, top5_error=6.71,
                                   protocol='10 crops, single model (Table 3)')

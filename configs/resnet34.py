r"""ResNet-34 (He et al., 2016).

  python train.py --config=configs/resnet34.py --workdir=runs/resnet34
  python -m cnns.summary --config=configs/resnet34.py

Reported: 24.52% top-1 / 7.46% top-5 validation error, 10-crop testing, option B (Table 3).
Recipe: `default.get_resnet_config`. Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_resnet_config(34, top1_error=24.52, top5_error=7.46,
                                   protocol='10 crops, single model, option B (Table 3)')

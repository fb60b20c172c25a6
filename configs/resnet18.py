r"""ResNet-18 (He et al., 2016).

  python train.py --config=configs/resnet18.py --workdir=runs/resnet18
  python -m cnns.summary --config=configs/resnet18.py

Reported: 27.88% top-1 validation error, 10-crop testing (Table 2, with the zero-padding
shortcuts of option A; the projections of option B used here have no 18-layer result in the
paper). No top-5 is given.
Recipe: `default.get_resnet_config`. Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_resnet_config(
      18, top1_error=27.88, top5_error=None,
      protocol='10 crops, single model; option A shortcuts (Table 2), no top-5 given')

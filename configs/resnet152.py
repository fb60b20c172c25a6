r"""ResNet-152 (He et al., 2016).

  python train.py --config=configs/resnet152.py --workdir=runs/resnet152
  python -m cnns.summary --config=configs/resnet152.py

Reported: 21.43% top-1 / 5.71% top-5 validation error, 10-crop testing (Table 3); 19.38 / 4.49
with multi-scale fully convolutional testing (Table 4).
Recipe: `default.get_resnet_config`. Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_resnet_config(152, top1_error=21.43, top5_error=5.71,
                                   protocol='10 crops, single model (Table 3); multi-scale fully '
                                            'convolutional testing: 19.38 / 4.49 (Table 4)')

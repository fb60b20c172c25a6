r"""VGG configuration B (Simonyan & Zisserman, 2015), 224x224 crops.

  python train.py --config=configs/vgg13.py --workdir=runs/vgg13
  python -m cnns.summary --config=configs/vgg13.py

Paper recipe (section 3.1): batch 256, SGD momentum 0.9, weight decay 5e-4, dropout 0.5 on fc6 and
fc7, learning rate 0.01 divided by 10 when the validation accuracy stopped improving (three times,
74 epochs), 224x224 crops of images rescaled to a shorter side S = 256 (or jittered in [256, 512]).
The decay epochs are not given; these follow the common reimplementation schedule of 30/60.
Reported (Table 3: single net, single test scale Q = S = 256, dense evaluation):
28.7% top-1 / 9.9% top-5 validation error.
Measured by this project: not yet (the ImageNet pipeline is an open issue).
"""

from configs import default


def get_config():
  return default.get_imagenet_config(
      'vgg13', image_size=224, batch_size=256, learning_rate=0.01, lr_decay_epochs=(30, 60),
      num_epochs=74, weight_decay=5e-4, top1_error=28.7, top5_error=9.9,
      protocol='single net, single scale (Q = S = 256), dense evaluation (Table 3)')

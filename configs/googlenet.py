r"""GoogLeNet (Szegedy et al., 2015) with its auxiliary classifiers (loss weight 0.3).

  python train.py --config=configs/googlenet.py --workdir=runs/googlenet
  python -m cnns.summary --config=configs/googlenet.py

Paper recipe (section 6): SGD momentum 0.9, learning rate decreased by 4% every 8 epochs, dropout
0.4 (0.7 in the auxiliary heads), auxiliary losses weighted by 0.3, photometric distortions and
crops of 8-100% of the image area with aspect ratios in [3/4, 4/3]. The paper trained
asynchronously and states no batch size, base rate, weight decay or length; these follow BVLC's
Caffe reproduction (`bvlc_googlenet/solver.prototxt`, which implements the 4%-every-8-epochs
step): batch 32, learning rate 0.01, weight decay 2e-4, 10M iterations (250 epochs).
Reported (Table 3, top-5 only): 10.07% for one model and one crop, 9.15% with 10 crops, 7.89%
with 144 crops (the seed's 7.9%); 6.67% for 7 models x 144 crops.
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_imagenet_config(
      'googlenet', image_size=224, batch_size=32, learning_rate=0.01, num_epochs=250,
      weight_decay=2e-4, top1_error=None, top5_error=9.15,
      protocol='1 model, 10 crops (Table 3); 1 crop: 10.07, 144 crops: 7.89 top-5', crops=10,
      lr_schedule='exponential', lr_decay_every_epochs=8.0, lr_decay_factor=1 / 0.96,
      aux_loss_weight=0.3)

r"""GoogLeNet (Szegedy et al., 2015) with its auxiliary classifiers (loss weight 0.3).

  python train.py --config=configs/googlenet.py --workdir=runs/googlenet
  python -m cnns.summary --config=configs/googlenet.py

Paper recipe (section 6): SGD momentum 0.9, learning rate decreased by 4% every 8 epochs, dropout
0.4 (0.7 in the auxiliary heads), auxiliary losses weighted by 0.3, photometric distortions and
crops of 8-100% of the image area with aspect ratios in [3/4, 4/3]. The distortions are those
of Howard (2013) the paper cites: contrast, brightness and colour enhanced as PIL does by factors in
[0.5, 1.5] in a random order (`color_distortion='howard'`), and each crop is resized by bilinear,
area, nearest-neighbour or cubic interpolation with equal probability
(`train_interpolation='random'`). The paper trained
asynchronously and states no batch size, base rate, weight decay or length; these follow BVLC's
Caffe reproduction (`bvlc_googlenet/solver.prototxt`, which implements the 4%-every-8-epochs
step): batch 32, learning rate 0.01, weight decay 2e-4, 10M iterations (250 epochs).
"Polyak averaging was used to create the final model used at inference time": an exponential
moving average of the weights with decay 0.9999, the authors' TensorFlow Inception training's
(`MOVING_AVERAGE_DECAY` in tensorflow/models inception/inception_model.py), which train-time
evaluations use.
Reported (Table 3, top-5 only): 7.89% for one model with 144 crops (the seed's 7.9%; evaluate.py's
default for this config), 10.07% with one crop (`--crops=1`), 9.15% with 10 (`--crops=10`);
6.67% for 7 models x 144 crops (`--ensemble=...`).
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_imagenet_config(
      'googlenet', image_size=224, batch_size=32, learning_rate=0.01, num_epochs=250,
      weight_decay=2e-4, top1_error=None, top5_error=7.89,
      protocol='1 model, 144 crops (Table 3); 1 crop: 10.07, 10 crops: 9.15 top-5', crops=144,
      lr_schedule='exponential', lr_decay_every_epochs=8.0, lr_decay_factor=1 / 0.96,
      ema_decay=0.9999,
      aux_loss_weight=0.3, color_distortion='howard', train_interpolation='random')

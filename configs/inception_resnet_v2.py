r"""Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi, 2017), 299x299 crops.

  python train.py --config=configs/inception_resnet_v2.py --workdir=runs/inception_resnet_v2
  python -m cnns.summary --config=configs/inception_resnet_v2.py

Paper recipe (section 4): RMSProp with decay 0.9 and epsilon 1.0, learning rate 0.045 decayed by
0.94 every two epochs, dropout keeping 80%, 20 asynchronous replicas. The paper states no batch
size, momentum, weight decay or length; these follow the authors' TF-slim release
(`train_image_classifier.py` and the model's arg scope): batch 32, RMSProp momentum 0.9, weight
decay 4e-5; 100 epochs is this project's choice (the rate is then 2% of its start). Evaluations
use "a running average of the parameters": an exponential moving average with decay 0.9999, the
authors' TensorFlow Inception training's (`MOVING_AVERAGE_DECAY` in tensorflow/models
inception/inception_model.py). Colour
distortion as slim's `distort_color` (brightness, saturation, hue and contrast in one of four
orders: `color_distortion='inception'`); slim's training script keeps `fast_mode` at its default,
which resizes crops bilinearly only (so `train_interpolation` stays 'bilinear') and in fact
distorts only brightness and saturation.
Reported: 19.9% top-1 / 4.9% top-5 validation error, one model and one crop (Table 2, on "the
non-blacklisted subset" of the validation set, which the paper does not list: evaluate.py counts
all 50,000 images); 17.8 / 3.7 with 144 crops (Table 4, all 50,000 images: `--crops=144`, whose
geometry the paper does not give: GoogLeNet's, scaled from 224 to 299 pixels); 18.7 / 4.1 with 12
crops (Table 3), a protocol the paper names but does not describe, so evaluate.py has none.
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_imagenet_config(
      'inception_resnet_v2', image_size=299, batch_size=32, learning_rate=0.045,
      num_epochs=100, weight_decay=4e-5, top1_error=19.9, top5_error=4.9,
      protocol='1 model, 1 crop (Table 2, on the non-blacklisted validation images); 144 crops: '
               '17.8 / 3.7, 12 crops: 18.7 / 4.1', crops=1,
      optimizer='rmsprop', momentum=0.9, rmsprop_decay=0.9, rmsprop_epsilon=1.0,
      lr_schedule='exponential', lr_decay_every_epochs=2.0, lr_decay_factor=1 / 0.94,
      ema_decay=0.9999,
      color_distortion='inception',
      model_kwargs={'repeats': (10, 20, 10)})  # (5, 10, 5): the paper's Figure 15.

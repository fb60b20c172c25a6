r"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012), single tower, 227x227 crops.

  python train.py --config=configs/alexnet.py --workdir=runs/alexnet
  python -m cnns.summary --config=configs/alexnet.py

Paper recipe: batch 128, SGD momentum 0.9, weight decay 5e-4, learning rate 0.01 divided by 10 when
the validation error stopped improving (three times in about 90 epochs), dropout 0.5, random
227x227 crops of 256x256 images with flips and PCA colour noise. That decay is
`lr_schedule='plateau'` on each epoch's validation top-1 error, at most 3 decays, 90 epochs. The
paper gives no patience: 5 epochs without a new best is this project's choice, long enough that
the error's epoch-to-epoch noise does not trigger a decay, short enough that three decays fit in
90 epochs.
Reported: 40.7% top-1 / 18.2% top-5 validation error for one CNN (averaging the predictions of 10
patches); 15.4% top-5 for an ensemble of 7 (with pre-training on the full ImageNet Fall 2011).
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_imagenet_config(
      'alexnet', image_size=227, batch_size=128, learning_rate=0.01, lr_schedule='plateau',
      plateau_patience=5, plateau_max_decays=3, num_epochs=90, weight_decay=5e-4,
      top1_error=40.7, top5_error=18.2,
      protocol='1 CNN, average of 10 patches (4 corners + centre, and mirrors)', crops=10,
      train_crop='scaled', train_scale_range=(256, 256), pca_lighting=0.1, eval_resize=256)

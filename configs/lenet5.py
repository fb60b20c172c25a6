r"""LeNet-5 on Fashion-MNIST (or MNIST), as the seed lecture draws it.

Command (CPU is enough):

  python train.py --config=configs/lenet5.py --workdir=runs/lenet5

Reported: LeCun et al. (1998) give 0.95% test error on MNIST (99.05% accuracy) for LeNet-5 trained
20 epochs without distortions; Fashion-MNIST's authors list about 89-91% for small CNNs.

Measured by this project: see README.md ("LeNet-5 on Fashion-MNIST").

The paper trained with a diagonal Levenberg-Marquardt method; this recipe is the common modern
choice: SGD with Nesterov momentum 0.9, batch 128, cosine decay from 0.05 with one warm-up epoch,
L2 weight decay 5e-4 on kernels, 10 epochs.
"""

from configs import default


def get_config():
  config = default.get_base_config()
  config.model = 'lenet5'
  config.dataset = 'fashion_mnist'
  config.num_classes = 10
  config.in_channels = 1  # Grey-scale digits or clothes; --config.in_channels=3 for CIFAR-10.
  config.image_size = 32
  config.batch_size = 128
  config.num_epochs = 10
  config.optimizer = 'sgd'
  config.momentum = 0.9
  config.nesterov = True
  config.learning_rate = 0.05
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 1.0
  config.weight_decay = 5e-4
  config.lock()
  return config

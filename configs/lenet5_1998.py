r"""LeNet-5 as published in 1998, trained on MNIST as the paper trained it (cnns/lenet1998.py).

Command (the CPU is enough; MNIST's four original files in TFDS's manual folder,
~/tensorflow_datasets/downloads/manual/mnist/, or a TFDS that can download them):

  python train.py --config=configs/lenet5_1998.py --workdir=runs/lenet5_1998

Reported: LeCun et al. (1998), section III-C: 0.95% test error on MNIST's 10,000 test digits after
20 passes without distortions (0.35% training error), 0.8% with distortions.

Measured by this project: README.md ("Results").

The paper's training, section III-C and appendix C: 20 passes over the 60,000 training digits;
stochastic diagonal Levenberg-Marquardt (training/sdlm.py) with mu = 0.02 and the Hessian's
diagonal re-estimated on 500 samples before each pass; global learning rate 0.0005 for the first
two passes, 0.0002 for the next three, 0.0001 for the next three, 0.00005 for the next four and
0.00001 after; updates after every example (batch 1); no weight decay. The paper does not say in
what order it presented the digits: here each pass draws a new random order.

Batching: the paper's rates are for batch 1. `--config.batch_size=B` with `--config.learning_rate`
B x 0.0005 takes the same mean step per example with B times fewer updates (README, "Results",
shows what it changes).
"""

from configs import default


def get_config():
  config = default.get_base_config()
  config.model = 'lenet5_1998'
  config.dataset = 'mnist'
  config.num_classes = 10
  config.in_channels = 1
  config.image_size = 32  # MNIST's 28x28 digits in the middle of the paper's 32x32 field.
  config.input_convention = 'lecun98'  # Background -0.1, ink 1.175.
  config.batch_size = 1
  config.eval_batch_size = 1000
  config.num_epochs = 20
  config.optimizer = 'sdlm'
  config.sdlm_mu = 0.02
  config.sdlm_samples = 500
  config.learning_rate = 0.0005
  config.lr_schedule = 'step'
  config.lr_decay_epochs = (2, 5, 8, 12)
  config.lr_decay_factors = (2.5, 2.0, 2.0, 5.0)  # 0.0005, 0.0002, 0.0001, 0.00005, 0.00001.
  config.weight_decay = 0.0
  config.log_every_steps = 10_000
  config.checkpoint_every_steps = 60_000
  config.lock()
  return config

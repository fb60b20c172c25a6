"""Real data: LeNet-5 learns Fashion-MNIST, read offline from Debian's files, in a few epochs."""

from configs import lenet5
from app import loop


def test_lenet5_reaches_88_percent_on_fashion_mnist(tmp_path, fashion_mnist_dir):
  config = lenet5.get_config()
  config.data_dir = fashion_mnist_dir
  config.num_epochs = 2  # Measured: 89.1% (10 epochs: 91.5%, README).
  config.log_every_steps = 200
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary.last_eval['num_examples'] == 10_000
  assert summary.last_eval['top1_acc'] >= 0.88, summary

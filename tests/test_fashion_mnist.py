"""Real data: LeNet-5 learns Fashion-MNIST, read offline from Debian's files, in a few epochs."""

from tests.conftest import read_metrics


def test_lenet5_reaches_88_percent_on_fashion_mnist(lenet5_fashion_mnist):
  last = read_metrics(lenet5_fashion_mnist)[-1]  # 2 epochs of configs/lenet5.py (conftest.py).
  assert last['step'] == 2 * 468 and last['eval/num_examples'] == 10_000
  assert last['eval/top1_acc'] >= 0.88, last  # Measured: 89.1% (10 epochs: 91.5%, README).

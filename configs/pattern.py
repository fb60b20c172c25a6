r"""The lecture's typical ConvNet, [(CONV-RELU) x N - POOL?] x M - (FC-RELU) x K, SOFTMAX.

  python train.py --config=configs/pattern.py --workdir=runs/pattern
  python -m cnns.summary --config=configs/pattern.py --config.model_kwargs.convs_per_block=3
  python train.py --config=configs/pattern.py --config.model_kwargs.blocks=2 \
      --config.model_kwargs.widths='(16, 32)' --config.model_kwargs.fc_layers=0 --workdir=runs/p2

Every field of `model_kwargs` (cnns/pattern.py) can be overridden: convs_per_block (N),
blocks (M), fc_layers (K), widths (filters per block), fc_width, pool, kernel_size.
Defaults: N = 2, M = 3 (32, 64, 128 filters), K = 1 (256 units) on Fashion-MNIST padded to 32x32.
Recipe: as configs/lenet5.py (SGD with Nesterov momentum 0.9, cosine decay from 0.05 after one
warm-up epoch, weight decay 5e-4, batch 128, 10 epochs).
Reported: no paper; measured by this project: not yet.
"""

from configs import lenet5


def get_config():
  config = lenet5.get_config()
  config.unlock()
  config.model = 'pattern'
  config.model_kwargs = {'convs_per_block': 2, 'blocks': 3, 'fc_layers': 1,
                         'widths': (32, 64, 128), 'fc_width': 256, 'pool': True, 'kernel_size': 3}
  config.lock()
  return config

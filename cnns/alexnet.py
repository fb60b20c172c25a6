"""AlexNet (Krizhevsky et al., 2012), single tower, as the seed lecture lays it out.

227x227x3 -> conv1 96 11x11/4 -> 55x55x96 -> pool1 3x3/2 -> 27x27x96 -> norm1 -> conv2 256 5x5 pad 2
-> 27x27x256 -> pool2 -> 13x13x256 -> norm2 -> conv3 384, conv4 384, conv5 256 (3x3 pad 1) ->
pool3 -> 6x6x256 -> fc6 4096 -> fc7 4096 -> fc8 classes; ReLU after every conv and fc6/fc7,
dropout 0.5 before fc7 and fc8. The paper's two-GPU split (grouped conv2, conv4, conv5) is merged
into one tower as in the lecture and torchvision, so conv2/4/5 have twice the paper's weights.
The order pool -> norm follows the seed's table (the paper normalises before pooling).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register


@register('alexnet')
class AlexNet(nnx.Module):

  def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, image_size: int = 227,
               dropout_rate: float = 0.5, dtype=jnp.float32, rngs: nnx.Rngs):
    size = layers.check_fit('conv1', image_size, 11, 4, 0)
    for pool in ('pool1', 'pool2', 'pool3'):
      size = layers.check_fit(pool, size, 3, 2, 0)
    conv = lambda *args, **kw: layers.Conv(*args, dtype=dtype, rngs=rngs, **kw)
    self.conv1 = conv('conv1', in_channels, 96, 11, stride=4)
    self.norm1 = layers.LocalResponseNorm()
    self.conv2 = conv('conv2', 96, 256, 5, padding=2)
    self.norm2 = layers.LocalResponseNorm()
    self.conv3 = conv('conv3', 256, 384, 3, padding=1)
    self.conv4 = conv('conv4', 384, 384, 3, padding=1)
    self.conv5 = conv('conv5', 384, 256, 3, padding=1)
    self.fc6 = layers.Linear(size * size * 256, 4096, dtype=dtype, rngs=rngs)
    self.fc7 = layers.Linear(4096, 4096, dtype=dtype, rngs=rngs)
    self.fc8 = layers.Linear(4096, num_classes, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout_rate)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    x = record('conv1', nnx.relu(self.conv1(x)))
    x = record('pool1', layers.max_pool('pool1', x, 3, 2))
    x = record('norm1', self.norm1(x))
    x = record('conv2', nnx.relu(self.conv2(x)))
    x = record('pool2', layers.max_pool('pool2', x, 3, 2))
    x = record('norm2', self.norm2(x))
    x = record('conv3', nnx.relu(self.conv3(x)))
    x = record('conv4', nnx.relu(self.conv4(x)))
    x = record('conv5', nnx.relu(self.conv5(x)))
    x = record('pool3', layers.max_pool('pool3', x, 3, 2))
    x = x.reshape(x.shape[0], -1)
    x = record('fc6', nnx.relu(self.fc6(x)))
    x = record('fc7', nnx.relu(self.fc7(self.dropout(x, rngs=rngs))))
    return record('fc8', self.fc8(self.dropout(x, rngs=rngs)))

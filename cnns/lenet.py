"""LeNet-5 (LeCun et al., 1998) as the seed lecture draws it.

CONV-POOL-CONV-POOL-FC-FC-FC: 5x5 convolutions with stride 1 and no padding, 2x2 pooling with stride
2, on a 32x32 input (28x28 digits zero-padded to 32x32, as in the paper), then 120-84-classes units.
Volumes: 32x32x1 -> conv1 28x28x6 -> pool1 14x14x6 -> conv2 10x10x16 -> pool2 5x5x16 -> fc3 120 ->
fc4 84 -> fc5 classes; 61,706 trainable parameters for 10 classes.

Where the 1998 paper differs, this follows the lecture and the common modern reimplementations:
ReLU instead of the scaled tanh, max pooling instead of trainable sub-sampling, conv2 connected to
all six maps (the paper's sparse connection table saves 1,000 weights), softmax cross-entropy instead
of the RBF output layer.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register


class LeNet5(nnx.Module):
  """LeNet-5; parameters float32, computation in `dtype`."""

  def __init__(self, *, num_classes: int = 10, in_channels: int = 1, image_size: int = 32,
               dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    size = image_size
    for name, window, stride in (('conv1', 5, 1), ('pool1', 2, 2), ('conv2', 5, 1),
                                 ('pool2', 2, 2)):
      size = layers.check_fit(name, size, window, stride, 0)
    self.conv1 = layers.Conv('conv1', in_channels, 6, 5, dtype=dtype, rngs=rngs)
    self.conv2 = layers.Conv('conv2', 6, 16, 5, dtype=dtype, rngs=rngs)
    self.fc3 = layers.Linear(size * size * 16, 120, dtype=dtype, rngs=rngs)
    self.fc4 = layers.Linear(120, 84, dtype=dtype, rngs=rngs)
    self.fc5 = layers.Linear(84, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    del rngs  # No dropout in LeNet-5.
    x = record('conv1', nnx.relu(self.conv1(x)))
    x = record('pool1', layers.max_pool('pool1', x, 2, 2))
    x = record('conv2', nnx.relu(self.conv2(x)))
    x = record('pool2', layers.max_pool('pool2', x, 2, 2))
    x = x.reshape(x.shape[0], -1)
    x = record('fc3', nnx.relu(self.fc3(x)))
    x = record('fc4', nnx.relu(self.fc4(x)))
    return record('fc5', self.fc5(x))


@register
def lenet5(**kwargs) -> LeNet5:
  return LeNet5(**kwargs)

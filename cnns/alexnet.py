"""AlexNet (Krizhevsky et al., 2012) and ZFNet (Zeiler & Fergus, 2014), single tower, as the seed.

AlexNet: 227x227x3 -> conv1 96 11x11/4 -> 55x55x96 -> pool1 3x3/2 -> 27x27x96 -> norm1 -> conv2 256
5x5 pad 2 -> 27x27x256 -> pool2 -> 13x13x256 -> norm2 -> conv3 384, conv4 384, conv5 256 (3x3 pad 1)
-> pool3 -> 6x6x256 -> fc6 4096 -> fc7 4096 -> fc8 classes; ReLU after every conv and fc6/fc7,
dropout 0.5 before fc7 and fc8. The paper's two-GPU split (grouped conv2, conv4, conv5) is merged
into one tower as in the lecture and torchvision, so conv2/4/5 have twice the paper's weights.
The order pool -> norm follows the seed's table (the paper normalises before pooling).

ZFNet, the seed's "AlexNet with CONV1 7x7 stride 2 and CONV3,4,5 of 512, 1024, 512 filters" (the
ZF paper's Table 2 model (b)), also strides conv2 by 2 as the paper's Figure 3 does (without it
fc6 would see 13x13x512 and hold 354M weights). Figure 3 prints 224 -> 110 -> 55 -> 26 -> 13 -> 6,
which no symmetric integer padding produces (cuda-convnet floors); on the seed's 227 input,
conv1 unpadded and conv2 padded by 1 give 111 -> 55 -> 27 -> 13 -> 13 -> 6, every window fitting
exactly, the same 6x6 volume into fc6 and so every parameter count of the paper's model.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register


@dataclasses.dataclass(frozen=True)
class Geometry:
  conv1: tuple[int, int, int]  # kernel, stride, padding
  conv2: tuple[int, int, int]
  widths: tuple[int, ...]  # conv1 .. conv5 filters


ALEXNET = Geometry(conv1=(11, 4, 0), conv2=(5, 1, 2), widths=(96, 256, 384, 384, 256))
ZFNET = Geometry(conv1=(7, 2, 0), conv2=(5, 2, 1), widths=(96, 256, 512, 1024, 512))


class AlexNet(nnx.Module):

  def __init__(self, geometry: Geometry = ALEXNET, *, num_classes: int = 1000,
               in_channels: int = 3, image_size: int = 227, dropout_rate: float = 0.5,
               dtype=jnp.float32, rngs: nnx.Rngs):
    size = image_size
    for name, (window, stride, padding) in (('conv1', geometry.conv1), ('pool1', (3, 2, 0)),
                                            ('conv2', geometry.conv2), ('pool2', (3, 2, 0)),
                                            ('pool3', (3, 2, 0))):
      size = layers.check_fit(name, size, window, stride, padding)
    conv = functools.partial(layers.Conv, dtype=dtype, rngs=rngs)
    w1, w2, w3, w4, w5 = geometry.widths
    (k1, s1, p1), (k2, s2, p2) = geometry.conv1, geometry.conv2
    self.conv1 = conv('conv1', in_channels, w1, k1, s1, p1)
    self.norm1 = layers.LocalResponseNorm()
    self.conv2 = conv('conv2', w1, w2, k2, s2, p2)
    self.norm2 = layers.LocalResponseNorm()
    self.conv3 = conv('conv3', w2, w3, 3, padding=1)
    self.conv4 = conv('conv4', w3, w4, 3, padding=1)
    self.conv5 = conv('conv5', w4, w5, 3, padding=1)
    self.fc6 = layers.Linear(size * size * w5, 4096, dtype=dtype, rngs=rngs)
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


@register
def alexnet(**kwargs) -> AlexNet:
  return AlexNet(ALEXNET, **kwargs)


@register
def zfnet(**kwargs) -> AlexNet:
  return AlexNet(ZFNET, **kwargs)

"""VGG configurations A, A-LRN, B, C, D, E (Simonyan & Zisserman, 2015, Table 1).

3x3 convolutions with stride 1 and padding 1 (C also has 1x1 convolutions, padding 0), 2x2 max
pooling with stride 2 after each of five stages, then FC-4096, FC-4096, FC-classes with ReLU and
dropout 0.5 before fc7 and fc8. Layer names follow Caffe's released models (conv3_1, fc6, ...).
Parameter counts (with biases): A 132.9M, B 133.0M, C 133.6M, D 138.4M, E 143.7M (Table 2: 133,
133, 134, 138, 144); D has 138,344,128 weights without biases (the seed's count).

Kernels start from Flax's LeCun normal and biases at 0; `torchvision_init` draws them as
torchvision's VGG does, with which it trained its published weights: He normal (fan-out) for the
convolutions, N(0, 0.01) for the fully connected layers.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register

# Per stage: (filters, kernel sizes of its convolutions). 'lrn' marks A-LRN's LRN after conv1_1.
_STAGES = {
    'vgg11': ((64, (3,)), (128, (3,)), (256, (3, 3)), (512, (3, 3)), (512, (3, 3))),
    'vgg13': ((64, (3, 3)), (128, (3, 3)), (256, (3, 3)), (512, (3, 3)), (512, (3, 3))),
    'vgg16c': ((64, (3, 3)), (128, (3, 3)), (256, (3, 3, 1)), (512, (3, 3, 1)), (512, (3, 3, 1))),
    'vgg16': ((64, (3, 3)), (128, (3, 3)), (256, (3, 3, 3)), (512, (3, 3, 3)), (512, (3, 3, 3))),
    'vgg19': ((64, (3, 3)), (128, (3, 3)), (256, (3, 3, 3, 3)), (512, (3, 3, 3, 3)),
              (512, (3, 3, 3, 3))),
}
_he_normal = nnx.initializers.variance_scaling(2.0, 'fan_out', 'normal')
_normal_001 = nnx.initializers.normal(0.01)


class VGG(nnx.Module):

  def __init__(self, stages, *, lrn: bool = False, num_classes: int = 1000, in_channels: int = 3,
               image_size: int = 224, dropout_rate: float = 0.5, torchvision_init: bool = False,
               dtype=jnp.float32, rngs: nnx.Rngs):
    conv_init, fc_init = ({'kernel_init': _he_normal}, {'kernel_init': _normal_001}
                          ) if torchvision_init else ({}, {})
    self.names = []
    convs = []
    channels = in_channels
    for stage, (filters, kernels) in enumerate(stages, start=1):
      for i, k in enumerate(kernels, start=1):
        name = f'conv{stage}_{i}'
        convs.append(layers.Conv(name, channels, filters, k, padding=k // 2, dtype=dtype,
                                 rngs=rngs, **conv_init))
        self.names.append(name)
        channels = filters
      self.names.append(f'pool{stage}')
    self.convs = nnx.List(convs)
    self.norm = layers.LocalResponseNorm() if lrn else None
    final = image_size
    for stage in range(1, len(stages) + 1):
      final = layers.check_fit(f'pool{stage}', final, 2, 2, 0)
    self.fc6 = layers.Linear(final * final * channels, 4096, dtype=dtype, rngs=rngs, **fc_init)
    self.fc7 = layers.Linear(4096, 4096, dtype=dtype, rngs=rngs, **fc_init)
    self.fc8 = layers.Linear(4096, num_classes, dtype=dtype, rngs=rngs, **fc_init)
    self.dropout = nnx.Dropout(dropout_rate)

  def features(self, x: jax.Array) -> jax.Array:
    """The convolutional stages, up to pool5."""
    convs = iter(self.convs)
    for name in self.names:
      if name.startswith('pool'):
        x = record(name, layers.max_pool(name, x, 2, 2))
        continue
      x = nnx.relu(next(convs)(x))
      if name == 'conv1_1' and self.norm is not None:
        x = record(name, x)
        name, x = 'lrn', self.norm(x)
      x = record(name, x)
    return x

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    x = self.features(x)
    x = x.reshape(x.shape[0], -1)
    x = record('fc6', nnx.relu(self.fc6(x)))
    x = record('fc7', nnx.relu(self.fc7(self.dropout(x, rngs=rngs))))
    return record('fc8', self.fc8(self.dropout(x, rngs=rngs)))

  def dense(self, x: jax.Array) -> jax.Array:
    """Dense evaluation (section 3.2, after Sermanet et al.): the fully connected layers applied
    as convolutions over an image of any size at least image_size (fc6 as a convolution with
    pool5's window of the training size, fc7 and fc8 as 1x1 convolutions), the class score map
    spatially averaged. At the training size it is the plain forward pass."""
    x = self.features(x)
    window = self.fc6.linear.kernel.shape[0] // x.shape[-1]
    side = round(window ** 0.5)
    fc6 = self.fc6.linear
    kernel = fc6.kernel.value.reshape(side, side, x.shape[-1], -1).astype(x.dtype)
    x = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    x = nnx.relu(x + fc6.bias.value.astype(x.dtype))
    x = self.fc8(nnx.relu(self.fc7(x)))  # Dense layers act on the last axis: 1x1 convolutions.
    return x.mean(axis=(1, 2))


@register
def vgg11(**kwargs) -> VGG:
  """Configuration A."""
  return VGG(_STAGES['vgg11'], **kwargs)


@register
def vgg11_lrn(**kwargs) -> VGG:
  """Configuration A-LRN: A with local response normalisation after conv1_1."""
  return VGG(_STAGES['vgg11'], lrn=True, **kwargs)


@register
def vgg13(**kwargs) -> VGG:
  """Configuration B."""
  return VGG(_STAGES['vgg13'], **kwargs)


@register
def vgg16c(**kwargs) -> VGG:
  """Configuration C: D with 1x1 convolutions as each deep stage's third layer."""
  return VGG(_STAGES['vgg16c'], **kwargs)


@register
def vgg16(**kwargs) -> VGG:
  """Configuration D."""
  return VGG(_STAGES['vgg16'], **kwargs)


@register
def vgg19(**kwargs) -> VGG:
  """Configuration E."""
  return VGG(_STAGES['vgg19'], **kwargs)

"""ResNet-18/34/50/101/152 (He, Zhang, Ren & Sun, 2016, Table 1).

224x224x3 -> conv1 7x7/2, 64 -> 112x112 -> 3x3/2 max pool -> 56x56 -> conv2_x (64) -> conv3_x (128,
28x28) -> conv4_x (256, 14x14) -> conv5_x (512, 7x7) -> global average pool -> fc classes.
Basic blocks (two 3x3 convs) for 18/34 and bottlenecks (1x1, 3x3, 1x1 with 4x expansion) for
50/101/152; BatchNorm after every convolution; projection shortcuts (1x1 conv + BN, the paper's
option B) where the shape changes, identity otherwise. Multiply-adds (fc included): 1.81, 3.66,
3.86, 7.57, 11.28 G against the paper's 1.8, 3.6, 3.8, 7.6, 11.3; parameters 11.7, 21.8, 25.6,
44.5, 60.2 M (exactly torchvision's counts).

Choices the paper leaves open, after torchvision's reference and the Flax ImageNet example:
- `stride_on_3x3`: False puts a bottleneck's stride on its first 1x1 convolution (the paper, "v1");
  True moves it to the 3x3 ("v1.5", torchvision and MLPerf: about 0.5% better top-1, 4.1 G MACs).
- `zero_init_residual`: start each block's last BatchNorm scale at 0 (Goyal et al., 2017).
- `padding`: 'same' (the default for training) pads so that every stride-2 layer gives ceil(N/2),
  the table's sizes for any input; 'symmetric' pads each KxK layer by K // 2 on every side and
  floors, as the paper's Caffe model, torchvision and Keras do: the same sizes at 224, windows one
  pixel apart at stride 2. The authors' and torchvision's published weights need 'symmetric' to
  compute their function (cnns/published/); training defaults to 'same', the Flax and TensorFlow
  ImageNet examples' choice, which leaves no unreachable padding on any input size.
- BatchNorm momentum 0.9 and epsilon 1e-5 (PyTorch's), He-normal (fan-out) convolution kernels;
  fc LeCun-normal with zero bias, or with `torchvision_init` torchvision's (PyTorch's nn.Linear:
  weight and bias uniform within 1/sqrt(fan-in)).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register

# Blocks per stage conv2_x .. conv5_x (Table 1).
_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
           152: (3, 8, 36, 3)}
_WIDTHS = (64, 128, 256, 512)
PADDINGS = ('same', 'symmetric')
_he_normal = nnx.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _torch_linear_init(fan_in: int) -> dict:
  """PyTorch's nn.Linear initialisation: weight and bias uniform within 1/sqrt(fan_in)."""
  bound = fan_in ** -0.5
  uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                      bound)
  return {'kernel_init': uniform, 'bias_init': uniform}


class BasicBlock(nnx.Module):
  """Two 3x3 convolutions (ResNet-18/34)."""
  expansion = 1

  def __init__(self, name: str, in_features: int, width: int, stride: int, *, conv_bn,
               stride_on_3x3: bool, zero_init_residual: bool):
    del stride_on_3x3  # Both convolutions are 3x3.
    self.conv1 = conv_bn(f'{name}a', in_features, width, 3, stride)
    self.conv2 = conv_bn(f'{name}b', width, width, 3, zero_scale=zero_init_residual)
    self.shortcut = (conv_bn(f'{name}_proj', in_features, width, 1, stride)
                     if stride != 1 or in_features != width else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv2(nnx.relu(self.conv1(x)))
    return nnx.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class Bottleneck(nnx.Module):
  """1x1 reduce, 3x3, 1x1 expand to 4x the width (ResNet-50/101/152)."""
  expansion = 4

  def __init__(self, name: str, in_features: int, width: int, stride: int, *, conv_bn,
               stride_on_3x3: bool, zero_init_residual: bool):
    out_features = width * self.expansion
    self.conv1 = conv_bn(f'{name}a', in_features, width, 1, 1 if stride_on_3x3 else stride)
    self.conv2 = conv_bn(f'{name}b', width, width, 3, stride if stride_on_3x3 else 1)
    self.conv3 = conv_bn(f'{name}c', width, out_features, 1, zero_scale=zero_init_residual)
    self.shortcut = (conv_bn(f'{name}_proj', in_features, out_features, 1, stride)
                     if stride != 1 or in_features != out_features else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv3(nnx.relu(self.conv2(nnx.relu(self.conv1(x)))))
    return nnx.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nnx.Module):

  def __init__(self, depth: int, *, num_classes: int = 1000, in_channels: int = 3,
               image_size: int = 224, stride_on_3x3: bool = False,
               zero_init_residual: bool = False, padding: str = 'same',
               torchvision_init: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
    del image_size  # Both paddings and the global average pool fit any size.
    if padding not in PADDINGS:
      raise layers.GeometryError(f'unknown padding {padding!r}; known: {", ".join(PADDINGS)}')
    self.pool_padding = 'SAME' if padding == 'same' else layers.Floor(1)

    def conv_bn(name, in_features, out_features, kernel_size, stride=1, **kwargs):
      return layers.ConvBN(name, in_features, out_features, kernel_size, stride,
                           'SAME' if padding == 'same' else layers.Floor(kernel_size // 2),
                           momentum=0.9, epsilon=1e-5, kernel_init=_he_normal, dtype=dtype,
                           rngs=rngs, **kwargs)

    block = BasicBlock if depth < 50 else Bottleneck
    self.conv1 = conv_bn('conv1', in_channels, 64, 7, 2)
    self.names, blocks = [], []
    features = 64
    for stage, (num_blocks, width) in enumerate(zip(_DEPTHS[depth], _WIDTHS), start=2):
      for i in range(1, num_blocks + 1):
        stride = 2 if i == 1 and stage > 2 else 1
        name = f'conv{stage}_{i}'
        blocks.append(block(name, features, width, stride, conv_bn=conv_bn,
                            stride_on_3x3=stride_on_3x3, zero_init_residual=zero_init_residual))
        self.names.append(name)
        features = width * block.expansion
    self.blocks = nnx.List(blocks)
    fc_init = _torch_linear_init(features) if torchvision_init else {}
    self.fc = layers.Linear(features, num_classes, dtype=dtype, rngs=rngs, **fc_init)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    del rngs  # No dropout in ResNet.
    x = record('conv1', nnx.relu(self.conv1(x)))
    x = record('maxpool', layers.max_pool('maxpool', x, 3, 2, self.pool_padding))
    for name, block in zip(self.names, self.blocks):
      x = record(name, block(x))
    x = record('avgpool', layers.global_avg_pool(x))
    return record('fc', self.fc(x))

  def dense(self, x: jax.Array) -> jax.Array:
    """The fully-convolutional form of the multi-scale testing (section 3.4): fc applied at every
    position of the last feature map, the scores averaged; fc is linear, so that is the global
    average pool followed by fc, the plain forward pass, on an image of any size."""
    return self(x)


@register
def resnet18(**kwargs) -> ResNet:
  return ResNet(18, **kwargs)


@register
def resnet34(**kwargs) -> ResNet:
  return ResNet(34, **kwargs)


@register
def resnet50(**kwargs) -> ResNet:
  return ResNet(50, **kwargs)


@register
def resnet101(**kwargs) -> ResNet:
  return ResNet(101, **kwargs)


@register
def resnet152(**kwargs) -> ResNet:
  return ResNet(152, **kwargs)

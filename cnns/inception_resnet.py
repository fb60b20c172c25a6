"""Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi, 2017), 299x299x3 input.

Stem -> 35x35x320 -> Inception-ResNet-A x10 -> Reduction-A -> 17x17x1088 -> Inception-ResNet-B x20
-> Reduction-B -> 8x8x2080 -> Inception-ResNet-C x10 -> 1x1 conv 1536 -> average pool -> dropout
(keep 0.8) -> fc classes. Each residual block adds its branches' concatenation, projected by a
linear 1x1 convolution and scaled by 0.17 (A), 0.10 (B) or 0.20 (C), to its input, then applies
ReLU (the last C block: no scale, no ReLU). BatchNorm follows every other convolution.

The paper's figures are not self-consistent (Figure 17 projects to 1154 channels, but Reduction-A
gives 384 + 384 + 384 = 1152; Figure 15 lists 5/10/5 blocks), so this follows the authors' own
released TF-slim model (`nets/inception_resnet_v2.py`, 80.4% top-1), which timm ports too: the
slim stem ending in Mixed_5b (320 channels), 10/20/10 blocks (`repeats=(5, 10, 5)` gives the
figure's), 1088 and 2080 channels, layer names as slim's (Conv2d_1a_3x3, Mixed_5b, ...). As in
slim: 'VALID' where slim says so (checked by the integer rule) and 'SAME' elsewhere, BatchNorm
decay 0.9997 and epsilon 0.001, Glorot-uniform kernels. Differences: BatchNorm has a trainable
scale (timm's port; slim's and Keras' have none: `batchnorm_scale=False`), and slim's optional
auxiliary head after the Inception-ResNet-B blocks is not built (the paper describes none for
this network).
Parameters: 55.8M (1000 classes); multiply-adds: 13.2 G per 299x299 image.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register

_VALID = 0  # No padding; the layer's geometry is checked by the integer rule.


class ConvBNReLU(nnx.Module):
  """slim's `conv2d` under the Inception-ResNet arg scope: conv, BatchNorm, ReLU."""

  def __init__(self, name: str, in_features: int, out_features: int, kernel_size,
               stride: int = 1, padding: int | str = 'SAME', *, conv_bn):
    self.conv = conv_bn(name, in_features, out_features, kernel_size, stride, padding)

  def __call__(self, x: jax.Array) -> jax.Array:
    return nnx.relu(self.conv(x))


class Branches(nnx.Module):
  """Parallel chains of ConvBNReLU, concatenated, with the modules' pooling branch.

  `pool`: 'avg' feeds the last chain a 3x3 stride-1 average pool of the input (Mixed_5b); 'max'
  adds a 3x3 stride-2 max pool of the input as a last branch (the reductions Mixed_6a, Mixed_7a).
  """

  def __init__(self, name: str, in_features: int, chains, *, conv_bn, pool: str | None = None):
    """`chains`: per branch, a tuple of (out_features, kernel_size, stride, padding) steps."""
    self.name, self.pool = name, pool
    self.chains = nnx.List()
    self.out_features = in_features if pool == 'max' else 0
    for b, chain in enumerate(chains):
      steps, features = [], in_features
      for i, (out, kernel, stride, padding) in enumerate(chain):
        steps.append(ConvBNReLU(f'{name}/Branch_{b}/{i}', features, out, kernel, stride, padding,
                                conv_bn=conv_bn))
        features = out
      self.chains.append(nnx.List(steps))
      self.out_features += features

  def __call__(self, x: jax.Array) -> jax.Array:
    inputs = [x] * len(self.chains)
    if self.pool == 'avg':
      inputs[-1] = layers.avg_pool(f'{self.name}/pool', x, 3, 1, 'SAME')
    outputs = []
    for y, chain in zip(inputs, self.chains):
      for step in chain:
        y = step(y)
      outputs.append(y)
    if self.pool == 'max':
      outputs.append(layers.max_pool(f'{self.name}/pool', x, 3, 2, _VALID))
    return jnp.concatenate(outputs, axis=-1)


def _c(out, kernel, stride=1, padding='SAME'):
  """One step of a branch chain, written as slim's `conv2d(net, out, kernel, stride, padding)`."""
  return (out, kernel, stride, padding)


# The branch chains of Inception-ResNet-A, -B and -C (the paper's Figures 16, 17, 19; slim's
# widths).
_BLOCK_A = ((_c(32, 1),), (_c(32, 1), _c(32, 3)), (_c(32, 1), _c(48, 3), _c(64, 3)))
_BLOCK_B = ((_c(192, 1),), (_c(128, 1), _c(160, (1, 7)), _c(192, (7, 1))))
_BLOCK_C = ((_c(192, 1),), (_c(192, 1), _c(224, (1, 3)), _c(256, (3, 1))))


class ResidualBlock(nnx.Module):
  """x + scale * Conv1x1(concat(branches)), then ReLU (unless `activate` is False)."""

  def __init__(self, name: str, features: int, chains, scale: float, *, conv_bn, conv,
               activate: bool = True):
    self.branches = Branches(name, features, chains, conv_bn=conv_bn)
    self.up = conv(f'{name}/Conv2d_1x1', self.branches.out_features, features, 1)
    self.scale, self.activate = scale, activate

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.scale * self.up(self.branches(x))
    return nnx.relu(x) if self.activate else x


class InceptionResNetV2(nnx.Module):

  def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, image_size: int = 299,
               repeats: tuple[int, int, int] = (10, 20, 10), dropout_rate: float = 0.2,
               batchnorm_scale: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
    """`repeats`: Inception-ResNet-A, -B, -C blocks; (10, 20, 10) as slim, (5, 10, 5) as the
    paper's Figure 15. The last C block is the one without scale and ReLU.
    `batchnorm_scale=False`: BatchNorm without a trainable scale, as slim's and Keras' models."""
    del image_size  # Checked layer by layer on the first (abstract) call; the pool is global.
    if not (len(repeats) == 3 and all(isinstance(n, int) for n in repeats)
            and min(repeats) >= 0 and repeats[2] >= 1):
      raise layers.GeometryError(f'repeats={tuple(repeats)} must be the numbers of A, B and C '
                                 'blocks, whole numbers, at least one C')
    init = nnx.initializers.xavier_uniform()
    conv_bn = functools.partial(layers.ConvBN, momentum=0.9997, epsilon=1e-3, kernel_init=init,
                                scale=batchnorm_scale, dtype=dtype, rngs=rngs)
    conv = functools.partial(layers.Conv, kernel_init=init, dtype=dtype, rngs=rngs)
    unit = functools.partial(ConvBNReLU, conv_bn=conv_bn)
    self.stem = nnx.List([
        unit('Conv2d_1a_3x3', in_channels, 32, 3, 2, _VALID),
        unit('Conv2d_2a_3x3', 32, 32, 3, 1, _VALID),
        unit('Conv2d_2b_3x3', 32, 64, 3),
        unit('Conv2d_3b_1x1', 64, 80, 1, 1, _VALID),
        unit('Conv2d_4a_3x3', 80, 192, 3, 1, _VALID),
    ])
    self.mixed_5b = Branches('Mixed_5b', 192, (
        (_c(96, 1),), (_c(48, 1), _c(64, 5)), (_c(64, 1), _c(96, 3), _c(96, 3)),
        (_c(64, 1),)), conv_bn=conv_bn, pool='avg')
    block = functools.partial(ResidualBlock, conv_bn=conv_bn, conv=conv)
    num_a, num_b, num_c = repeats
    self.blocks_a = nnx.List([block(f'Block35_{i}', 320, _BLOCK_A, 0.17)
                              for i in range(1, num_a + 1)])
    self.mixed_6a = Branches('Mixed_6a', 320, (
        (_c(384, 3, 2, _VALID),), (_c(256, 1), _c(256, 3), _c(384, 3, 2, _VALID))),
        conv_bn=conv_bn, pool='max')
    self.blocks_b = nnx.List([block(f'Block17_{i}', 1088, _BLOCK_B, 0.10)
                              for i in range(1, num_b + 1)])
    self.mixed_7a = Branches('Mixed_7a', 1088, (
        (_c(256, 1), _c(384, 3, 2, _VALID)), (_c(256, 1), _c(288, 3, 2, _VALID)),
        (_c(256, 1), _c(288, 3), _c(320, 3, 2, _VALID))), conv_bn=conv_bn, pool='max')
    self.blocks_c = nnx.List([block(f'Block8_{i}', 2080, _BLOCK_C, 0.20) for i in range(1, num_c)]
                             + [block(f'Block8_{num_c}', 2080, _BLOCK_C, 1.0, activate=False)])
    self.conv_7b = unit('Conv2d_7b_1x1', 2080, 1536, 1)
    self.dropout = nnx.Dropout(dropout_rate)
    self.logits = layers.Linear(1536, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    stem = iter(self.stem)
    for name in ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3'):
      x = record(name, next(stem)(x))
    x = record('MaxPool_3a_3x3', layers.max_pool('MaxPool_3a_3x3', x, 3, 2))
    for name in ('Conv2d_3b_1x1', 'Conv2d_4a_3x3'):
      x = record(name, next(stem)(x))
    x = record('MaxPool_5a_3x3', layers.max_pool('MaxPool_5a_3x3', x, 3, 2))
    x = record('Mixed_5b', self.mixed_5b(x))
    for i, block in enumerate(self.blocks_a, start=1):
      x = record(f'Block35_{i}', block(x))
    x = record('Mixed_6a', self.mixed_6a(x))
    for i, block in enumerate(self.blocks_b, start=1):
      x = record(f'Block17_{i}', block(x))
    x = record('Mixed_7a', self.mixed_7a(x))
    for i, block in enumerate(self.blocks_c, start=1):
      x = record(f'Block8_{i}', block(x))
    x = record('Conv2d_7b_1x1', self.conv_7b(x))
    x = record('AvgPool', layers.global_avg_pool(x))
    return record('Logits', self.logits(self.dropout(x, rngs=rngs)))


@register
def inception_resnet_v2(**kwargs) -> InceptionResNetV2:
  return InceptionResNetV2(**kwargs)

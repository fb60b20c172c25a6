"""The lecture's typical ConvNet as a family: [(CONV-RELU)xN - POOL?]xM - (FC-RELU)xK, SOFTMAX.

"N usually up to 5, M large, 0 <= K <= 2" (the seed lecture's summary). Each of the M blocks is N
convolutions with ReLU (`kernel_size` x `kernel_size`, stride 1, padded by kernel_size // 2, so
they keep the size), then, with `pool`, a 2x2 max pool of stride 2 that halves it; then K fully
connected layers with ReLU and the classifier, a last fully connected layer whose softmax is in the
loss. Layer names: conv<block>_<n>, pool<block>, fc1 .. fcK, then fc<K+1> (VGG's names: VGG-16 is
N = 2, 2, 3, 3, 3 with M = 5, K = 2). A geometry that does not fit (an odd size before a pool) is
the usual one-line GeometryError, so a student can try any N, M, K from the command line:

  python -m cnns.summary --config=configs/pattern.py --config.model_kwargs.blocks=4
"""

import jax
import jax.numpy as jnp
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register


class Pattern(nnx.Module):

  def __init__(self, *, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
               convs_per_block: int = 2, blocks: int = 3, fc_layers: int = 1,
               widths: int | tuple[int, ...] = (32, 64, 128), fc_width: int = 256,
               pool: bool = True, kernel_size: int = 3, dtype=jnp.float32, rngs: nnx.Rngs):
    """N = `convs_per_block`, M = `blocks`, K = `fc_layers`; `widths`: filters of each block (one
    number: every block)."""
    widths = (widths,) * blocks if isinstance(widths, int) else tuple(widths)
    if len(widths) != blocks or min(convs_per_block, blocks, fc_layers + 1, *widths) < 1 or (
        kernel_size % 2 == 0):
      raise layers.GeometryError(
          f'pattern: N={convs_per_block}, M={blocks} (one width each: {widths}) must be at least '
          f'1, K={fc_layers} at least 0, kernel_size={kernel_size} odd')
    self.names, convs = [], []
    channels, size = in_channels, image_size
    for block, width in enumerate(widths, start=1):
      for n in range(1, convs_per_block + 1):
        convs.append(layers.Conv(f'conv{block}_{n}', channels, width, kernel_size,
                                 padding=kernel_size // 2, dtype=dtype, rngs=rngs))
        self.names.append(f'conv{block}_{n}')
        channels = width
      if pool:
        size = layers.check_fit(f'pool{block}', size, 2, 2, 0)
        self.names.append(f'pool{block}')
    self.convs = nnx.List(convs)
    features = [size * size * channels] + [fc_width] * fc_layers + [num_classes]
    self.fcs = nnx.List([layers.Linear(a, b, dtype=dtype, rngs=rngs)
                         for a, b in zip(features, features[1:])])

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    del rngs  # No dropout.
    convs = iter(self.convs)
    for name in self.names:
      layer = layers.max_pool(name, x, 2, 2) if name.startswith('pool') else nnx.relu(
          next(convs)(x))
      x = record(name, layer)
    x = x.reshape(x.shape[0], -1)
    for k, fc in enumerate(self.fcs, start=1):
      x = fc(x) if k == len(self.fcs) else nnx.relu(fc(x))
      record(f'fc{k}', x)
    return x


@register
def pattern(**kwargs) -> Pattern:
  return Pattern(**kwargs)

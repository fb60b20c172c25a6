"""AlphaGo's policy network (Silver et al., 2016, "Methods: Neural network architecture").

19x19x48 feature planes of a Go position -> conv1 192 5x5 (padding 2) -> conv2 .. conv12 192 3x3
(padding 1), ReLU after each -> conv13 one 1x1 filter -> a 19x19 map, plus "a different bias for
each position" -> softmax over the 361 points: the probability of each move. Every layer keeps the
board's 19x19, as the seed lecture's slide shows; its last layer ("CONV3: 1 filter 1x1") is the
paper's thirteenth. The position-dependent bias replaces conv13's single shared bias, as the paper
says (the slide leaves it out): 361 parameters instead of 1, so a move's prior can depend on where
it is on the board. Parameters: 3,882,793 for 192 filters (conv1 230,592; conv2-12 331,968 each;
conv13 192 weights and 361 biases). The classes are the board's points in row-major order.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register


class PolicyNetwork(nnx.Module):

  def __init__(self, *, num_classes: int = 361, in_channels: int = 48, image_size: int = 19,
               filters: int = 192, depth: int = 13, dtype=jnp.float32, rngs: nnx.Rngs):
    """`filters`: k, 192 in the paper's final network (128 and 256 in its Figure 2); `depth`:
    convolutional layers, conv1 to the 1x1 output layer."""
    if num_classes != image_size * image_size:
      raise layers.GeometryError(f'the policy network has one class per board point: '
                                 f'num_classes={num_classes} must be {image_size}x{image_size}')
    conv = lambda name, *args, **kwargs: layers.Conv(name, *args, dtype=dtype, rngs=rngs, **kwargs)
    self.hidden = nnx.List([conv('conv1', in_channels, filters, 5, padding=2)] + [
        conv(f'conv{i}', filters, filters, 3, padding=1) for i in range(2, depth)])
    self.output = conv(f'conv{depth}', filters, 1, 1, use_bias=False)
    self.position_bias = nnx.Param(jnp.zeros((num_classes,), jnp.float32))

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    del rngs  # No dropout.
    for layer in self.hidden:
      x = record(layer.name, nnx.relu(layer(x)))
    logits = self.output(x).reshape(x.shape[0], -1) + self.position_bias[...].astype(x.dtype)
    layers.count(self.position_bias.size, 0, self.position_bias.size)
    return record(self.output.name, logits)


@register
def alphago_policy(**kwargs) -> PolicyNetwork:
  return PolicyNetwork(**kwargs)

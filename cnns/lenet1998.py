"""LeNet-5 exactly as published: LeCun, Bottou, Bengio and Haffner (1998), "Gradient-based
learning applied to document recognition", section II-B and appendices A-C.

Where `cnns/lenet.py` is the lecture's modern variant, this is the paper's network:

- input 32x32, pixels scaled so that the background is -0.1 and the ink 1.175 (mean about 0,
  variance about 1; `input_convention='lecun98'`);
- every unit squashed by f(a) = A tanh(S a), A = 1.7159, S = 2/3 (appendix A), so f(1) = 1 and
  f(-1) = -1;
- S2 and S4 are trainable sub-sampling: the sum of each 2x2 window times a trainable coefficient
  plus a trainable bias, one pair per map, then f;
- C3 connects each of its 16 maps to the subset of S2's maps given by Table I (`C3_TABLE`);
- C5 has 120 maps of 1x1 (a 5x5 convolution over S4's 16 maps), F6 84 units;
- the output is 10 Euclidean RBF units, y_i = sum_j (x_j - w_ij)^2, whose parameter vectors are
  fixed +1/-1 prototypes drawn on 7x12 bitmaps (`BITMAPS`), and training minimises the paper's
  equation (9), `LeNet1998.loss`.

Counts (section II-B; `python -m cnns.summary --config=configs/lenet5_1998.py`): 60,000 trainable
parameters and 340,908 connections: C1 156 / 122,304, S2 12 / 5,880, C3 1,516 / 151,600, S4
32 / 2,000, C5 48,120 / 48,120, F6 10,164 / 10,164, output 0 / 840.

What the paper leaves open, chosen here:

- The bitmaps. Figure 3 shows them only as pictures; `BITMAPS` draws the ten digits in a 7x12
  grid with a blank first and last row, in the spirit of the figure: any set of distinct,
  well-separated +1/-1 codes serves the same purpose (the paper: "a stylized image of the
  corresponding character class").
- The constant j of equation (9): "positive", no value given. j = 0.1 here: e^-j = 0.9, so the
  competitive term stops pushing a wrong class's penalty up once it exceeds a few units, while
  the first term (the distance to the right prototype) dominates, as the paper intends.
- Initialisation (appendix C): weights uniform in [-2.4/F, 2.4/F], F the unit's fan-in (inputs
  per unit: 25 for C1, 4 for the sub-sampling coefficients, 25 x the connected maps for C3, ...).
  The paper does not separate biases; they are drawn the same way.

`LeNet1998.gauss_newton_diagonal` is appendix C's estimate of the Hessian's diagonal, which the
stochastic diagonal Levenberg-Marquardt method (training/sdlm.py) divides the gradient by.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register

A, S = 1.7159, 2.0 / 3.0
J = 0.1  # Equation (9)'s constant.

# Table I: which of S2's six maps (rows) each of C3's sixteen maps (columns) takes as input.
C3_TABLE = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""

# The RBF units' prototypes: '#' is +1 (ink), '.' is -1, 7 columns x 12 rows per digit.
BITMAPS = """
.......  .......  .......  .......  .......  .......  .......  .......  .......  .......
..###..  ...#...  ..###..  .####..  ....#..  #######  ...###.  #######  ..###..  ..###..
.#...#.  ..##...  .#...#.  .....#.  ...##..  #......  ..#....  ......#  .#...#.  .#...#.
#.....#  .#.#...  #.....#  .....#.  ..#.#..  #......  .#.....  .....#.  #.....#  #.....#
#.....#  ...#...  ......#  .....#.  .#..#..  #.###..  #......  ....#..  .#...#.  #.....#
#.....#  ...#...  .....#.  ..###..  #...#..  ##...#.  #.###..  ...#...  ..###..  .#...##
#.....#  ...#...  ....#..  .....#.  #######  ......#  ##...#.  ...#...  .#...#.  ..###.#
#.....#  ...#...  ...#...  .....#.  ....#..  ......#  #.....#  ..#....  #.....#  ......#
#.....#  ...#...  ..#....  .....#.  ....#..  ......#  #.....#  ..#....  #.....#  .....#.
.#...#.  ...#...  .#.....  .....#.  ....#..  #....#.  .#...#.  ..#....  .#...#.  ....#..
..###..  .#####.  #######  .####..  ....#..  .####..  ..###..  ..#....  ..###..  .###...
.......  .......  .......  .......  .......  .......  .......  .......  .......  .......
"""


def c3_connections() -> np.ndarray:
  """Table I as a boolean [6 S2 maps, 16 C3 maps] matrix."""
  rows = C3_TABLE.split()
  return np.array([[c == 'X' for c in row] for row in rows])


def prototypes() -> np.ndarray:
  """The ten RBF parameter vectors, [10, 84] in {-1, +1}, row-major over each 7x12 bitmap."""
  rows = [line.split() for line in BITMAPS.strip().splitlines()]
  return np.array([[1.0 if c == '#' else -1.0 for row in rows for c in row[digit]]
                   for digit in range(10)], np.float32)


def squash(a: jax.Array) -> jax.Array:
  """f(a) = A tanh(S a) (appendix A)."""
  return A * jnp.tanh(S * a)


def squash_derivative(a: jax.Array) -> jax.Array:
  return A * S * (1 - jnp.square(jnp.tanh(S * a)))


def _uniform(rngs: nnx.Rngs, shape, fan_in) -> nnx.Param:
  """Appendix C's initialisation: uniform in [-2.4/F, 2.4/F]; `fan_in` broadcasts over `shape`."""
  limit = 2.4 / np.asarray(fan_in, np.float32)
  return nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -1.0, 1.0) * limit)


class Stage(nnx.Module):
  """A weighted layer whose units are then squashed: `linear(weights, x)` is linear in the
  weights and in x separately, which is what appendix C's second-derivative backpropagation
  needs (`LeNet1998.gauss_newton_diagonal`)."""

  def weights(self) -> dict[str, jax.Array]:
    """This stage's parameters by name, as plain arrays."""
    return nnx.to_pure_dict(nnx.state(self, nnx.Param))

  def linear(self, weights: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    raise NotImplementedError

  def __call__(self, x: jax.Array) -> jax.Array:
    return squash(self.linear(self.weights(), x))


class Convolution(Stage):
  """5x5 'valid' convolution. With `connections` ([in, out] booleans: C3's Table I) the kernel
  holds only the connected pairs of maps, [5, 5, pairs], and is spread into the [5, 5, in, out]
  kernel with zeros elsewhere, so that the parameters are exactly the paper's."""

  def __init__(self, in_maps: int, out_maps: int, *, rngs: nnx.Rngs,
               connections: np.ndarray | None = None):
    self.shape = (5, 5, in_maps, out_maps)
    inputs_per_map = np.full(out_maps, in_maps)
    self.pairs = None
    if connections is None:
      self.kernel = _uniform(rngs, self.shape, 25 * inputs_per_map)
    else:
      inputs_per_map = connections.sum(axis=0)
      ins, outs = np.nonzero(connections)
      self.pairs = (tuple(ins.tolist()), tuple(outs.tolist()))
      self.kernel = _uniform(rngs, (5, 5, len(ins)), 25 * inputs_per_map[outs])
    self.bias = _uniform(rngs, (out_maps,), 25 * inputs_per_map)
    self.num_params = 25 * int(inputs_per_map.sum()) + out_maps

  def linear(self, weights, x):
    kernel = weights['kernel']
    if self.pairs is not None:
      kernel = jnp.zeros(self.shape, kernel.dtype).at[:, :, self.pairs[0], self.pairs[1]].set(
          kernel)
    y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = y + weights['bias'].astype(x.dtype)
    positions = y.shape[1] * y.shape[2]
    layers.count(self.num_params, positions * (self.num_params - self.shape[-1]),
                 connections=positions * self.num_params)
    return y


class SubSampling(Stage):
  """S2, S4: each unit adds its 2x2 window, multiplies by its map's coefficient and adds its
  map's bias (4 + 1 connections per unit, 2 parameters per map)."""

  def __init__(self, maps: int, *, rngs: nnx.Rngs):
    self.coefficient = _uniform(rngs, (maps,), 4)
    self.bias = _uniform(rngs, (maps,), 4)

  def linear(self, weights, x):
    c = x.shape[-1]
    sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')
    y = sums * weights['coefficient'].astype(x.dtype) + weights['bias'].astype(x.dtype)
    units = math.prod(y.shape[1:])
    layers.count(2 * c, units, connections=5 * units)
    return y


class FullConnection(Stage):
  """F6: 84 units, each connected to every C5 unit."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.kernel = _uniform(rngs, (in_features, out_features), in_features)
    self.bias = _uniform(rngs, (out_features,), in_features)

  def linear(self, weights, x):
    x = x.reshape(x.shape[0], -1)
    inputs, outputs = weights['kernel'].shape
    layers.count(inputs * outputs + outputs, inputs * outputs,
                 connections=(inputs + 1) * outputs)
    return x @ weights['kernel'].astype(x.dtype) + weights['bias'].astype(x.dtype)


STAGES = ('C1', 'S2', 'C3', 'S4', 'C5', 'F6')


class LeNet1998(nnx.Module):
  """The 1998 LeNet-5. Returns minus the RBF penalties, -y_i, as logits: the most probable class
  is the nearest prototype, and softmax cross-entropy of these logits with one more, constant
  logit -j is equation (9) (`loss`)."""

  def __init__(self, *, num_classes: int = 10, in_channels: int = 1, image_size: int = 32,
               dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    if num_classes != 10 or in_channels != 1:
      raise layers.GeometryError(
          f'lenet5_1998 reads grey-level digits (in_channels=1) into 10 RBF units, one per digit '
          f'bitmap; got in_channels={in_channels}, num_classes={num_classes}')
    size = image_size
    for name, window, stride in (('C1', 5, 1), ('S2', 2, 2), ('C3', 5, 1), ('S4', 2, 2),
                                 ('C5', 5, 1)):
      size = layers.check_fit(name, size, window, stride, 0)
    self.dtype = dtype
    self.C1 = Convolution(1, 6, rngs=rngs)
    self.S2 = SubSampling(6, rngs=rngs)
    self.C3 = Convolution(6, 16, connections=c3_connections(), rngs=rngs)
    self.S4 = SubSampling(16, rngs=rngs)
    self.C5 = Convolution(16, 120, rngs=rngs)
    self.F6 = FullConnection(size * size * 120, 84, rngs=rngs)

  def features(self, x: jax.Array) -> jax.Array:
    """F6's 84 outputs: the point that the RBF layer compares with each prototype."""
    x = x.astype(self.dtype)
    for name in STAGES:
      x = record(name, getattr(self, name)(x))
    return x

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    del rngs  # No dropout.
    x = self.features(x).astype(jnp.float32)
    centres = jnp.asarray(prototypes())
    penalties = jnp.square(x[:, None, :] - centres).sum(-1)
    layers.count(0, centres.size, connections=centres.size)
    return record('output', -penalties)

  @staticmethod
  def loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Equation (9) per example: y_D + log(e^-j + sum_i e^-y_i), with logits = -y and one-hot
    `targets` picking D (smoothed targets weigh the first term over classes)."""
    competitors = jnp.concatenate([logits, jnp.full((logits.shape[0], 1), -J, logits.dtype)], 1)
    return jax.nn.logsumexp(competitors, axis=-1) - (targets * logits).sum(-1)

  def gauss_newton_diagonal(self, images: jax.Array) -> dict:
    """Appendix C's estimate of the diagonal of the loss's Hessian, averaged over `images`, in
    the shape of the model's parameters (`nnx.to_pure_dict`).

    The second derivatives are backpropagated as the paper does: through a unit's squashing
    function by f'(a)^2, to a weight by the square of its input, to an input by the squares of
    the weights (the Gauss-Newton approximation: the terms in f'' are dropped, and so are the
    off-diagonal terms, so a shared weight sums its connections' terms). At the output, the
    second derivative of the penalty y_D = |x - w_D|^2 with respect to each F6 output, 2.
    """
    x = images.astype(jnp.float32)
    inputs, activations = [], []
    for name in STAGES:
      stage = getattr(self, name)
      inputs.append(x)
      activations.append(stage.linear(stage.weights(), x))
      x = squash(activations[-1])
    h = jnp.full_like(x, 2.0)  # d2 y_D / d x_j^2.
    result = {}
    for name, x_in, a in reversed(list(zip(STAGES, inputs, activations))):
      stage = getattr(self, name)
      weights = stage.weights()
      h = h.reshape(a.shape) * jnp.square(squash_derivative(a))
      _, to_weights = jax.vjp(lambda w: stage.linear(w, jnp.square(x_in)), weights)
      (result[name],) = jax.tree.map(lambda t: t / images.shape[0], to_weights(h))
      squared = jax.tree.map(jnp.square, weights)
      _, to_inputs = jax.vjp(lambda v: stage.linear(squared, v), x_in)
      (h,) = to_inputs(h)
    return result


@register
def lenet5_1998(**kwargs) -> LeNet1998:
  return LeNet1998(**kwargs)

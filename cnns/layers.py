"""Layers shared by the families, with the geometry check and accounting behind `cnns.summary`.

Every convolution and pooling layer checks the seed's rule, output = (N - F + 2P) / stride + 1: a
window that does not tile its input ("2.33: nao cabe!") is an error naming the layer and the
numbers, not a silent floor. 'SAME' padding fits by construction (output = ceil(N / stride)), and
`Floor(P)`, the flooring padding of Caffe and PyTorch, exists for the published models trained
with it (cnns/published/), whose exact function needs it.

While `recording()` is active (under `jax.eval_shape`, so no weights are built, or in a real
forward pass), convolutions and dense layers add their parameters and multiply-accumulates to the
current row, and `record(name, x)` closes the row under the paper's layer name with its output
volume, keeping the output itself. Connections are counted as LeNet-5's paper counts them: each
use of a weight or a bias by a unit (a layer's multiply-accumulates plus its bias additions).
"""

import contextlib
import contextvars
import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx


class GeometryError(ValueError):
  """A layer's window and stride do not tile its input, or a family's options (`model_kwargs`)
  build no network."""


@dataclasses.dataclass
class Row:
  name: str
  output_shape: tuple[int, ...]  # Per image: H x W x C, or units.
  params: int
  macs: int
  connections: int


class Recorder:
  """Collects one `Row` per paper layer while a model runs (abstractly for the table), and each
  layer's output by name (in a real forward pass: the activation maps of visualize.py)."""

  def __init__(self):
    self.rows: list[Row] = []
    self.outputs: dict[str, jax.Array] = {}
    self._params = 0
    self._macs = 0
    self._connections = 0

  def add(self, params: int, macs: int, connections: int) -> None:
    self._params += params
    self._macs += macs
    self._connections += connections

  def close_row(self, name: str, x: jax.Array) -> None:
    self.rows.append(Row(name, tuple(x.shape[1:]), self._params, self._macs, self._connections))
    self.outputs[name] = x
    self._params = self._macs = self._connections = 0


_RECORDER: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar('recorder',
                                                                           default=None)


@contextlib.contextmanager
def recording():
  recorder = Recorder()
  token = _RECORDER.set(recorder)
  try:
    yield recorder
  finally:
    _RECORDER.reset(token)


def record(name: str, x: jax.Array) -> jax.Array:
  """Marks the end of paper layer `name` (a no-op outside `recording()`)."""
  recorder = _RECORDER.get()
  if recorder is not None:
    recorder.close_row(name, x)
  return x


def count(params: int, macs: int, connections: int | None = None) -> None:
  """Adds a layer's parameters (from its shapes: `summary` checks the total against the model's
  real ones), multiply-accumulates and connections (None: as many as MACs, no bias) to the
  current row, while recording. The layers here call it; a family's own parameters (AlphaGo's
  position bias) and layers (LeNet-5's sub-sampling) too."""
  recorder = _RECORDER.get()
  if recorder is not None:
    recorder.add(params, macs, macs if connections is None else connections)


def check_fit(name: str, size: int, window: int, stride: int, padding: int) -> int:
  """(N - F + 2P) / stride + 1, which must be a whole number."""
  out = (size - window + 2 * padding) / stride + 1
  if out < 1 or out != int(out):
    raise GeometryError(f'{name}: (N - F + 2P)/stride + 1 = ({size} - {window} + 2*{padding})/'
                        f'{stride} + 1 = {out:.2f} does not fit')
  return int(out)


class Floor(NamedTuple):
  """Caffe's and PyTorch's padding: P on every side, output floor((N - F + 2P) / stride) + 1.

  Where the windows do not tile the padded input, the last rows and columns they cannot reach
  are left out (XLA does that with explicit padding); the first window starts P pixels before the
  image. 'SAME' pads a stride-2 layer on an even input the other way round (one pixel less before
  than after): the same output size, windows shifted by one pixel, which a network trained one
  way notices when run the other.
  """
  pad: int


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
  return (size, size) if isinstance(size, int) else tuple(size)


def _check_window(name: str, x: jax.Array, window, stride, padding) -> None:
  """The integer rule on both spatial axes; 'SAME' fits by construction, `Floor` wherever one
  window fits."""
  for size, w, s in zip(x.shape[1:3], _pair(window), _pair(stride)):
    if isinstance(padding, int):
      check_fit(name, size, w, s, padding)
    elif isinstance(padding, Floor) and size + 2 * padding.pad < w:
      raise GeometryError(f'{name}: a {w}-pixel window does not fit {size} pixels padded by '
                          f'{padding.pad}')


def _padding(padding: int | str | Floor):
  if isinstance(padding, Floor):
    padding = padding.pad
  return padding if isinstance(padding, str) else [(padding, padding)] * 2


class Conv(nnx.Module):
  """Convolution with the paper's name, explicit symmetric padding (or 'SAME', or `Floor`), and
  bias.

  `kernel_size` is an int (square) or (height, width), as Inception's 1x7 and 7x1 factorisations.
  """

  def __init__(self, name: str, in_features: int, out_features: int,
               kernel_size: int | tuple[int, int], stride: int = 1,
               padding: int | str | Floor = 0, *, use_bias: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs, **kwargs):
    self.name, self.kernel_size, self.stride, self.padding = name, kernel_size, stride, padding
    self.num_params = math.prod(_pair(kernel_size)) * in_features * out_features + (
        out_features if use_bias else 0)
    self.conv = nnx.Conv(in_features, out_features, _pair(kernel_size), _pair(stride),
                         padding=_padding(padding), use_bias=use_bias, dtype=dtype, rngs=rngs,
                         **kwargs)

  def __call__(self, x: jax.Array) -> jax.Array:
    _check_window(self.name, x, self.kernel_size, self.stride, self.padding)
    y = self.conv(x)
    macs = math.prod(y.shape[1:]) * math.prod(_pair(self.kernel_size)) * x.shape[-1]
    count(self.num_params, macs,
          macs + (math.prod(y.shape[1:]) if self.conv.bias is not None else 0))
    return y


_BATCHNORM_TRAINING: contextvars.ContextVar[tuple[int, bool]] = contextvars.ContextVar(
    'batchnorm_training', default=(1, False))


@contextlib.contextmanager
def batchnorm_training(groups: int = 1, unbiased_var: bool = False):
  """Within: training-mode BatchNorm normalises each of `groups` equal, contiguous parts of the
  batch by its own statistics (the train step sets the device count for per-device BatchNorm),
  and with `unbiased_var` its running variance averages n / (n - 1) times the variance that
  normalised a channel's n values (Bessel's correction, as PyTorch's BatchNorm and TensorFlow's
  fused one), not that variance itself (Flax's)."""
  token = _BATCHNORM_TRAINING.set((groups, unbiased_var))
  try:
    yield
  finally:
    _BATCHNORM_TRAINING.reset(token)


class BatchNorm(nnx.BatchNorm):
  """`nnx.BatchNorm`, plus per-group training statistics and the unbiased running variance under
  `batchnorm_training`.

  With g = the device count and the batch sharded over devices, group i is device i's shard, so
  each device normalises by its own statistics with no all-reduce: the unsynchronised BatchNorm
  of the original ResNet and MLPerf. The running averages take the mean of the groups' statistics
  (one cheap all-reduce), so every device keeps the same model. One group with the biased
  variance is exactly Flax's BatchNorm.
  """

  def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
               mask: jax.Array | None = None) -> jax.Array:
    groups, unbiased_var = _BATCHNORM_TRAINING.get()
    running = self.use_running_average if use_running_average is None else use_running_average
    if running or (groups == 1 and not unbiased_var):
      return super().__call__(x, use_running_average, mask=mask)
    dtype = jnp.promote_types(self.dtype or x.dtype, jnp.float32)  # float64 stays float64.
    grouped = x.reshape(groups, x.shape[0] // groups, *x.shape[1:]).astype(dtype)
    axes = tuple(range(1, grouped.ndim - 1))
    mean = grouped.mean(axes, keepdims=True)
    var = jnp.square(grouped - mean).mean(axes, keepdims=True)
    y = (grouped - mean) * jax.lax.rsqrt(var + self.epsilon)
    y = (y if self.scale is None else y * self.scale[...]) + self.bias[...]
    if unbiased_var:
      n = math.prod(grouped.shape[1:-1])  # Values of a channel in a group (one: variance 0).
      var = var * (n / max(n - 1, 1))
    m = self.momentum
    self.mean[...] = m * self.mean[...] + (1 - m) * mean.reshape(groups, -1).mean(0)
    self.var[...] = m * self.var[...] + (1 - m) * var.reshape(groups, -1).mean(0)
    return y.reshape(x.shape).astype(self.dtype or x.dtype)


class ConvBN(nnx.Module):
  """Convolution without bias, then BatchNorm (ResNet, Inception-ResNet-v2); no activation.

  BatchNorm statistics are over the global batch (under jit the batch-sharded mean is one
  all-reduce, so every device count trains the same model), or per device (`BatchNorm`).
  `zero_scale` starts BatchNorm's scale at 0 (Goyal et al., 2017: a block begins as the identity);
  `scale=False` leaves it out: TF-slim's `batch_norm` default, which its Inception models keep
  ("the scaling can be done by the next layer", its docstring says of a following ReLU).
  """

  def __init__(self, name: str, in_features: int, out_features: int,
               kernel_size: int | tuple[int, int], stride: int = 1,
               padding: int | str | Floor = 'SAME', *, momentum: float, epsilon: float,
               zero_scale: bool = False, scale: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs, **kwargs):
    self.conv = Conv(name, in_features, out_features, kernel_size, stride, padding,
                     use_bias=False, dtype=dtype, rngs=rngs, **kwargs)
    self.bn = BatchNorm(out_features, momentum=momentum, epsilon=epsilon, dtype=dtype,
                        use_scale=scale, scale_init=nnx.initializers.zeros if zero_scale
                        else nnx.initializers.ones, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.bn(self.conv(x))
    affine = 1 + (self.bn.scale is not None)  # BatchNorm's bias, and its scale where it has one.
    count(affine * y.shape[-1], 0, affine * math.prod(y.shape[1:]))
    return y


class Linear(nnx.Module):
  """Fully connected layer that counts its multiply-accumulates; `kwargs` are nnx.Linear's
  (kernel_init, bias_init)."""

  def __init__(self, in_features: int, out_features: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs, **kwargs):
    self.linear = nnx.Linear(in_features, out_features, dtype=dtype, rngs=rngs, **kwargs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.linear(x)
    count(x.shape[-1] * y.shape[-1] + y.shape[-1], x.shape[-1] * y.shape[-1],
          (x.shape[-1] + 1) * y.shape[-1])
    return y


def max_pool(name: str, x: jax.Array, window: int, stride: int,
             padding: int | str | Floor = 0) -> jax.Array:
  _check_window(name, x, window, stride, padding)  # Padding counts as -inf, never the maximum.
  return nnx.max_pool(x, _pair(window), _pair(stride), _padding(padding))


def avg_pool(name: str, x: jax.Array, window: int, stride: int,
             padding: int | str = 0) -> jax.Array:
  """Average over the window's real pixels only (padding excluded, as TensorFlow and Caffe)."""
  _check_window(name, x, window, stride, padding)
  return nnx.avg_pool(x, _pair(window), _pair(stride), _padding(padding),
                      count_include_pad=False)


def global_avg_pool(x: jax.Array) -> jax.Array:
  """The papers' final average pool (7x7 for 224 inputs, 8x8 for 299) over any input size."""
  return x.mean(axis=(1, 2))


class LocalResponseNorm(nnx.Module):
  """AlexNet's local response normalisation across channels (section 3.3 of the paper).

  b_c = a_c / (k + alpha * sum_{c' within n/2 of c} a_{c'}^2) ** beta, with the paper's
  k = 2, n = 5, alpha = 1e-4, beta = 0.75 (alpha not divided by n, as in the paper's formula).
  """

  def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
    self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

  def __call__(self, x: jax.Array) -> jax.Array:
    squares = jnp.square(x.astype(jnp.float32))
    half = self.size // 2
    window_sum = jax.lax.reduce_window(squares, 0.0, jax.lax.add, (1, 1, 1, self.size),
                                       (1, 1, 1, 1), [(0, 0)] * 3 + [(half, half)])
    return (x / (self.k + self.alpha * window_sum) ** self.beta).astype(x.dtype)


class AuxiliaryOutputs(NamedTuple):
  """What a model with auxiliary classifiers (GoogLeNet) returns in training mode.

  The train step adds `aux_loss_weight` x each auxiliary loss; in evaluation mode such a model
  returns plain logits, as every other model does.
  """
  logits: jax.Array
  aux_logits: tuple[jax.Array, ...]

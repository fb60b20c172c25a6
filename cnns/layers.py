"""Layers shared by the families, with the geometry check and accounting behind `cnns.summary`.

Every convolution and pooling layer checks the seed's rule, output = (N - F + 2P) / stride + 1: a
window that does not tile its input ("2.33: nao cabe!") is an error naming the layer and the
numbers, not a silent floor. 'SAME' padding fits by construction (output = ceil(N / stride)).

While `recording()` is active (under `jax.eval_shape`, so no weights are built), convolutions and
dense layers add their parameters and multiply-accumulates to the current row, and `record(name, x)`
closes the row under the paper's layer name with its output volume.
"""

import contextlib
import contextvars
import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx


class GeometryError(ValueError):
  """A layer's window and stride do not tile its input."""


@dataclasses.dataclass
class Row:
  name: str
  output_shape: tuple[int, ...]  # Per image: H x W x C, or units.
  params: int
  macs: int


class Recorder:
  """Collects one `Row` per paper layer while a model runs abstractly."""

  def __init__(self):
    self.rows: list[Row] = []
    self._params = 0
    self._macs = 0

  def add(self, params: int, macs: int) -> None:
    self._params += params
    self._macs += macs

  def close_row(self, name: str, x: jax.Array) -> None:
    self.rows.append(Row(name, tuple(x.shape[1:]), self._params, self._macs))
    self._params = self._macs = 0


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


def _count(module: nnx.Module, macs: int) -> None:
  recorder = _RECORDER.get()
  if recorder is not None:
    params = sum(v.size for v in jax.tree.leaves(nnx.to_pure_dict(nnx.state(module, nnx.Param))))
    recorder.add(params, macs)


def check_fit(name: str, size: int, window: int, stride: int, padding: int) -> int:
  """(N - F + 2P) / stride + 1, which must be a whole number."""
  out = (size - window + 2 * padding) / stride + 1
  if out < 1 or out != int(out):
    raise GeometryError(f'{name}: (N - F + 2P)/stride + 1 = ({size} - {window} + 2*{padding})/'
                        f'{stride} + 1 = {out:.2f} does not fit')
  return int(out)


class Conv(nnx.Module):
  """Square convolution with the paper's name, explicit symmetric padding (or 'SAME'), and bias."""

  def __init__(self, name: str, in_features: int, out_features: int, kernel_size: int,
               stride: int = 1, padding: int | str = 0, *, use_bias: bool = True,
               dtype=jnp.float32, rngs: nnx.Rngs, **kwargs):
    self.name, self.kernel_size, self.stride, self.padding = name, kernel_size, stride, padding
    pad = padding if isinstance(padding, str) else [(padding, padding)] * 2
    self.conv = nnx.Conv(in_features, out_features, (kernel_size, kernel_size), (stride, stride),
                         padding=pad, use_bias=use_bias, dtype=dtype, rngs=rngs, **kwargs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if not isinstance(self.padding, str):
      for size in x.shape[1:3]:
        check_fit(self.name, size, self.kernel_size, self.stride, self.padding)
    y = self.conv(x)
    _count(self, math.prod(y.shape[1:]) * self.kernel_size**2 * x.shape[-1])
    return y


class Linear(nnx.Module):
  """Fully connected layer that counts its multiply-accumulates."""

  def __init__(self, in_features: int, out_features: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.linear = nnx.Linear(in_features, out_features, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.linear(x)
    _count(self, x.shape[-1] * y.shape[-1])
    return y


def max_pool(name: str, x: jax.Array, window: int, stride: int, padding: int = 0) -> jax.Array:
  for size in x.shape[1:3]:
    check_fit(name, size, window, stride, padding)
  return nnx.max_pool(x, (window, window), (stride, stride), [(padding, padding)] * 2)


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

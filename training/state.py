"""The training state: a plain pytree of arrays, so jit, donation and Orbax see it directly.

The NNX module is split once into its static graph (kept outside, as `graphdef`) and two nested
dicts of arrays: trainable `params` and everything else (`batch_stats`: BatchNorm running
statistics). Steps rebuild the module with `nnx.merge` inside jit, which costs nothing at run time.
Dropout keys are derived from (seed, step), so no RNG state needs storing.

`ema_params`, the exponential moving average of the params (config.ema_decay > 0: the papers'
Polyak averaging), is None when averaging is off, and then no node of the tree at all: a state
without it has exactly the tree, and so the checkpoints, of states from before the field existed.
`ema_batch_stats`, the average of the BatchNorm statistics (config.ema_batch_stats: TF-slim's
averaging), is likewise absent where None.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class TrainState:
  step: jax.Array
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  opt_state: optax.OptState
  ema_params: dict[str, Any] | None = None  # Same tree as params; None: no averaging.
  ema_batch_stats: dict[str, Any] | None = None  # Same tree as batch_stats; None: not averaged.

  def replace(self, **changes) -> 'TrainState':
    return dataclasses.replace(self, **changes)

  def averaged(self) -> 'TrainState':
    """The model that evaluations score: the averages in place of the params and, where averaged,
    the BatchNorm statistics; no averages of its own."""
    batch_stats = self.batch_stats if self.ema_batch_stats is None else self.ema_batch_stats
    return self.replace(params=self.ema_params, batch_stats=batch_stats, ema_params=None,
                        ema_batch_stats=None)


_OPTIONAL = ('ema_params', 'ema_batch_stats')


def _children(state: TrainState):
  # An absent average is no node, not a None leaf: Orbax would record one.
  names = [f.name for f in dataclasses.fields(state)
           if not (f.name in _OPTIONAL and getattr(state, f.name) is None)]
  return [(jax.tree_util.GetAttrKey(n), getattr(state, n)) for n in names], tuple(names)


jax.tree_util.register_pytree_with_keys(
    TrainState, _children, lambda names, children: TrainState(**dict(zip(names, children))))


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def create_train_state(model: nnx.Module,
                       tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
  graphdef, params, batch_stats = split_model(model)
  return graphdef, TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              batch_stats=batch_stats, opt_state=tx.init(params))


def with_ema(state: TrainState, batch_stats: bool = False) -> TrainState:
  """`state` with an average that starts at its params, and with `batch_stats` at its BatchNorm
  statistics too (as TensorFlow's ExponentialMovingAverage starts at the variables' values), in
  arrays of their own: a donated state must not hold one buffer twice."""
  return state.replace(ema_params=jax.tree.map(jnp.copy, state.params),
                       ema_batch_stats=jax.tree.map(jnp.copy, state.batch_stats)
                       if batch_stats else None)


def count_params(params) -> int:
  """Trainable parameters (torchvision's convention: BatchNorm scale and bias count, its
  statistics do not)."""
  return sum(x.size for x in jax.tree.leaves(params))

"""The training state: a plain pytree of arrays, so jit, donation and Orbax see it directly.

The NNX module is split once into its static graph (kept outside, as `graphdef`) and two nested
dicts of arrays: trainable `params` and everything else (`batch_stats`: BatchNorm running
statistics). Steps rebuild the module with `nnx.merge` inside jit, which costs nothing at run time.
Dropout keys are derived from (seed, step), so no RNG state needs storing.

`ema_params`, the exponential moving average of the params (config.ema_decay > 0: the papers'
Polyak averaging), is None when averaging is off, and then no node of the tree at all: a state
without it has exactly the tree, and so the checkpoints, of states from before the field existed.
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

  def replace(self, **changes) -> 'TrainState':
    return dataclasses.replace(self, **changes)


def _children(state: TrainState):
  names = [f.name for f in dataclasses.fields(state)]
  if state.ema_params is None:  # Absent, not a None leaf: Orbax would record one.
    names.remove('ema_params')
  return [(jax.tree_util.GetAttrKey(n), getattr(state, n)) for n in names], None


jax.tree_util.register_pytree_with_keys(TrainState, _children,
                                        lambda _, children: TrainState(*children))


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def create_train_state(model: nnx.Module,
                       tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
  graphdef, params, batch_stats = split_model(model)
  return graphdef, TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              batch_stats=batch_stats, opt_state=tx.init(params))


def with_ema(state: TrainState) -> TrainState:
  """`state` with an average that starts at its params (as TensorFlow's ExponentialMovingAverage
  starts at the variables' values), in arrays of their own: a donated state must not hold one
  buffer twice."""
  return state.replace(ema_params=jax.tree.map(jnp.copy, state.params))


def count_params(params) -> int:
  """Trainable parameters (torchvision's convention: BatchNorm scale and bias count, stats do not)."""
  return sum(x.size for x in jax.tree.leaves(params))

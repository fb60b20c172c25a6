"""The training state: a plain pytree of arrays, so jit, donation and Orbax see it directly.

The NNX module is split once into its static graph (kept outside, as `graphdef`) and two nested
dicts of arrays: trainable `params` and everything else (`batch_stats`: BatchNorm running
statistics). Steps rebuild the module with `nnx.merge` inside jit, which costs nothing at run time.
Dropout keys are derived from (seed, step), so no RNG state needs storing.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct


@struct.dataclass
class TrainState:
  step: jax.Array
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  opt_state: optax.OptState


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def create_train_state(model: nnx.Module,
                       tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
  graphdef, params, batch_stats = split_model(model)
  return graphdef, TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              batch_stats=batch_stats, opt_state=tx.init(params))


def count_params(params) -> int:
  """Trainable parameters (torchvision's convention: BatchNorm scale and bias count, stats do not)."""
  return sum(x.size for x in jax.tree.leaves(params))

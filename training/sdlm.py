"""The stochastic diagonal Levenberg-Marquardt method of LeCun et al. (1998), appendix C.

Each parameter w_k has its own step size, the global learning rate divided by mu plus an estimate
h_kk of the loss's second derivative with respect to w_k:

    w_k <- w_k - eta / (mu + h_kk) * dE^p / dw_k        (mu = 0.02 in the paper)

h_kk is re-estimated before each pass over the training set, on a few hundred training examples
(the paper: 500), and held fixed during the pass; `sdlm_every_examples` re-estimates it more often
(configs/lenet5_1998.py says why it does). The estimate itself is the model's
(`gauss_newton_diagonal(images)`, which `cnns/lenet1998.py` defines as the paper computes it); here
are the optimizer part (`scale_by_sdlm`, an optax transformation whose state holds h) and the
re-estimation (`Curvature`), run by the training loop at the start of every epoch.

The paper updated after every example (online). With a batch of B examples and the mean loss over
the batch, the same progress per example needs B times the paper's rate: configs give the
paper's rates for batch 1 (configs/lenet5_1998.py).
"""

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from training import mesh as mesh_lib
from training.errors import ConfigError
from training.state import TrainState
from training.steps import normalize


class SDLMState(NamedTuple):
  hessian: Any  # h_kk, in the tree of the params; zeros until the first estimate.


def scale_by_sdlm(mu: float) -> optax.GradientTransformation:
  """Divides each gradient by mu + h_kk (then `optax.scale_by_learning_rate` applies -eta)."""

  def init(params):
    return SDLMState(jax.tree.map(jnp.zeros_like, params))

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda g, h: g / (mu + h), updates, state.hessian), state

  return optax.GradientTransformation(init, update)


def check(config, model: nnx.Module) -> None:
  """One line where the config asks for SDLM and cannot have it."""
  if not 0 < config.sdlm_mu < float('inf'):
    raise ConfigError(f'sdlm_mu={config.sdlm_mu} must be positive (the paper: 0.02)')
  if not isinstance(config.sdlm_every_examples, int):
    raise ConfigError(f'sdlm_every_examples={config.sdlm_every_examples} must be a whole number '
                      '(-1: once per epoch)')
  if config.sdlm_samples < 1:
    raise ConfigError(f'sdlm_samples={config.sdlm_samples} must be at least 1 (the paper: 500)')
  if not hasattr(model, 'gauss_newton_diagonal'):
    raise ConfigError(f"optimizer='sdlm' needs the model's estimate of the Hessian's diagonal; "
                      f'{config.model} has none (lenet5_1998 has)')


class Curvature:
  """Re-estimates h_kk into the optimizer state, when `due`, from the `sdlm_samples` training
  examples that come next in the epoch's order (rounded up to whole batches; fewer where the
  epoch has fewer left), so that a resumed run, which re-draws the same order, gets the same
  estimate."""

  def __init__(self, config, graphdef: nnx.GraphDef, steps_per_epoch: int, *, mean, std, dtype,
               out_sharding):
    self.num_batches = math.ceil(config.sdlm_samples / config.batch_size)
    every = config.sdlm_every_examples
    self._every_steps = (steps_per_epoch if every <= 0
                         else min(max(1, every // config.batch_size), steps_per_epoch))
    self._steps_per_epoch = steps_per_epoch

    def add(state: TrainState, sums, batch):
      model = nnx.merge(graphdef, state.params, state.batch_stats)
      images = normalize(batch['image'], mean, std, dtype)
      estimate = model.gauss_newton_diagonal(images)
      return jax.tree.map(lambda s, h: s + h, sums, estimate)

    self._add = jax.jit(add, out_shardings=out_sharding)
    self._zeros = jax.jit(lambda params: jax.tree.map(jnp.zeros_like, params),
                          out_shardings=out_sharding)
    # Jitted with the step's sharding: an estimate placed otherwise would make the train step
    # compile a second time for it.
    self._mean = jax.jit(lambda sums, count: jax.tree.map(lambda s: s / count, sums),
                         out_shardings=out_sharding)

  def due(self, step: int) -> bool:
    """Whether to re-estimate before `step`: at each epoch's start and every `_every_steps`."""
    return step % self._steps_per_epoch % self._every_steps == 0

  def refresh(self, state: TrainState, batches: Iterable[Any], data_sharding) -> TrainState:
    """`state` with h_kk the mean of the model's estimates over `batches` (host-local)."""
    sums, count = self._zeros(state.params), 0
    for batch in batches:
      sums = self._add(state, sums, mesh_lib.to_global(batch, data_sharding))
      count += 1
    hessian = self._mean(sums, count)
    return state.replace(opt_state=optax.tree_utils.tree_set(state.opt_state, hessian=hessian))

"""Jitted train and eval steps over a batch-sharded mesh, with metrics summed on the device.

Steps return running sums (loss, correct, examples) added into a metrics pytree passed in and
donated, so the host fetches nothing until it wants to log: no per-step synchronisation. The train
step also counts the examples of steps whose loss or new state holds a NaN or an infinity
('nonfinite'), which the loop checks whenever it fetches the sums anyway: divergence is caught at no
per-step host cost.

The train step also takes `lr_scale`, a float32 scalar multiplying the optimizer's updates (the
learning rate): the plateau schedule's factor, decided on the host once per evaluation and passed
as an argument, so that a change neither retraces nor puts the schedule's state in the optimizer.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from cnns.layers import AuxiliaryOutputs, batchnorm_training
from training import metrics as metrics_lib
from training.metrics import Metrics
from training.state import TrainState

TRAIN_METRICS = ('loss', 'top1_acc', 'nonfinite')


def zero_train_metrics() -> Metrics:
  """The sums a train step adds to, before its first step."""
  return metrics_lib.zero_metrics(*TRAIN_METRICS)


def _donate(*argnums: int) -> tuple[int, ...]:
  """Buffers to donate: on accelerators donation halves the state's memory; on the CPU backend it
  made LeNet-5's step about 1.4x slower (measured, 2-core x86 VM, JAX 0.10.2), so none there."""
  return () if jax.default_backend() == 'cpu' else argnums


def normalize(images: jax.Array, mean, std, dtype, lighting: jax.Array | None = None) -> jax.Array:
  """uint8 NHWC -> standardised `dtype`, on the device (4x fewer bytes cross the host link).

  `lighting` ([N, 3], 0-255 scale) is a per-image RGB offset added first: AlexNet's colour noise,
  which the input pipeline draws but does not round into the uint8 pixels.
  """
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  images = images.astype(jnp.float32)
  if lighting is not None:
    images = images + lighting[:, None, None, :]
  return ((images - mean) / std).astype(dtype)


def at_least_float32(x: jax.Array) -> jax.Array:
  """Logits for the loss and softmax: bfloat16 widened to float32, float64 kept (the float64
  reference the sharding tests compare against stays float64 end to end)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, *, mean, std,
                    dtype, num_classes: int, label_smoothing: float, seed: int,
                    out_sharding, aux_loss_weight: float = 0.0, bn_groups: int = 1,
                    bn_unbiased_var: bool = False, ema_decay: float = 0.0,
                    ema_counts_this_step: bool = False
                    ) -> Callable[..., tuple[TrainState, Metrics]]:
  """A jitted `(state, metrics, batch, lr_scale=1.0) -> (state, metrics)`; state and metrics are
  donated.

  The loss is softmax cross-entropy, or the model's own criterion where its class defines
  `loss(logits, targets) -> per-example loss` (the 1998 LeNet-5's equation 9). A model returning
  `AuxiliaryOutputs` in training (GoogLeNet) is trained on the main loss plus `aux_loss_weight` x
  each auxiliary loss; the logged loss is that total, accuracy the main head's.
  `bn_groups` > 1 gives BatchNorm per-group statistics (per device: see `cnns.layers.BatchNorm`),
  `bn_unbiased_var` its running variance with Bessel's correction (PyTorch's).
  `ema_decay` > 0 updates `state.ema_params` after each optimizer step as TensorFlow's
  `ExponentialMovingAverage(ema_decay, num_updates=step)` of the Inception authors' training:
  decay min(ema_decay, (1 + t) / (10 + t)) at step t, the steps done before this one (or with
  `ema_counts_this_step`, including it: TF-slim's global step once apply_gradients has counted
  the step), so that the average forgets its random start quickly; the decay in float32, as
  TensorFlow computes it. By default only params are averaged: BatchNorm's statistics are running
  averages already (the Inception authors' script averaged them once more, "for
  backward-compatibility", and TF-slim's averages every model variable); a state with
  `ema_batch_stats` averages the new statistics likewise.
  """

  def train_step(state: TrainState, metrics: Metrics, batch, lr_scale=1.0):
    images = normalize(batch['image'], mean, std, dtype, batch.get('lighting'))
    labels = batch['label']
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    dropout_key = jax.random.fold_in(jax.random.key(seed), state.step)

    def loss_fn(params):
      model = nnx.merge(graphdef, params, state.batch_stats)
      model.train()
      with batchnorm_training(bn_groups, bn_unbiased_var):
        # Rngs made inside the differentiated function: NNX RNG streams are trace-local state.
        outputs = model(images, rngs=nnx.Rngs(dropout=dropout_key))
      logits, aux_logits = ((outputs.logits, outputs.aux_logits)
                            if isinstance(outputs, AuxiliaryOutputs) else (outputs, ()))
      criterion = getattr(model, 'loss', optax.softmax_cross_entropy)
      cross_entropy = lambda logits: criterion(at_least_float32(logits), targets).mean()
      loss = cross_entropy(logits) + sum(aux_loss_weight * cross_entropy(a) for a in aux_logits)
      _, _, batch_stats = nnx.split(model, nnx.Param, ...)
      return loss, (logits, nnx.to_pure_dict(batch_stats))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: (lr_scale * u).astype(u.dtype), updates)
    params = optax.apply_updates(state.params, updates)
    if ema_decay > 0:
      t = (state.step + ema_counts_this_step).astype(jnp.float32)
      decay = jnp.minimum(ema_decay, (1 + t) / (10 + t))
      average = lambda new, old: optax.incremental_update(new, old, 1 - decay)
      state = state.replace(ema_params=average(params, state.ema_params))
      if state.ema_batch_stats is not None:
        state = state.replace(ema_batch_stats=average(batch_stats, state.ema_batch_stats))
    state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                          opt_state=opt_state)
    n = labels.shape[0]
    finite = jnp.isfinite(loss) & all_finite(
        (state.params, state.batch_stats, state.ema_params, state.ema_batch_stats))
    metrics = {
        'count': metrics['count'] + n,
        'loss': metrics['loss'] + loss * n,
        'top1_acc': metrics['top1_acc'] + (metrics_lib.label_ranks(logits, labels) < 1).sum(),
        'nonfinite': metrics['nonfinite'] + jnp.where(finite, 0.0, n),
    }
    return state, metrics

  return jax.jit(train_step, donate_argnums=_donate(0, 1), out_shardings=out_sharding)


def mean_log_probabilities(graphdef: nnx.GraphDef, states: tuple[TrainState, ...],
                           images: jax.Array, *, mean, std, dtype, dense: bool = False,
                           mirror: bool = False, chunk: int | None = None) -> jax.Array:
  """Log of the softmax outputs averaged over models and views, as the papers average them.

  `states` is a tuple of models (one, or an ensemble of the same architecture). Images are
  [N, H, W, C], or [N, views, H, W, C] for multi-crop testing; `mirror` adds each view's mirror
  image; `dense` scores whole images with the model's fully-convolutional form (`model.dense`:
  VGG, ResNet). Views are evaluated `chunk` at a time (all at once if None), so that the device
  holds the activations of N x chunk images rather than of N x views. Returns [N, classes].
  """
  views = images[:, None] if images.ndim == 4 else images
  if mirror:
    views = jnp.concatenate([views, views[:, :, :, ::-1]], axis=1)
  n, num_views = views.shape[:2]

  def log_probs(x):  # [M, H, W, C] -> [models, M, classes]
    x = normalize(x, mean, std, dtype)
    out = []
    for state in states:
      model = nnx.merge(graphdef, state.params, state.batch_stats)
      model.eval()
      out.append(jax.nn.log_softmax(at_least_float32(model.dense(x) if dense else model(x))))
    return jnp.stack(out)

  if chunk is None or num_views <= chunk:
    per_view = log_probs(views.reshape(-1, *views.shape[2:])).reshape(len(states), n, num_views, -1)
    per_view = jnp.moveaxis(per_view, 2, 0)
  else:
    per_view = jax.lax.map(log_probs, jnp.swapaxes(views, 0, 1), batch_size=chunk)
  per_view = per_view.reshape(-1, n, per_view.shape[-1])  # [views x models, N, classes]
  return jax.nn.logsumexp(per_view, axis=0) - jnp.log(per_view.shape[0])


def make_eval_step(graphdef: nnx.GraphDef, *, mean, std, dtype, out_sharding, dense: bool = False,
                   mirror: bool = False, chunk: int | None = None
                   ) -> Callable[[tuple[TrainState, ...], Metrics, Any], Metrics]:
  """A jitted `(states, metrics, batch) -> metrics` adding `metrics.classification_sums` of
  `mean_log_probabilities` (for one model and one crop: the usual cross-entropy of the logits);
  rows whose `mask` is False count nowhere."""

  def eval_step(states: tuple[TrainState, ...], metrics: Metrics, batch):
    log_probs = mean_log_probabilities(graphdef, states, batch['image'], mean=mean, std=std,
                                       dtype=dtype, dense=dense, mirror=mirror, chunk=chunk)
    return metrics_lib.add(metrics, metrics_lib.classification_sums(log_probs, batch['label'],
                                                                    batch['mask']))

  return jax.jit(eval_step, donate_argnums=_donate(1), out_shardings=out_sharding)


def make_predict_step(graphdef: nnx.GraphDef, *, mean, std, dtype, dense: bool, mirror: bool,
                      chunk: int | None, out_sharding) -> Callable[[tuple, jax.Array], jax.Array]:
  """A jitted `(states, images) -> mean_log_probabilities` [N, classes]: evaluate.py combines its
  protocols' passes over the data per image on the host. Compiled once per image shape."""

  def predict(states: tuple[TrainState, ...], images):
    return mean_log_probabilities(graphdef, states, images, mean=mean, std=std, dtype=dtype,
                                  dense=dense, mirror=mirror, chunk=chunk)

  return jax.jit(predict, out_shardings=out_sharding)

"""The one implementation of the classification metrics: ranks, top-1 and top-5, loss, padding
masks and counts, for training's steps, train-time evaluation and evaluate.py's protocols alike.

The functions take NumPy arrays (evaluate.py's per-image combination of several passes, in float64
on the host) or JAX arrays (inside jitted steps, where the sums stay on the device until logged),
with the same semantics: a tie ranks the lower class first (as `argmax` and `lax.top_k` do), a
padding row (`mask` False) counts nowhere, and a row with a non-finite output counts as an example
got wrong, left out of the loss and counted in 'nonfinite'.
"""

import jax
import jax.numpy as jnp
import numpy as np

Metrics = dict[str, jax.Array]
EVAL_SUMS = ('loss', 'top1_acc', 'top5_acc', 'nonfinite')


def _numpy_or_jax(x):
  return np if isinstance(x, np.ndarray) else jnp


def _at_labels(scores, labels):
  """Each row's score of its label (a select, not a gather: under explicit sharding a gather of
  batch-sharded labels from differently sharded scores has no unambiguous output sharding)."""
  xp = _numpy_or_jax(scores)
  is_label = xp.arange(scores.shape[1]) == labels[:, None]
  return xp.where(is_label, scores, 0).sum(axis=1)


def label_ranks(scores, labels):
  """How many classes rank above each row's label: a higher score, or an equal one at a lower
  index. `scores` must be finite (classification_sums masks the rows that are not)."""
  xp = _numpy_or_jax(scores)
  truth = _at_labels(scores, labels)[:, None]
  classes = xp.arange(scores.shape[1])
  return ((scores > truth) | ((scores == truth) & (classes < labels[:, None]))).sum(axis=1)


def classification_sums(log_probs, labels, mask) -> dict:
  """Sums over the real rows of `log_probs` [N, classes]: 'count', 'top1_acc' and 'top5_acc'
  (correct rows), 'loss' (cross-entropy of the rows with finite outputs), 'nonfinite' (rows
  without)."""
  xp = _numpy_or_jax(log_probs)
  finite = xp.isfinite(log_probs).all(axis=1)
  scored = mask & finite
  log_probs = xp.where(finite[:, None], log_probs, 0)
  rank = label_ranks(log_probs, labels)
  return {'count': mask.sum(), 'top1_acc': (scored & (rank < 1)).sum(),
          'top5_acc': (scored & (rank < 5)).sum(),
          'loss': xp.where(scored, -_at_labels(log_probs, labels), 0).sum(),
          'nonfinite': (mask & ~finite).sum()}


def zero_metrics(*names: str) -> Metrics:
  return {name: jnp.zeros((), jnp.float32) for name in ('count', *names)}


def add(metrics: Metrics, sums: dict) -> Metrics:
  """`metrics` plus `sums` (float32 on the device)."""
  return {k: v + jnp.asarray(sums[k], v.dtype) for k, v in metrics.items()}


def summarize(metrics: Metrics) -> dict[str, float]:
  """Fetches the sums (one host transfer) and turns them into means; 'num_examples' is the count."""
  sums = jax.device_get(metrics)
  count = float(sums['count'])
  out = {k: float(v) / max(count, 1.0) for k, v in sums.items() if k != 'count'}
  out['num_examples'] = int(count)
  return out


def evaluation_result(sums: dict) -> dict:
  """Means of evaluation sums: top-1 and top-5 over every example, the loss over those with
  finite outputs (None if none), and 'nonfinite', how many had none."""
  count, nonfinite = float(sums['count']), float(sums['nonfinite'])
  return {'loss': float(sums['loss']) / (count - nonfinite) if count > nonfinite else None,
          'top1_acc': float(sums['top1_acc']) / max(count, 1.0),
          'top5_acc': float(sums['top5_acc']) / max(count, 1.0),
          'num_examples': int(count), 'nonfinite': int(nonfinite)}

"""The training loop in-process: exact evaluation, checkpoint round trip, resume checks."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from configs import lenet5
from app import loop
from training import steps
from training.errors import ConfigError


def synthetic_config(**overrides):
  config = lenet5.get_config()
  config.update({'dataset': 'synthetic', 'synthetic_train_examples': 256,
                 'synthetic_eval_examples': 250, 'batch_size': 32, 'num_epochs': 1,
                 'log_every_steps': 4, **overrides})
  return config


def reference_eval(run):
  """Loss, top-1, top-5 over the eval split in one unpadded batch, reduced in float64 numpy."""
  (batch,) = run.source.eval_batches(run.source.num_eval_examples, 1)
  model = nnx.merge(run.graphdef, run.state.params, run.state.batch_stats)
  model.eval()
  spec = run.source.spec
  logits = np.asarray(model(steps.normalize(batch['image'], spec.mean, spec.std, np.float32)),
                      np.float64)
  labels = batch['label']
  loss = -jax.nn.log_softmax(logits)[np.arange(len(labels)), labels]
  rank = (logits > logits[np.arange(len(labels)), labels][:, None]).sum(axis=1)
  return {'loss': float(np.mean(loss)), 'top1_acc': float(np.mean(rank < 1)),
          'top5_acc': float(np.mean(rank < 5)), 'num_examples': len(labels)}


@pytest.mark.parametrize('eval_batch_size', [7, 64, 256, 1000])
def test_eval_counts_every_example_once_at_any_batch_size(tmp_path, eval_batch_size):
  with loop.Run(synthetic_config(eval_batch_size=eval_batch_size), str(tmp_path)) as run:
    run.train_epoch(0)
    result = run.evaluate(1)
    expected = reference_eval(run)
  assert result['num_examples'] == 250
  assert result['top1_acc'] == pytest.approx(expected['top1_acc'], abs=1e-9)
  assert result['top5_acc'] == pytest.approx(expected['top5_acc'], abs=1e-9)
  assert result['loss'] == pytest.approx(expected['loss'], rel=1e-5)


def test_checkpoint_round_trip_restores_state_and_step(tmp_path):
  with loop.Run(synthetic_config(), str(tmp_path)) as run:
    run.train_epoch(0)
    run.save()
  assert os.listdir(tmp_path / 'checkpoints') == ['8']
  with loop.Run(synthetic_config(), str(tmp_path)) as restored:
    assert restored.step == 8
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.state),
                 jax.device_get(run.state))
    # Optimizer state too: momentum buffers are not zero after 8 SGD steps.
    assert any(np.abs(x).sum() > 0 for x in jax.tree.leaves(restored.state.opt_state)
               if hasattr(x, 'dtype') and x.dtype == np.float32)


def test_resume_with_another_batch_size_is_refused_and_changes_nothing(tmp_path):
  with loop.Run(synthetic_config(), str(tmp_path)) as run:
    run.train_epoch(0)
    run.save()
  mtimes = lambda: {p: os.path.getmtime(p) for p in tmp_path.rglob('*') if p.name != 'train.lock'}
  before = mtimes()
  with pytest.raises(ConfigError, match='written with batch_size=32; this run has batch_size=64'):
    loop.Run(synthetic_config(batch_size=64), str(tmp_path))
  assert mtimes() == before


def test_train_and_evaluate_writes_metrics_and_improves(tmp_path):
  summary = loop.train_and_evaluate(synthetic_config(num_epochs=3, learning_rate=0.02),
                                    str(tmp_path))
  assert summary.steps == 24
  assert summary.last_eval['num_examples'] == 250
  assert summary.best_top1_acc > 0.5  # Ten classes: chance is 0.1.
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  train = [r for r in records if 'train/loss' in r]
  evals = [r for r in records if 'eval/top1_acc' in r]
  assert [r['step'] for r in evals] == [8, 16, 24]
  assert train[-1]['train/loss'] < train[0]['train/loss']
  assert all(r['train/img_per_sec'] > 0 for r in train)
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path))


def test_evaluation_whose_outputs_all_overflow_is_noted_and_logged_as_null(tmp_path, capsys):
  """Training stays finite while the evaluated model's outputs do not (as eval-mode BatchNorm
  can overflow): the images count as wrong, the loss is NaN (null in metrics.jsonl), with a
  note; nothing raises."""
  with loop.Run(synthetic_config(synthetic_eval_examples=40), str(tmp_path)) as run:
    run.train_epoch(0)
    params = run.state.params
    fc = params['fc5']['linear']
    run.state = run.state.replace(params={**params, 'fc5': {**params['fc5'], 'linear': {
        **fc, 'bias': fc['bias'].at[0].set(np.inf)}}})
    result = run.evaluate(1)
  assert np.isnan(result['loss']) and result['top1_acc'] == 0 and result['num_examples'] == 40
  assert "note: the models' outputs overflowed on 40 images" in capsys.readouterr().err
  with open(tmp_path / 'metrics.jsonl') as f:
    (evaluation,) = [json.loads(line) for line in f if '"eval/loss"' in line]
  assert evaluation['eval/loss'] is None

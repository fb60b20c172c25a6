"""A checkpoint written by an earlier version (commit 3fb1680, tests/fixtures/checkpoint_3fb1680,
written by its make.py) still restores and resumes exactly: the resumed run ends with the
parameters and logs the metrics that the uninterrupted run of that version reached."""

import json
import os
import shutil

import jax
import numpy as np

from configs import lenet5
from tests.conftest import ROOT, read_metrics
from app import inference, loop

FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'checkpoint_3fb1680')


def fixture_config(epochs: int):
  """make.py's config."""
  config = lenet5.get_config()
  config.update({'dataset': 'synthetic', 'synthetic_train_examples': 128,
                 'synthetic_eval_examples': 32, 'batch_size': 32, 'num_epochs': epochs,
                 'log_every_steps': 2, 'checkpoint_every_steps': 4})
  return config


def test_checkpoint_of_an_earlier_version_resumes_exactly(tmp_path):
  workdir = str(tmp_path / 'workdir')
  shutil.copytree(os.path.join(FIXTURE, 'workdir'), workdir)
  summary = loop.train_and_evaluate(fixture_config(2), workdir)
  assert summary.steps == 8
  restored = inference.load(fixture_config(2), workdir)
  got = {jax.tree_util.keystr(p): np.asarray(v) for p, v in
         jax.tree_util.tree_flatten_with_path((restored.params, restored.batch_stats))[0]}
  expected = np.load(os.path.join(FIXTURE, 'epoch2_params.npz'))
  assert sorted(got) == sorted(expected.files)
  for key in expected.files:
    np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-7, err_msg=key)
  with open(os.path.join(FIXTURE, 'epoch2_metrics.jsonl')) as f:
    uninterrupted = [json.loads(line) for line in f]
  drop = lambda r: {k: v for k, v in r.items() if k != 'train/img_per_sec'}
  assert [drop(r) for r in read_metrics(workdir)] == [drop(r) for r in uninterrupted]

"""Evaluation protocols: crops and ensembles averaged as softmax outputs (against float64 numpy),
restored checkpoints evaluated as training evaluated them, and evaluate.py's user errors."""

import json
import re

import numpy as np
import pytest
from flax import nnx

import cnns
from configs import lenet5
from app import evaluation, loop, weights
from training import steps
from training.metrics import EVAL_SUMS, summarize, zero_metrics
from training.state import TrainState, split_model
from tests.cli_runner import run_cli
from tests.conftest import assert_one_line_error
from training.errors import ConfigError

MEAN, STD = (100.0,), (50.0,)


def lenet_state(seed):
  model = cnns.create_model('lenet5', num_classes=10, in_channels=1, rngs=nnx.Rngs(seed))
  graphdef, params, batch_stats = split_model(model)
  return graphdef, TrainState(step=np.int32(0), params=params, batch_stats=batch_stats,
                                    opt_state=())


def test_crops_and_models_average_their_softmax_outputs():
  graphdef, first = lenet_state(0)
  _, second = lenet_state(1)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 3, 32, 32, 1), dtype=np.uint8)  # 6 images x 3 crops.
  labels = rng.integers(0, 10, 6).astype(np.int32)
  mask = np.array([True] * 5 + [False])
  eval_step = steps.make_eval_step(graphdef, mean=MEAN, std=STD, dtype=np.float32,
                                   out_sharding=None)
  got = summarize(eval_step((first, second), zero_metrics(*EVAL_SUMS),
                                  {'image': images, 'label': labels, 'mask': mask}))
  # Reference: every (model, crop) in float64, probabilities averaged, padding row dropped.
  probabilities = []
  for state in (first, second):
    model = nnx.merge(graphdef, state.params, state.batch_stats)
    model.eval()
    for crop in range(3):
      logits = np.asarray(model(steps.normalize(images[:, crop], MEAN, STD, np.float32)),
                          np.float64)
      e = np.exp(logits - logits.max(1, keepdims=True))
      probabilities.append(e / e.sum(1, keepdims=True))
  p = np.mean(probabilities, axis=0)[:5]
  truth = p[np.arange(5), labels[:5]]
  rank = (p > truth[:, None]).sum(1)
  np.testing.assert_allclose(got['loss'], -np.log(truth).mean(), rtol=1e-5)
  assert got['top1_acc'] == np.mean(rank < 1) and got['top5_acc'] == np.mean(rank < 5)
  assert got['num_examples'] == 5
  # evaluate.py's step: the same average, its views two at a time (lax.map) or with mirrors.
  for chunk in (None, 2):
    predict = steps.make_predict_step(graphdef, mean=MEAN, std=STD, dtype=np.float32,
                                      dense=False, mirror=False, chunk=chunk, out_sharding=None)
    np.testing.assert_allclose(np.exp(predict((first, second), images)[:5]), p, rtol=1e-5,
                               atol=1e-7)
  mirrored = steps.make_predict_step(graphdef, mean=MEAN, std=STD, dtype=np.float32, dense=False,
                                     mirror=True, chunk=4, out_sharding=None)
  both = np.concatenate([images, images[:, :, :, ::-1]], axis=1)
  plain = steps.make_predict_step(graphdef, mean=MEAN, std=STD, dtype=np.float32, dense=False,
                                  mirror=False, chunk=None, out_sharding=None)
  np.testing.assert_allclose(mirrored((first, second), images), plain((first, second), both),
                             rtol=1e-5, atol=1e-7)


def test_restored_checkpoint_scores_what_training_scored(tmp_path):
  config = lenet5.get_config()
  config.update({'dataset': 'synthetic', 'synthetic_train_examples': 256,
                 'synthetic_eval_examples': 100, 'batch_size': 32, 'eval_batch_size': 24,
                 'num_epochs': 1, 'learning_rate': 0.02})
  summary = loop.train_and_evaluate(config, str(tmp_path))
  alone = evaluation.evaluate_checkpoints(config, [str(tmp_path)], evaluation.Protocol())
  assert alone.checkpoint_steps == [summary.steps]
  twice = evaluation.evaluate_checkpoints(config, [str(tmp_path)] * 2,
                                         evaluation.Protocol())
  for key, value in summary.last_eval.items():  # An ensemble of one model twice is that model.
    np.testing.assert_allclose([alone.metrics[key], twice.metrics[key]], value, rtol=1e-6)
  # A paper's protocol that needs photographs falls back to the images as they are, saying so.
  result = run_cli('evaluate.py', *SYNTHETIC, '--config.synthetic_train_examples=256',
                        '--config.synthetic_eval_examples=100', '--config.batch_size=32',
                        '--config.eval_batch_size=24', '--config.paper.crops=10',
                        f'--workdir={tmp_path}')
  assert result.returncode == 0, result.stderr
  assert ("note: synthetic has no photographs to crop or rescale: evaluating the images as they "
          "are, not with the paper's AlexNet's 10 crops") in result.stdout
  with open(tmp_path / 'eval_results.json') as f:
    record = json.load(f)
  assert record['protocol']['views'] == 1 and not record['protocol']['paper']
  np.testing.assert_allclose(record['top1_acc'], alone.metrics['top1_acc'], rtol=1e-6)


def test_checkpoints_of_other_classes_are_refused_older_ones_compared_by_number(monkeypatch,
                                                                                 capsys):
  """evaluate.py's check before any weights are read (test_image_folder.py runs it on a folder
  with a class renamed): the class names each checkpoint recorded, or their number."""
  records = {'runs/new': {'config': {'num_classes': 3},
                          'dataset': {'class_names': ['cat', 'dog', 'fox']}},
             'runs/old': {'config': {'num_classes': 4}}}
  monkeypatch.setattr(weights, 'record', records.__getitem__)
  config = lenet5.get_config()
  config.dataset, config.data_dir = 'image_folder', '/data/pets'
  evaluation.check_classes(config, ['runs/new'], ['cat', 'dog', 'fox'])
  with pytest.raises(ConfigError, match=re.escape(
      'runs/new was trained on other classes than /data/pets has: 1 only in the checkpoint (fox), '
      '2 only in the data (lynx, wolf); evaluate it on data of its classes')):
    evaluation.check_classes(config, ['runs/new'], ['cat', 'dog', 'lynx', 'wolf'])
  with pytest.raises(ConfigError, match='runs/old was trained on 4 classes; /data/pets has 3'):
    evaluation.check_classes(config, ['runs/new', 'runs/old'], ['cat', 'dog', 'fox'])
  assert 'note: runs/old predates recorded class names' in capsys.readouterr().out


SYNTHETIC = ('--config=configs/lenet5.py', '--config.dataset=synthetic')


@pytest.mark.parametrize('args,message', [
    ((), 'no checkpoint in '),
    (('--crops=10',), 'synthetic is evaluated on its images as they are (--crops=1'),
    (('--scales=40,48',), 'synthetic is evaluated on its images as they are'),
    (('--crops=7',), '--crops=7: known crops per image are 1, 10, 50, 144'),
    (('--crops=10', '--flip'), '--flip: 10 crops include their mirror images already'),
    (('--crops=144', '--scales=256'), "--crops=144 is GoogLeNet's protocol at its own scales "
                                      '256, 288, 320, 352: drop --scales'),
    (('--crops=0',), '--crops=0 evaluates nothing without --dense'),
    (('--scales=a,b',), '--scales=a,b: shorter sides in pixels'),
    (('--protocol=paper', '--crops=1'), "--protocol=paper runs the paper's protocol: drop"),
    (('--crop_chunk=0',), '--crop_chunk=0 must be positive'),
])
def test_evaluate_errors_are_one_line_and_create_nothing(tmp_path, args, message):
  workdir = tmp_path / 'never_trained'
  result = run_cli('evaluate.py', *SYNTHETIC, f'--workdir={workdir}', *args)
  assert_one_line_error(result, message)
  assert not workdir.exists()

"""train.py as users run it: bad input, kill-and-resume, 1 vs 8 devices; and every entry point
once as a program.

The commands run in this process (tests/cli_runner.py) where the process is not what is tested;
in a subprocess where it is: a SIGKILL, another number of (fake) devices, and the entry points'
`if __name__ == '__main__'` start as `python` runs it."""

import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest
from PIL import Image

from app import assembly, loop
from tests.cli_runner import run_cli
from tests.conftest import (assert_one_line_error, read_metrics, run_in_one_process, run_program,
                            run_train, subprocess_env, train_command)

SYNTHETIC = ('--config=configs/lenet5.py', '--config.dataset=synthetic',
             '--config.synthetic_train_examples=512', '--config.synthetic_eval_examples=200',
             '--config.batch_size=64', '--config.log_every_steps=4')


def snapshot(path):
  """Every file and directory under `path` with its size and modification time."""
  if os.path.isfile(path):
    return {path: (os.path.getsize(path), os.path.getmtime(path))}
  return {os.path.join(d, n): (os.path.getsize(os.path.join(d, n)),
                               os.path.getmtime(os.path.join(d, n)))
          for d, dirs, files in os.walk(path) for n in dirs + files}


@pytest.fixture(scope='module')
def finished_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('finished'))
  result = run_cli('train.py', *SYNTHETIC, '--config.num_epochs=1', f'--workdir={workdir}')
  assert result.returncode == 0, result.stderr
  return workdir


BAD_INPUTS = {
    'unknown model': (['--config.model=lenet6'], 1, 'unknown model \'lenet6\'; known models: '),
    'unknown dataset': (['--config.dataset=imagenet9'], 1, 'known datasets: cifar10, '),
    'batch not divisible': (['--config.batch_size=12'], 8,
                            'batch_size=12 must be a positive multiple of the device count (8)'),
    'misspelt field': (['--config.batchsize=12'], 1, 'unknown config field'),
    'non-positive epochs': (['--config.num_epochs=0'], 1, 'num_epochs=0 must be positive'),
    'negative learning rate': (['--config.learning_rate=-0.1'], 1,
                               'learning_rate=-0.1 must be positive'),
    'label smoothing of 1.5': (['--config.label_smoothing=1.5'], 1,
                               'label_smoothing=1.5 must be in [0, 1)'),
    'missing config file': (['--config=configs/lenet7.py'], 1, 'configs/lenet7.py does not exist'),
    'per-device BN without BN': (['--config.batchnorm=per_device'], 1,
                                 "batchnorm='per_device' but lenet5 has no BatchNorm layers"),
    'incomplete cluster flags': (['--num_processes=2'], 1, '--process_id go together'),
    'window does not tile': (['--config.model=inception_resnet_v2', '--config.image_size=74'], 1,
                             'Conv2d_1a_3x3: (N - F + 2P)/stride + 1 = (74 - 3 + 2*0)/2 + 1 = '
                             '36.50'),
}


@pytest.mark.parametrize('case', BAD_INPUTS)
def test_bad_input_is_one_line_and_leaves_the_workdir_alone(case, finished_workdir):
  args, devices, message = BAD_INPUTS[case]
  before = snapshot(finished_workdir)
  args = (*SYNTHETIC, *args, f'--workdir={finished_workdir}')
  # Another number of devices needs a process with that many fake devices.
  result = run_cli('train.py', *args) if devices == 1 else run_train(*args, num_devices=devices)
  assert_one_line_error(result, message)
  assert snapshot(finished_workdir) == before


REFUSED_CONFIGS = {  # Each field's type and range, every number finite, the machine's memory.
    'negative image size': (['--config.image_size=-32'], 'image_size=-32 must be positive'),
    'images beyond the memory': (['--config.image_size=100000'],
                                 'image_size=100000: synthetic keeps 722 images of '
                                 '100000x100000x1 in host memory, 7.22TB, more than this '
                                 "machine's"),
    'no classes': (['--config.num_classes=0'],
                   "num_classes=0 must be positive, or -1 for the dataset's number of classes"),
    'no channels': (['--config.in_channels=0'],
                    "in_channels=0 must be positive, or -1 for the dataset's image channels"),
    'infinite learning rate': (['--config.learning_rate=inf'],
                               'learning_rate=inf must be a finite number'),
    'NaN momentum': (['--config.momentum=nan'], 'momentum=nan must be in [0, 1)'),
    'infinite decay factor': (['--config.lr_decay_factors=(10.0,1e999)'],
                              'lr_decay_factors=(10.0, inf) must hold finite numbers'),
    'batch of 0': (['--config.batch_size=0'], 'batch_size=0 must be positive'),
    'eval batch of 0': (['--config.eval_batch_size=0'],
                        'eval_batch_size=0 must be positive, or -1 for batch_size'),
    'negative seed': (['--config.seed=-1'], 'seed=-1 must not be negative'),
    'negative decay epoch': (['--config.lr_decay_epochs=(-3,)'],
                             'lr_decay_epochs=(-3,) must be epochs >= 0'),
    'unknown optimizer': (['--config.optimizer=adagrad'],
                          "unknown optimizer 'adagrad'; known: adam, adamw, rmsprop, sdlm, sgd"),
    'unknown decayed parameters': (['--config.weight_decay_params=biases'],
                                   "unknown weight_decay_params 'biases'; known: kernels, "
                                   'kernels_and_biases, all'),
    'unknown warm-up count': (['--config.ema_num_updates=after'],
                              "unknown ema_num_updates 'after'; known: before_step, after_step"),
    'float64 without 64-bit JAX': (['--config.dtype=float64'],
                                   "dtype='float64' needs JAX's 64-bit mode: set JAX_ENABLE_X64=1"),
    'unknown model option': (["--config.model_kwargs={'foo':1}"],
                             "model_kwargs={'foo': 1}: lenet5 got an unexpected keyword argument "
                             "'foo'"),
    'model option the config sets': (["--config.model_kwargs={'num_classes':5}"],
                                     "model_kwargs cannot set num_classes: the config's own "
                                     'fields do (--config.num_classes)'),
}


@pytest.mark.parametrize('case', REFUSED_CONFIGS)
def test_bad_config_is_refused_before_the_workdir_is_made(case, tmp_path):
  args, message = REFUSED_CONFIGS[case]
  workdir = tmp_path / 'run'
  assert_one_line_error(run_cli('train.py', *SYNTHETIC, *args, f'--workdir={workdir}'), message)
  assert not workdir.exists()


def test_config_file_that_does_not_load_is_one_line(tmp_path):
  config = tmp_path / 'mine.py'
  config.write_text('def get_config(:\n')
  result = run_cli('train.py', f'--config={config}', f'--workdir={tmp_path / "run"}')
  assert_one_line_error(result, 'the config file does not load: SyntaxError: invalid syntax '
                                '(mine.py, line 1)')
  assert not (tmp_path / 'run').exists()


def test_model_whose_training_state_cannot_fit_is_refused(tmp_path, monkeypatch):
  """LeNet-5's 61,706 float32 parameters, their gradients and momentum: 740 kB, more than the
  700 kB this device is given here."""
  monkeypatch.setattr(assembly, 'device_memory', lambda: 7 * 10**5)
  workdir = tmp_path / 'run'
  result = run_cli('train.py', *SYNTHETIC, f'--workdir={workdir}')
  assert_one_line_error(result, 'image_size=32: lenet5 has 61,706 parameters here; with their '
                        "gradients and the optimizer's buffer they take 740kB, more than a "
                        "device's 700kB; use a smaller image_size")
  assert not workdir.exists()


def test_image_size_whose_largest_activation_cannot_fit_is_refused(tmp_path, monkeypatch):
  """Checked on the abstract model: LeNet-5's conv1 output, 28x28x6 float32 for each of 64
  images, is 1.20 MB, more than the 1 MB this device is given here."""
  monkeypatch.setattr(assembly, 'device_memory', lambda: 10**6)
  workdir = tmp_path / 'run'
  result = run_cli('train.py', *SYNTHETIC, f'--workdir={workdir}')
  assert_one_line_error(result, "image_size=32: conv1's output alone for 64 images (a device's "
                        "share of batch_size=64) takes 1.20MB, more than a device's 1.00MB; use "
                        'a smaller image_size or batch_size')
  assert not workdir.exists()


@pytest.mark.parametrize('error, message', [
    (MemoryError(), 'out of memory (MemoryError)'),
    (jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory allocating 77433295976 '
                                'bytes.\nBuffers: ...'),
     'out of memory (RESOURCE_EXHAUSTED: Out of memory allocating 77433295976 bytes.)')])
def test_out_of_memory_past_the_checks_is_one_line(error, message, tmp_path, monkeypatch):
  """A config whose largest activation fits can still need more memory than the machine has."""
  def train_and_evaluate(config, workdir):
    raise error
  monkeypatch.setattr(loop, 'train_and_evaluate', train_and_evaluate)
  result = run_cli('train.py', *SYNTHETIC, f'--workdir={tmp_path}')
  assert_one_line_error(result, f'{message}; use a smaller batch_size or image_size')
  assert result.returncode == 2


def test_missing_dataset_says_where_to_put_the_files(tmp_path, finished_workdir):
  before = snapshot(finished_workdir)
  result = run_cli('train.py', '--config=configs/lenet5.py', '--config.dataset=mnist',
                   f'--config.data_dir={tmp_path}', f'--workdir={finished_workdir}')
  assert_one_line_error(result, 'put its files (t10k-images-idx3-ubyte.gz, ')
  assert f'{tmp_path}/downloads/manual/mnist' in result.stderr
  assert snapshot(finished_workdir) == before


def test_workdir_that_is_a_file_is_refused(tmp_path):
  path = tmp_path / 'notes.txt'
  path.write_text('mine')
  before = snapshot(str(path))
  result = run_cli('train.py', *SYNTHETIC, f'--workdir={path}')
  assert_one_line_error(result, 'is not a directory')
  assert snapshot(str(path)) == before and path.read_text() == 'mine'


def test_killed_run_resumes_to_the_same_final_metrics(tmp_path):
  # 32 steps per epoch, 5 epochs; killed once step 50 (inside epoch 2) is checkpointed. The
  # TFDS order's resumability is tested in test_input_pipeline; this tests the whole program.
  args = (*SYNTHETIC, '--config.synthetic_train_examples=2048', '--config.num_epochs=5',
          '--config.checkpoint_every_steps=10')
  reference = str(tmp_path / 'uninterrupted')
  assert run_cli('train.py', *args, f'--workdir={reference}').returncode == 0

  workdir = str(tmp_path / 'killed')
  process = subprocess.Popen(train_command(*args, f'--workdir={workdir}'),
                             env=subprocess_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    checkpoint = os.path.join(workdir, 'checkpoints', '50')
    deadline = time.time() + 300
    while not os.path.isdir(checkpoint) and time.time() < deadline and process.poll() is None:
      time.sleep(0.01)
    assert process.poll() is None, 'the run ended before it could be killed'
    process.send_signal(signal.SIGKILL)
  finally:
    process.kill()
    process.wait()
  assert not os.path.isdir(os.path.join(workdir, 'checkpoints', '160'))
  killed_at = max(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())

  resumed = run_cli('train.py', *args, f'--workdir={workdir}')  # The killed run's lock died.
  assert resumed.returncode == 0, resumed.stderr
  assert f'resumed at step {killed_at}' in resumed.stderr
  final, expected = read_metrics(workdir), read_metrics(reference)
  assert [r['step'] for r in final] == [r['step'] for r in expected]  # Each step logged once.
  for key in ('eval/loss', 'eval/top1_acc', 'eval/top5_acc', 'eval/num_examples'):
    assert final[-1][key] == expected[-1][key], key


def test_train_py_on_two_devices_starts_where_one_device_does(tmp_path):
  # train.py end to end on 1 and 2 devices (16 images each). Only the first step's loss, a forward
  # pass with the global batch's BatchNorm statistics, is compared: later float32 steps may differ
  # by rounding on another CPU (test_sharding.py compares several steps in float64 on eight).
  args = ('--config=configs/resnet18.py', '--config.dataset=synthetic', '--config.num_classes=10',
          '--config.image_size=32', '--config.synthetic_train_examples=64',
          '--config.synthetic_eval_examples=60', '--config.batch_size=32',
          '--config.eval_batch_size=16', '--config.learning_rate=0.01',
          '--config.log_every_steps=1', '--config.num_epochs=1')
  runs = [(1, 'global'), (2, 'global'), (2, 'per_device')]
  command = lambda devices, batchnorm: ['train.py', *args, f'--config.batchnorm={batchnorm}',
                                        f'--workdir={tmp_path / f"{devices}_{batchnorm}"}']
  # One device is this process's; both runs on two are in one process with two fake devices.
  results = [run_cli(*command(*runs[0])),
             *run_in_one_process([command(*run) for run in runs[1:]], num_devices=2)]
  records = {}
  for (devices, batchnorm), result in zip(runs, results, strict=True):
    assert result.returncode == 0, result.stderr
    assert f'{devices} device(s)' in result.stderr
    records[devices, batchnorm] = read_metrics(tmp_path / f'{devices}_{batchnorm}')
    assert [r['step'] for r in records[devices, batchnorm]] == [1, 2, 2]
    assert records[devices, batchnorm][-1]['eval/num_examples'] == 60  # 4 batches, last padded.
  first = {run: run_records[0]['train/loss'] for run, run_records in records.items()}
  np.testing.assert_allclose(first[2, 'global'], first[1, 'global'], rtol=1e-5)
  # Per-device BatchNorm normalises each device's shard by its own statistics.
  assert abs(first[2, 'per_device'] - first[1, 'global']) > 1e-3 * first[1, 'global']


def test_in_process_runs_end_as_processes_would(tmp_path):
  """tests/cli_runner.py: a bug is a traceback and status 1, absl's usage error its message and
  status 1, and each run knows only its own script's flags (--out is visualize.py's)."""
  buggy = tmp_path / 'buggy.py'
  buggy.write_text('from absl import app\n\ndef main(argv):\n  raise KeyError("bug")\n\n'
                   'app.run(main)\n')
  result = run_cli(str(buggy))
  assert result.returncode == 1, result
  assert 'Traceback' in result.stderr and result.stderr.endswith("KeyError: 'bug'\n")
  assert run_cli('visualize.py', '--config=configs/lenet5.py', f'--workdir={tmp_path}',
                 '--out=', '--max_tiles=0').returncode == 2  # Defines --out in this process.
  result = run_cli('predict.py', '--config=configs/lenet5.py', f'--workdir={tmp_path}')
  assert result.returncode == 1 and result.stderr.endswith('name one or more image files after '
                                                           'the flags\n'), result.stderr
  assert_one_line_error(run_cli('train.py', *SYNTHETIC, f'--workdir={tmp_path}', '--out=x'),
                        "Unknown command line flag 'out'")


# Each entry point started once by `python`, as users start it (the tests run them in this process
# otherwise): import_weights.py by test_published.py (it needs published weights), the others here
# on the finished run.
PROGRAMS = {  # program: (its arguments, what it prints)
    'train.py': ('{run} --config.num_epochs=1 --workdir={out}', 'done: 8 steps '),
    'evaluate.py': ('{run} --workdir={workdir}', 'this run '),
    'predict.py': ('{run} --workdir={workdir} {out}.png', '{out}.png\n'),
    'visualize.py': ('{run} --workdir={workdir} --out={out}', '{out}/index.html\n'),
    'plot_metrics.py': ('{workdir} --out={out}.png', '{out}.png\n'),
    '-m cnns.summary': ('--config=configs/lenet5.py', 'parameters:   61,706 '),
}


@pytest.mark.parametrize('program', PROGRAMS)
def test_entry_point_runs_as_a_program(program, finished_workdir, tmp_path):
  out = tmp_path / 'out'
  Image.new('L', (28, 28), 200).save(f'{out}.png')  # An image for predict.py.
  arguments, printed = (text.format(run=' '.join(SYNTHETIC), workdir=finished_workdir, out=out)
                        for text in PROGRAMS[program])
  result = run_program(program, *arguments.split())
  assert result.returncode == 0, result.stderr
  assert printed in result.stdout, result.stdout

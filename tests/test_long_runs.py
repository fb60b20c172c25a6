"""What a days-long run relies on: stops that save, divergence that saves nothing, damaged
checkpoints skipped, one run per workdir, logs that survive a crash, environment errors as one line.
"""

import contextlib
import errno
import gzip
import json
import os
import shutil
import signal
import subprocess
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import struct

from configs import lenet5
from tests.cli_runner import run_cli
from tests.conftest import (DEBIAN_FASHION_MNIST, ROOT, assert_one_line_error, read_metrics,
                            subprocess_env, train_command)
from app import cli, loop, weights, writers
from app.assembly import assemble_from_record
from app.workdir import write_atomic
from training.errors import ConfigError, Stopped

# 32 steps per epoch; training records every 8 steps.
ARGS = ('--config=configs/lenet5.py', '--config.dataset=synthetic',
        '--config.synthetic_train_examples=2048', '--config.synthetic_eval_examples=200',
        '--config.batch_size=64', '--config.log_every_steps=8', '--config.num_epochs=3',
        '--config.checkpoint_every_steps=1000')


def synthetic_config(**overrides):
  config = lenet5.get_config()
  config.update({'dataset': 'synthetic', 'synthetic_train_examples': 256,
                 'synthetic_eval_examples': 64, 'batch_size': 32, 'num_epochs': 3,
                 'log_every_steps': 4, 'checkpoint_every_steps': 8, **overrides})
  return config


def checkpoint_steps(workdir) -> list[int]:
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def assert_same_records(got: list[dict], expected: list[dict]) -> None:
  assert [r['step'] for r in got] == [r['step'] for r in expected]  # Each step logged once.
  for a, b in zip(got, expected):
    assert {k: v for k, v in a.items() if k != 'train/img_per_sec'} == {
        k: v for k, v in b.items() if k != 'train/img_per_sec'}


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  result = run_cli('train.py', *ARGS, f'--workdir={workdir}')
  assert result.returncode == 0, result.stderr
  return read_metrics(workdir)


def start_and_signal(workdir: str, signum: int, after_step: int) -> subprocess.CompletedProcess:
  """Starts train.py, sends `signum` once it has logged `after_step`; returns how it ended."""
  process = subprocess.Popen(train_command(*ARGS, f'--workdir={workdir}'), cwd=ROOT,
                             env=subprocess_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  try:
    metrics = os.path.join(workdir, 'metrics.jsonl')
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not (
        os.path.exists(metrics) and f'"step": {after_step},' in open(metrics).read()):
      time.sleep(0.01)
    assert process.poll() is None, 'the run ended before the signal'
    process.send_signal(signum)
    time.sleep(0.05)
    process.send_signal(signum)  # Impatient: a second one while it saves changes nothing.
    stdout, stderr = process.communicate(timeout=300)
  finally:
    process.kill()
  return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_saves_the_current_step_and_the_resumed_run_is_identical(
    tmp_path, uninterrupted, signum):
  workdir = str(tmp_path)
  stopped = start_and_signal(workdir, signum, after_step=8)
  assert stopped.returncode == 75, stopped.stderr
  name = signal.Signals(signum).name
  last = stopped.stderr.strip().splitlines()[-1]
  assert last.startswith(f'stopped: stopped by {name} at step ') and 'rerun the same' in last
  (step,) = checkpoint_steps(workdir)
  assert f'at step {step},' in last and 8 <= step < 96  # Not on the saving cadence (1000).

  resumed = run_cli('train.py', *ARGS, f'--workdir={workdir}')
  assert resumed.returncode == 0, resumed.stderr
  assert f'resumed at step {step}' in resumed.stderr
  # The sums since the last log travel in the checkpoint: even the training records are equal.
  assert_same_records(read_metrics(workdir), uninterrupted)


def test_divergence_saves_nothing_and_keeps_every_good_checkpoint(tmp_path):
  workdir = str(tmp_path)
  good = run_cli('train.py', *ARGS, '--config.num_epochs=1', '--config.checkpoint_every_steps=8',
                   f'--workdir={workdir}')
  assert good.returncode == 0, good.stderr
  assert checkpoint_steps(workdir) == [16, 24, 32]
  before = {s: open(os.path.join(workdir, 'checkpoints', str(s), 'data', 'metadata')).read()
            for s in (16, 24, 32)}

  diverged = run_cli('train.py', *ARGS, '--config.checkpoint_every_steps=8',
                       '--config.learning_rate=10000', f'--workdir={workdir}')
  assert diverged.returncode == 3, diverged.stderr
  last = diverged.stderr.strip().splitlines()[-1]
  assert last.startswith('error: training diverged: non-finite loss or parameters between step ')
  assert f'newest good checkpoint: step 32 in {workdir}/checkpoints' in last
  assert checkpoint_steps(workdir) == [16, 24, 32]  # Nothing saved, nothing rotated out.
  assert before == {s: open(os.path.join(workdir, 'checkpoints', str(s), 'data',
                                         'metadata')).read() for s in (16, 24, 32)}
  for line in open(os.path.join(workdir, 'metrics.jsonl')):
    json.loads(line, parse_constant=lambda c: pytest.fail(f'{c} in metrics.jsonl'))


def test_non_finite_numbers_are_written_as_null():
  line = writers.to_json({'step': 3, 'train/loss': float('nan'), 'x': float('inf'), 'y': 1.5})
  assert json.loads(line, parse_constant=pytest.fail) == {
      'step': 3, 'train/loss': None, 'x': None, 'y': 1.5}


@pytest.fixture(scope='module')
def saved_workdir(tmp_path_factory):
  """A finished in-process run with checkpoints at steps 8, 16 and 24."""
  workdir = str(tmp_path_factory.mktemp('saved'))
  loop.train_and_evaluate(synthetic_config(), workdir)
  assert checkpoint_steps(workdir) == [8, 16, 24]
  return workdir


def _largest_array_file(step_dir: str) -> str:
  files = [os.path.join(d, f) for d, _, names in os.walk(os.path.join(step_dir, 'state'))
           for f in names if os.sep + 'd' + os.sep in os.path.join(d, f) + os.sep]
  return max(files, key=os.path.getsize)


def _set_crc(step_dir: str) -> None:
  path = os.path.join(step_dir, 'data', 'metadata')
  record = json.load(open(path))
  record['state_crc32'] ^= 1
  json.dump(record, open(path, 'w'))


DAMAGES = {
    'truncated array file': lambda d: open(_largest_array_file(d), 'r+b').truncate(100),
    'garbage array file': lambda d: open(_largest_array_file(d), 'wb').write(os.urandom(4096)),
    'deleted _METADATA': lambda d: os.remove(os.path.join(d, 'state', '_METADATA')),
    'checksum mismatch': _set_crc,
    'record of another program': lambda d: json.dump(
        ['not', 'a', 'record'], open(os.path.join(d, 'data', 'metadata'), 'w')),
    'record naming no model': lambda d: json.dump(
        {'config': {}}, open(os.path.join(d, 'data', 'metadata'), 'w')),
    'empty newer step': lambda d: os.makedirs(os.path.join(os.path.dirname(d), '9999')),
}


@pytest.mark.parametrize('damage', DAMAGES)
def test_damaged_latest_checkpoint_falls_back_and_is_kept(tmp_path, saved_workdir, damage,
                                                           capsys):
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved_workdir, workdir)
  latest = os.path.join(workdir, 'checkpoints', '24')
  DAMAGES[damage](latest)
  skipped = '9999' if damage == 'empty newer step' else '24'
  with loop.Run(synthetic_config(), workdir) as run:
    expected = 24 if damage == 'empty newer step' else 16
    assert run.step == expected
  err = capsys.readouterr().err
  path = os.path.join(workdir, 'checkpoints', skipped)
  warnings = [line for line in err.splitlines() if line.startswith('warning: checkpoint')]
  assert len(warnings) == 1 and warnings[0].startswith(f'warning: checkpoint {path} ')
  aside = warnings[0].split(', moved to ')[1]
  assert aside.startswith(f'{path}.damaged-') and os.path.isdir(aside)  # Kept, out of the way.


def test_step_without_commit_markers_is_used_when_its_bytes_verify(tmp_path, saved_workdir,
                                                                   capsys):
  # On a local file system the atomic rename commits a step; the markers matter on object stores.
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved_workdir, workdir)
  for root, _, names in os.walk(os.path.join(workdir, 'checkpoints', '24')):
    for name in names:
      if name == 'commit_success.txt':
        os.remove(os.path.join(root, name))
  with loop.Run(synthetic_config(), workdir) as run:
    assert run.step == 24
  assert 'warning' not in capsys.readouterr().err


def test_non_finite_checkpoint_is_skipped(tmp_path, saved_workdir, capsys):
  """Flipped bytes that still decode, as NaN: saved through Orbax so that only the values lie."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved_workdir, workdir)
  with loop.Run(synthetic_config(), workdir) as run:
    params = run.state.params
    run.state = run.state.replace(params={**params, 'fc5': {**params['fc5'], 'linear': {
        **params['fc5']['linear'], 'bias': params['fc5']['linear']['bias'] * np.nan}}})
    record = {**run.record, 'train_metrics': {'count': 0.0, 'loss': 0.0, 'top1_acc': 0.0,
                                               'nonfinite': 0.0}}
    nan_state = run.state
  # What a NaN-writing bug or bit rot would leave: Orbax itself, bypassing the finite check.
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                             item_names=('state', 'data')) as manager:
    manager.save(30, args=ocp.args.Composite(state=ocp.args.StandardSave(nan_state),
                                             data=ocp.args.JsonSave(record)))
  with loop.Run(synthetic_config(), workdir) as run:
    assert run.step == 24
  assert 'checkpoints/30 holds non-finite numbers; skipped' in capsys.readouterr().err


def test_no_restorable_checkpoint_is_one_error_and_nothing_moves(tmp_path, saved_workdir):
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved_workdir, workdir)
  for step in ('16', '24'):
    DAMAGES['garbage array file'](os.path.join(workdir, 'checkpoints', step))
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '8', 'state'))
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  with pytest.raises(ConfigError, match='no checkpoint in .* restores'):
    loop.Run(synthetic_config(), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before == ['16', '24', '8']


def test_resume_refuses_meaning_changes_and_allows_the_others(tmp_path, saved_workdir, capsys):
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved_workdir, workdir)
  with pytest.raises(ConfigError, match=r'written with seed=0, synthetic_train_examples=256; '
                                        r'this run has seed=1, synthetic_train_examples=512'):
    loop.Run(synthetic_config(seed=1, synthetic_train_examples=512), workdir)
  # Another optimizer's state would not even restore: refused all the same, and nothing moves.
  with pytest.raises(ConfigError, match=r'written with optimizer=sgd; this run has optimizer=adam'):
    loop.Run(synthetic_config(optimizer='adam'), workdir)
  assert checkpoint_steps(workdir) == [8, 16, 24]
  assert not [d for d in os.listdir(os.path.join(workdir, 'checkpoints')) if 'damaged' in d]
  # -1 and the value it stands for are the same config.
  with loop.Run(synthetic_config(num_classes=-1), workdir) as run:
    assert run.step == 24
  with loop.Run(synthetic_config(learning_rate=0.01, num_epochs=5), workdir) as run:
    assert run.step == 24
  assert 'resuming with changed learning_rate: 0.05 -> 0.01, num_epochs: 3 -> 5' in (
      capsys.readouterr().err)
  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert saved['learning_rate'] == 0.01 and saved['data_shards'] == 1


def test_second_run_on_a_workdir_in_use_is_refused(tmp_path, saved_workdir, capsys):
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved_workdir, workdir)
  in_use_by = lambda holder: pytest.raises(ConfigError, match=rf'workdir {workdir} is in use by '
                                                              rf'{holder}')
  lock_file = os.path.join(workdir, 'train.lock')
  with loop.Run(synthetic_config(), workdir) as first:
    with in_use_by(rf'train.py \(process {os.getpid()} on '):
      loop.Run(synthetic_config(), workdir)
    os.remove(lock_file)  # Does not free the workdir, whose directory is locked too.
    with in_use_by('another process'):
      loop.Run(synthetic_config(), workdir)
    assert not os.path.exists(lock_file)  # The refused run made nothing.
    first.directory.check_lock()  # As before each save: the holder written again.
    with in_use_by(rf'train.py \(process {os.getpid()} on '):
      loop.Run(synthetic_config(), workdir)
    os.remove(lock_file)
    os.mkdir(lock_file)  # Cannot be written again: the run goes on, its workdir still locked.
    first.directory.check_lock()
    assert 'cannot be written again' in capsys.readouterr().err
    with in_use_by('another process'):
      loop.Run(synthetic_config(), workdir)
    os.rmdir(lock_file)
  with loop.Run(synthetic_config(), workdir) as run:  # Released when the first run ended.
    assert run.step == 24


# Lines of metrics.jsonl that are not records: damaged bytes, other programs' JSON, a torn line.
NOT_RECORDS = [b'\xff{"step": 3}', b'42', b'[1, 2]', b'"step"', b'{"epoch": 1.0}',
               b'{"step": 2.5}', b'{"step": "7"}', b'{"step": true}', b'{"step": 4, "x": "y"}',
               b'[' * 100000, b'{"step": 24, "train/lo']


def test_metrics_lines_that_are_not_records_are_moved_aside_with_one_warning(
    tmp_path, saved_workdir, capsys):
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved_workdir, workdir)
  path = os.path.join(workdir, 'metrics.jsonl')
  whole = open(path, 'rb').read()
  good = whole.splitlines(keepends=True)
  damaged = good[:2] + [line + b'\n' for line in NOT_RECORDS[:-1]] + good[2:] + NOT_RECORDS[-1:]
  with open(path, 'wb') as f:
    f.write(b''.join(damaged))
  with loop.Run(synthetic_config(), workdir) as run:
    assert run.step == 24
  warnings = [line for line in capsys.readouterr().err.splitlines() if 'warning' in line]
  assert len(warnings) == 1, warnings
  assert warnings[0].startswith(f'warning: {path}: 11 lines (3, 4, 5, 6, 7, ...) are not records '
                                'of train.py (torn by a crash or a full disk')
  aside = warnings[0].split('; moved to ')[1]
  assert aside.startswith(f'{path}.damaged-')
  assert open(path, 'rb').read() == whole
  assert open(aside, 'rb').read().splitlines() == NOT_RECORDS  # The user's bytes, kept.


def test_last_line_without_its_newline_is_completed(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1, "x": 1}\n{"step": 2, "x": 2}')
  assert writers.truncate_jsonl(str(path), 5) == [{'step': 1, 'x': 1}, {'step': 2, 'x': 2}]
  assert path.read_text() == '{"step": 1, "x": 1}\n{"step": 2, "x": 2}\n'


def test_stop_during_evaluation_saves_and_the_evaluation_is_redone(tmp_path):
  workdir = str(tmp_path)
  config = synthetic_config(checkpoint_every_steps=1000)
  with loop.Run(config, workdir) as run:
    run.train_epoch(0)
    run.stops.request('SIGTERM')  # As the signal would, while evaluating.
    with pytest.raises(Stopped, match='stopped by SIGTERM at step 8, saved'):
      run.evaluate(1)
  assert checkpoint_steps(workdir) == [8]
  assert not [r for r in read_metrics(workdir) if 'eval/loss' in r]
  loop.train_and_evaluate(config, workdir)
  assert [r['step'] for r in read_metrics(workdir) if 'eval/loss' in r] == [8, 16, 24]


def test_restarting_a_finished_run_logs_its_last_evaluation_once(tmp_path, saved_workdir):
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved_workdir, workdir)
  before = read_metrics(workdir)
  summary = loop.train_and_evaluate(synthetic_config(), workdir)
  assert read_metrics(workdir) == before
  assert summary.last_eval['top1_acc'] == before[-1]['eval/top1_acc']


@pytest.fixture
def read_only(tmp_path):
  """A function making a directory read-only, for root too (a read-only bind mount)."""
  mounted = []

  def make(path: str) -> None:
    if os.geteuid() != 0:
      os.chmod(path, 0o555)
      return
    for command in (['mount', '--bind', path, path],
                    ['mount', '-o', 'remount,ro,bind', path, path]):
      done = subprocess.run(command, capture_output=True, text=True)
      if done.returncode:
        pytest.skip(f'root cannot make a read-only bind mount here: {done.stderr.strip()}')
    mounted.append(path)

  yield make
  for path in mounted:
    subprocess.run(['umount', path], check=True)


def test_read_only_workdir_is_one_line_and_changes_nothing(tmp_path, saved_workdir, read_only):
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved_workdir, workdir)
  os.remove(os.path.join(workdir, 'train.lock'))
  before = {p: os.path.getmtime(p) for p in (tmp_path / 'run').rglob('*')}
  read_only(workdir)
  result = run_cli('train.py', '--config=configs/lenet5.py', '--config.dataset=synthetic',
                     '--config.synthetic_train_examples=256', '--config.batch_size=32',
                     f'--workdir={workdir}')
  assert_one_line_error(result, f'cannot write to workdir {workdir}: Read-only file system')
  assert {p: os.path.getmtime(p) for p in (tmp_path / 'run').rglob('*')} == before


def test_full_disk_while_saving_is_one_line_and_keeps_the_saved_step(tmp_path):
  """On a 1.2 MB tmpfs: LeNet-5's checkpoints (state and momentum: 0.5 MB each) fill it."""
  disk = tmp_path / 'disk'
  disk.mkdir()
  mount = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1200k', 'tmpfs', str(disk)],
                         capture_output=True, text=True)
  if mount.returncode:
    pytest.skip(f'cannot mount a small tmpfs (needs root): {mount.stderr.strip()}')
  try:
    workdir = str(disk / 'run')
    result = run_cli('train.py', *ARGS, '--config.checkpoint_every_steps=8',
                     '--config.keep_checkpoints=5', f'--workdir={workdir}')
    assert_one_line_error(result, 'disk full while saving step ')
    saved = checkpoint_steps(workdir)
    assert saved and f'step {saved[-1]} is intact' in result.stderr
    shutil.copytree(workdir, tmp_path / 'copy', ignore=shutil.ignore_patterns('*.orbax-*'))
  finally:
    subprocess.run(['umount', str(disk)], check=True)
  resumed = run_cli('train.py', *ARGS, '--config.num_epochs=1', f'--workdir={tmp_path / "copy"}')
  assert resumed.returncode == 0 and f'resumed at step {saved[-1]}' in resumed.stderr


def test_full_disk_replacing_a_file_is_one_line_naming_it_and_leaves_no_temporary(
    tmp_path, monkeypatch, capsys):
  """config.json, eval_results.json, metrics.jsonl: a rerun while the disk is still full."""
  path = tmp_path / 'config.json'
  path.write_text('{"old": 1}')

  def full_disk(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, 'fsync', full_disk)
  with pytest.raises(SystemExit) as exit_status:
    cli.run_reporting_errors(write_atomic, str(path), '{"new": 2}')
  assert exit_status.value.code == 2
  assert capsys.readouterr().err == f'error: No space left on device: {path}\n'
  assert os.listdir(tmp_path) == ['config.json'] and path.read_text() == '{"old": 1}'


def test_data_dir_that_is_a_file_is_one_line(tmp_path):
  path = tmp_path / 'data'
  path.write_text('not a directory')
  result = run_cli('train.py', '--config=configs/lenet5.py', f'--config.data_dir={path}',
                     f'--workdir={tmp_path / "run"}')
  assert_one_line_error(result, f'data_dir {path} is not a directory')
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('args,message', [
    (('--config=configs/lenet7.py',), 'config file configs/lenet7.py does not exist'),
    (('--config=configs/vgg16.py', '--batch_size=-5'),
     '--batch_size=-5: -5 is not a positive integer'),
    (('--config=configs/vgg16.py', '--config.bach_size=3'), 'unknown config field'),
])
def test_summary_errors_are_one_line(args, message):
  assert_one_line_error(run_cli('cnns.summary', *args), message)


def test_wrong_manual_files_are_refused_and_the_fixed_ones_are_prepared_afresh(tmp_path):
  """Valid IDX files whose training labels are all 0 are refused and nothing is kept but the
  user's files: once the user puts the original files there, preparation starts from them alone,
  as the session's `fashion_mnist_dir` prepares them (no stale extraction)."""
  data_dir = tmp_path / 'tfds'
  manual = data_dir / 'downloads' / 'manual' / 'fashion_mnist'
  manual.mkdir(parents=True)
  for name in os.listdir(DEBIAN_FASHION_MNIST):
    shutil.copy(os.path.join(DEBIAN_FASHION_MNIST, name), manual / name)
  with gzip.open(manual / 'train-labels-idx1-ubyte.gz', 'rb') as f:
    header = f.read(8)  # Magic 2049 and the count, then one byte per label.
  with gzip.open(manual / 'train-labels-idx1-ubyte.gz', 'wb') as f:
    f.write(header + bytes(60_000))

  result = run_cli('train.py', '--config=configs/lenet5.py', f'--config.data_dir={data_dir}',
                     f'--workdir={tmp_path / "run"}')
  assert_one_line_error(result, f'the files in {manual} are not the original fashion_mnist: its '
                                'train split has [60000, 0, 0, 0, 0, 0, 0, 0, 0, 0] examples')
  assert not (tmp_path / 'run').exists()
  left = sorted(str(path.relative_to(data_dir)) for path in data_dir.rglob('*'))
  assert left == ['downloads', 'downloads/manual', 'downloads/manual/fashion_mnist',
                  *(f'downloads/manual/fashion_mnist/{name}'
                    for name in sorted(os.listdir(DEBIAN_FASHION_MNIST)))]


@struct.dataclass
class FourFieldState:
  """The TrainState of checkpoints saved before `ema_params` existed."""
  step: jax.Array
  params: dict
  batch_stats: dict
  opt_state: object


def test_checkpoint_saved_before_ema_restores_and_refuses_turning_ema_on(tmp_path):
  workdir = str(tmp_path)
  config = synthetic_config(checkpoint_every_steps=1000)
  with loop.Run(config, workdir) as run:
    run.train_epoch(0)
    old = FourFieldState(run.state.step, run.state.params, run.state.batch_stats,
                         run.state.opt_state)
    record = json.loads(json.dumps({**run.record, 'train_metrics': {
        'count': 0.0, 'loss': 0.0, 'top1_acc': 0.0, 'nonfinite': 0.0}}))
    del record['config']['ema_decay']  # As recorded before the field.
    run.directory.checkpointer.save(run.step, old, record)
    params = jax.device_get(run.state.params)
  assert 'ema_params' not in (tmp_path / 'checkpoints' / '8' / 'state' / '_METADATA').read_text()
  with loop.Run(config, workdir) as run:
    assert run.step == 8 and run.state.ema_params is None
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(run.state.params), params)
  # evaluate.py and predict.py read it through the recorded config, which lacks the field.
  recorded = weights.recorded_config(workdir)
  _, abstract = assemble_from_record(config, recorded).abstract_state(
      ml_collections.ConfigDict(recorded))
  assert weights.restore(workdir, abstract)[1] == 8
  with pytest.raises(ConfigError, match=r'written with ema_decay=0.0; this run has '
                                        r'ema_decay=0.999: that changes what the saved state'):
    loop.Run(synthetic_config(checkpoint_every_steps=1000, ema_decay=0.999), workdir)
  # Nor can an old run switch to the plateau schedule, whose state starts with the run.
  with pytest.raises(ConfigError, match=r'written with lr_schedule=cosine; this run has '
                                        r'lr_schedule=plateau'):
    loop.Run(synthetic_config(checkpoint_every_steps=1000, lr_schedule='plateau'), workdir)


# Decays happen: 64 evaluation images reach 0 top-1 error, which no later evaluation improves.
PLATEAU = dict(lr_schedule='plateau', plateau_patience=1, plateau_max_decays=2, ema_decay=0.9,
               num_epochs=6, checkpoint_every_steps=1000)


def final_state(workdir: str, config):
  with loop.Run(config, workdir) as run:
    return jax.device_get(run.state), run.plateau.record()


def test_plateau_run_with_ema_resumes_exactly(tmp_path):
  """Stopped during the evaluation of epoch 2 (saved before it was applied: redone and applied),
  then finished at epoch 5 (saved after: redone, not applied again), then run to the end. Decays
  follow the evaluations of epochs 3 and 4; that of 5 leaves the scale at min_scale, up to a
  float32 rounding that the resumed run must use too."""
  config = synthetic_config(**PLATEAU)
  loop.train_and_evaluate(config, str(tmp_path / 'uninterrupted'))
  expected, expected_plateau = final_state(str(tmp_path / 'uninterrupted'), config)

  workdir = str(tmp_path / 'stopped')
  with loop.Run(config, workdir) as run:
    run.train_epoch(0)
    run.evaluate(1)
    run.train_epoch(1)
    run.stops.request('SIGTERM')
    with pytest.raises(Stopped, match='at step 16, saved'):
      run.evaluate(2)
  assert weights.record(workdir)['plateau']['epoch'] == 1
  loop.train_and_evaluate(synthetic_config(**{**PLATEAU, 'num_epochs': 5}), workdir)
  assert checkpoint_steps(workdir) == [16, 40]
  assert weights.record(workdir)['plateau']['epoch'] == 5
  loop.train_and_evaluate(config, workdir)

  got, plateau = final_state(workdir, config)
  assert plateau == expected_plateau and plateau['scale'] == pytest.approx(0.01)
  assert got.ema_params is not None
  jax.tree.map(np.testing.assert_array_equal, got, expected)
  assert_same_records(read_metrics(workdir), read_metrics(str(tmp_path / 'uninterrupted')))


def test_a_console_that_went_away_stops_nothing(tmp_path, monkeypatch):
  """`train.py | tee log` whose tee died with the ssh connection: the bar's writes fail, the run
  goes on, and its stop's one line has nowhere to go but the exit status is 75 all the same, a
  second signal ignored from there. A full disk while appending to metrics.jsonl names the file."""
  reader, writer = os.pipe()
  os.close(reader)
  closed = os.fdopen(writer, 'w')
  handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
  monkeypatch.setattr('sys.stderr', closed)
  try:
    progress = writers.Progress(total_steps=10, initial_step=0, enabled=True)
    progress.advance(1, loss='1.0')
    progress.print('epoch 1: eval ...')
    progress.close()
    with pytest.raises(SystemExit) as exit_status:
      cli.fail('stopped by SIGHUP at step 3', prefix='stopped', status=75)
    assert exit_status.value.code == 75
    assert all(signal.getsignal(s) == signal.SIG_IGN for s in handlers)
  finally:
    for signum, handler in handlers.items():
      signal.signal(signum, handler)
    monkeypatch.undo()
    with contextlib.suppress(OSError):
      closed.close()
  writer = writers.MetricWriter(str(tmp_path), resume_step=0, enabled=True)
  monkeypatch.setattr(writer, '_jsonl', open(os.devnull, 'r'))  # Writes fail (EBADF here).
  with pytest.raises(OSError) as error:
    writer.write(1, {'train/loss': 1.0})
  assert error.value.filename == os.path.join(str(tmp_path), 'metrics.jsonl')

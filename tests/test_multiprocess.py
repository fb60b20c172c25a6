"""Several train.py processes on this machine, joined by JAX's distributed runtime (CPU devices,
gloo collectives, coordinator on 127.0.0.1), against one process with the same global batch.
(What each process of a job reads of a TFDS dataset: test_input_pipeline.py, in process.)"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, read_metrics, subprocess_env, train_command
from training import distributed


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def processes(count: int, args: tuple[str, ...], log_dir: str, script: str = 'train.py',
              own_args: dict[int, tuple[str, ...]] | None = None, only: int | None = None):
  """Starts the `count` train.py (or `script`) processes of one job (one CPU device each), or
  `only` that one, process i with `args` and `own_args[i]`; kills any left on exit."""
  port = free_port()
  running = []
  try:
    for i in range(count) if only is None else (only,):
      log = open(os.path.join(log_dir, f'process_{i}.log'), 'w')
      running.append(subprocess.Popen(
          [sys.executable, os.path.join(ROOT, script), *args, *(own_args or {}).get(i, ()),
           f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={count}',
           f'--process_id={i}'],
          env=subprocess_env(1), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
    yield running
  finally:
    for p in running:
      if p.poll() is None:
        p.kill()
      p.wait()


def run_job(count: int, args: tuple[str, ...], log_dir: str, timeout: float = 600,
            script: str = 'train.py') -> list[str]:
  """Runs a job of `count` processes to completion; returns their logs."""
  with processes(count, args, log_dir, script) as running:
    deadline = time.time() + timeout
    for p in running:
      p.wait(timeout=max(1.0, deadline - time.time()))
    logs = [open(os.path.join(log_dir, f'process_{i}.log')).read() for i in range(count)]
    assert all(p.returncode == 0 for p in running), logs
  return logs


def run_one_process(args: tuple[str, ...], devices: int) -> None:
  result = subprocess.run(train_command(*args), env=subprocess_env(devices), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr


def assert_same_metrics(a, b, rtol=1e-6):
  assert [r['step'] for r in a] == [r['step'] for r in b]
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      if key != 'train/img_per_sec':
        np.testing.assert_allclose(y[key], x[key], rtol=rtol, err_msg=key)


JOB = ('--config=configs/lenet5.py', '--config.dataset=synthetic',
       '--config.synthetic_train_examples=2048', '--config.synthetic_eval_examples=200',
       '--config.batch_size=64', '--config.log_every_steps=8', '--config.num_epochs=3',
       '--config.data_shards=2')


@pytest.fixture(scope='module')
def job_reference(tmp_path_factory):
  """The metrics of JOB on one process with two devices, never interrupted."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  run_one_process((*JOB, f'--workdir={workdir}'), devices=2)
  return read_metrics(workdir)


def interrupt(job: tuple[str, ...], log_dir, signals: tuple[int | None, ...],
              ready) -> tuple[list[str], list[int]]:
  """Starts the two processes of `job`, sends process i `signals[i]` (None: nothing) once
  `ready()`, and waits for both: their logs and exit statuses."""
  with processes(2, job, str(log_dir)) as running:
    deadline = time.time() + 300
    while not ready():
      assert time.time() < deadline and all(p.poll() is None for p in running), 'ended early'
      time.sleep(0.01)
    for p, signum in zip(running, signals):
      if signum is not None:
        p.send_signal(signum)
    for p in running:
      p.wait(timeout=300)
  return ([open(os.path.join(log_dir, f'process_{i}.log')).read() for i in range(2)],
          [p.returncode for p in running])


def last_line(log: str) -> str:
  return [line for line in log.splitlines() if line.strip()][-1]


def test_an_interrupted_job_resumes_to_the_same_metrics(tmp_path, job_reference):
  """SIGHUP to process 0 and SIGINT to process 1 once step 8 is logged (checkpoints due only
  every 1000 steps): both become SIGTERM, whose preemption notice (JAX's notifier and Orbax's sync
  point) makes every process save the same step, at the signal, and exit with 75. The job resumes
  there, now saving every 10 steps, and process 1 is SIGKILLed once step 40 is saved: process 0
  ends at once with one line and 69, and the job resumes from that checkpoint. Each step is logged
  once, as by a job never stopped."""
  workdir = str(tmp_path / 'job')
  job = lambda every: (*JOB, f'--config.checkpoint_every_steps={every}', f'--workdir={workdir}')
  metrics = os.path.join(workdir, 'metrics.jsonl')
  saved = lambda: sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints'))
                         if d.isdigit())

  logs, statuses = interrupt(job(1000), tmp_path, (signal.SIGHUP, signal.SIGINT),
                             lambda: os.path.exists(metrics)
                             and '"step": 8,' in open(metrics).read())
  assert statuses == [75, 75], logs
  (stopped,) = saved()  # Not on the cadence: saved at the signal.
  assert 8 <= stopped < 96  # Mid-run (3 epochs of 32 steps).
  assert f'stopped: stopped by a preemption notice at step {stopped},' in logs[0]

  logs, statuses = interrupt(job(10), tmp_path, (None, signal.SIGKILL), lambda: os.path.isdir(
      os.path.join(workdir, 'checkpoints', '40')))
  assert f'resumed at step {stopped}' in logs[0]
  assert statuses == [69, -signal.SIGKILL], logs
  assert 'Traceback' not in logs[0]
  assert last_line(logs[0]).startswith('error: this job lost one of its processes'), logs[0]
  killed = saved()[-1]
  assert 40 <= killed < 96, saved()

  logs = run_job(2, job(10), str(tmp_path))
  assert f'resumed at step {killed}' in logs[0]
  assert_same_metrics(job_reference, read_metrics(workdir))  # Each step logged once, the same.
  assert 'done:' in logs[0] and 'done:' not in logs[1]  # Only process 0 writes logs.


def test_a_job_waits_visibly_and_refuses_processes_started_differently(tmp_path):
  """Process 0 alone says at once that it waits for the others, and Ctrl-C ends the wait;
  process 1 alone ends with one line when --join_timeout_seconds have passed. Two
  processes given different batch sizes both end with one line naming the field, before any
  collective (where they would wait for each other forever)."""
  job = (*JOB, f'--workdir={tmp_path / "job"}')
  with processes(2, job, str(tmp_path), only=0) as (alone,):
    log = os.path.join(tmp_path, 'process_0.log')
    deadline = time.time() + 120
    while 'joining the job' not in open(log).read():
      assert time.time() < deadline and alone.poll() is None, open(log).read()
      time.sleep(0.05)
    alone.send_signal(signal.SIGINT)  # As SIGTERM: joining blocks where Python's handler can't run.
    assert alone.wait(timeout=30) == -signal.SIGINT
  assert 'process 0 of 2, coordinator' in open(log).read()
  with processes(2, (*job, '--join_timeout_seconds=2'), str(tmp_path), only=1) as (alone,):
    assert alone.wait(timeout=120) == 2
  assert last_line(open(os.path.join(tmp_path, 'process_1.log')).read()).startswith(
      "error: the job's processes did not all join within 2 s (process 1 of 2, coordinator ")

  with processes(2, job, str(tmp_path), own_args={1: ('--config.batch_size=32',)}) as running:
    statuses = [p.wait(timeout=300) for p in running]
  logs = [open(os.path.join(tmp_path, f'process_{i}.log')).read() for i in range(2)]
  assert statuses == [2, 2], logs
  for log in logs:
    assert 'Traceback' not in log
    assert last_line(log) == ('error: process 1 was started with config.batch_size=32 where '
                              'process 0 has 64: start every process of a job with the same '
                              'config and flags'), log
  assert not os.path.exists(tmp_path / 'job')  # Refused before the workdir.


def test_the_first_difference_between_processes_is_named():
  mine = {'code': {'train.py': 'a', 'app/loop.py': 'b'}, 'config': {'seed': '0'},
          'flags': {'workdir': 'runs/x'}}
  other = lambda **parts: {**mine, **parts}
  assert distributed.disagreement(mine, mine, 3) is None
  assert distributed.disagreement(mine, other(code={'train.py': 'a'}, config={}), 3) == (
      'process 3 runs other code than process 0 (1 file(s) differ: app/loop.py): run the same '
      'checkout on every host')
  assert distributed.disagreement(mine, other(flags={}), 1) == (
      'process 1 was started with --workdir=(not given) where process 0 has runs/x: start every '
      'process of a job with the same config and flags')
  code = distributed.code_version()
  assert 'train.py' in code and 'training/distributed.py' in code and len(code['train.py']) == 64

"""`train_and_evaluate(config, workdir)`: the whole recipe, top to bottom.

`Run` runs the loop: it trains an epoch, evaluates and saves. Everything else is a unit of its
own that it holds: the assembly (app/assembly.py: config, mesh, data, model, optimizer), the run's
directory (app/workdir.py: lock, checkpoints, config.json), the rules of resuming
(app/resume.py), stop requests (app/stops.py), the profiler (app/profiling.py), the evaluator
(app/evaluation.py) and the writers. Everything a user can get wrong is checked before the workdir
is touched, so a failed start never changes an existing run. `Run` is a context manager, so that
however training ends, pending saves finish, writers close and the workdir lock is released.

What a long run relies on (README, "When things go wrong"): SIGTERM, SIGINT, SIGHUP (and JAX's
preemption notice in a multi-process job) end the current step, save it and raise `Stopped`; a
non-finite loss or state raises `Diverged` and is never saved; a resume that would change what the
state or the data order means is refused; a file of the data that can no longer be read ends the
run with its steps saved (single process; a save is collective).
"""

import dataclasses
import os
import time

import jax
import numpy as np

from app import resume, weights
from app.assembly import assemble
from app.evaluation import Evaluator
from app.profiling import StepProfiler
from app.stops import StopRequests
from app.workdir import RunDirectory
from app.writers import MetricWriter, Progress
from input_pipeline import DataError
from training import mesh as mesh_lib
from training import metrics, optim, sdlm, steps
from training.errors import ConfigError, Diverged, NonFiniteError, Stopped
from training.state import count_params


@dataclasses.dataclass
class Summary:
  """What a finished run reached; also printed as the final console line."""
  steps: int
  best_top1_acc: float
  last_eval: dict[str, float]
  wall_seconds: float


class Run:
  """One training run: data, jitted steps, state (restored if the workdir has a checkpoint).

  Single process: from construction on, SIGTERM, SIGINT and SIGHUP stop the run: during set-up at
  once (nothing new to save), during training after the current step, saved, and during an
  evaluation at its next batch, after saving (the evaluation is redone on resume). With several
  processes SIGINT and SIGHUP become SIGTERM, whose JAX handler feeds the checkpointer's
  preemption notice instead, checked at every training step (an evaluation runs to its end).
  """

  def __init__(self, config, workdir: str):
    self._created = time.perf_counter()
    self.startup_seconds = None  # Construction to the end of the first step: see train_epoch.
    self.stops = StopRequests()
    try:
      self._set_up(config, workdir)
    except BaseException:
      self.stops.close()
      raise

  def _set_up(self, config, workdir: str) -> None:
    self.config = config
    self.assembly = assembly = assemble(config, [workdir])
    self.source = assembly.source
    self.local_batch = assembly.local_batch
    self.steps_per_epoch = self.source.num_train_examples // config.batch_size
    if self.steps_per_epoch == 0:
      raise ConfigError(f'batch_size={config.batch_size} exceeds the '
                        f'{self.source.num_train_examples} training examples')
    tx = assembly.optimizer(self.steps_per_epoch)
    notes = []
    self.graphdef, state = weights.initial_state(assembly, tx, workdir, note=notes.append)
    self._train_step = assembly.train_step(self.graphdef, tx)
    self._curvature = (sdlm.Curvature(config, self.graphdef, self.steps_per_epoch,
                                      out_sharding=assembly.replicated, **assembly.normalization)
                       if config.optimizer == 'sdlm' else None)
    self._lr_schedule = optim.learning_rate_schedule(config, self.steps_per_epoch)
    self.record = {'config': resume.resolved_config(config, assembly.architecture),
                   'dataset': resume.dataset_record(self.source)}

    # From here on the workdir is created and written, by this process only (the lock).
    self.directory = RunDirectory(workdir, every_steps=config.checkpoint_every_steps,
                                  keep=config.keep_checkpoints)
    self._checkpointer = self.directory.checkpointer
    try:
      self.state, saved, changes = self.directory.restore(
          jax.device_put(state, assembly.replicated), self.record, self.source.data_changes)
      # The plateau schedule's state travels in the record too (its scale set by evaluations).
      self.plateau = (optim.Plateau(config, saved.get('plateau'))
                      if config.lr_schedule == 'plateau' else None)
      self._set_lr_scale()
      self.step = int(self.state.step)
      self.directory.write_config(self.record['config'])
      is_chief = jax.process_index() == 0
      self.writer = MetricWriter(workdir, resume_step=self.step, enabled=is_chief)
      self.progress = Progress(total_steps=config.num_epochs * self.steps_per_epoch,
                               initial_step=self.step, enabled=is_chief)
      self.evaluator = Evaluator(assembly, self.graphdef, note=self.progress.print)
      self.progress.print(
          f'{config.model} on {config.dataset}: {count_params(self.state.params):,} parameters, '
          f'{jax.device_count()} device(s), {self.steps_per_epoch} steps/epoch, '
          + (f'resumed at step {self.step}' if self.step else 'starting'))
      if changes:
        self.progress.print(f'resuming with changed {changes}')
      for line in notes:
        self.progress.print(line)
      # The sums since the last log travel in the checkpoint: a resumed run logs the same numbers.
      train_sums = saved.get('train_metrics')
      self._train_metrics = jax.device_put(
          {k: np.float32(v) for k, v in train_sums.items()} if train_sums
          else steps.zero_train_metrics(), assembly.replicated)
    except BaseException:
      self.directory.close(step=0)
      raise
    self._checked_step = self.step  # Steps up to here are known to be finite.
    self._last_log = (time.time(), self.step)
    self.profiler = StepProfiler(config.profile_steps, os.path.join(workdir, 'profile'),
                                 self.progress.print)

  def __enter__(self) -> 'Run':
    self.stops.training_started()
    if self.stops.requested:  # Arrived at the very end of set-up.
      self._stop()
    return self

  def __exit__(self, kind, error, traceback) -> None:
    try:
      if isinstance(error, DataError) and jax.process_count() == 1:
        self.save()  # A file that can no longer be read: the steps trained until then are good.
    finally:
      self.close()

  def _set_lr_scale(self) -> None:
    self._lr_scale = jax.device_put(
        np.float32(self.plateau.scale if self.plateau else 1.0), self.assembly.replicated)

  def train_epoch(self, epoch: int) -> None:
    """Trains the rest of `epoch` (all of it unless resuming inside it), logging and saving.

    Raises `Stopped` after saving when a stop was requested, `Diverged` when a check finds a
    non-finite step (checks run at each log and save, where the host fetches the sums anyway).
    """
    config = self.config
    first_step = self.step - epoch * self.steps_per_epoch
    batches = mesh_lib.prefetch_to_device(
        self.source.train_batches(epoch, first_step, self.local_batch, self.steps_per_epoch),
        self.assembly.data_sharding, config.prefetch_to_device)
    for batch in batches:
      if self._curvature and self._curvature.due(self.step):  # SDLM's Hessian estimate.
        into = self.step - epoch * self.steps_per_epoch
        self.state = self._curvature.refresh(self.state, self.source.train_batches(
            epoch, into, self.local_batch, min(into + self._curvature.num_batches,
                                               self.steps_per_epoch)),
                                             self.assembly.data_sharding)
      self.profiler.before_step(self.step, self.state)
      self.state, self._train_metrics = self._train_step(self.state, self._train_metrics, batch,
                                                         self._lr_scale)
      self.step += 1
      if self.startup_seconds is None:
        self._first_step_done()
      if self.step % config.log_every_steps == 0:
        self._log_train()
      else:
        self.progress.advance(1)
      if self._checkpointer.reached_preemption(self.step):
        self.stops.request('a preemption notice')
      if self.stops.requested:
        self._stop()
      if self._checkpointer.due(self.step):
        self.save()

  def _first_step_done(self) -> None:
    """Waits for the first step (once per run: the loop never waits otherwise) and prints the
    time since construction: imports aside, what a user waits before training starts."""
    jax.block_until_ready(self._train_metrics)
    self.startup_seconds = time.perf_counter() - self._created
    self.progress.print(f'first step after {self.startup_seconds:.1f} s')
    if self.step % self.config.log_every_steps:  # Else this step's log spans the compilation.
      self._last_log = (time.time(), self.step)  # Compilation is not training throughput.

  def _stop(self) -> None:
    """Saves the current step, waits until it is on disk, and raises `Stopped`."""
    self.save()
    with self.directory.disk_full_as_one_line(self.step):
      self._checkpointer.wait()
    raise Stopped(f'stopped by {self.stops.reason} at step {self.step}, saved in '
                  f'{self._checkpointer.directory}; rerun the same command to resume')

  def save(self) -> None:
    """Saves the current step unless it is saved already; never a non-finite state."""
    if self.step == self._checkpointer.latest_step():
      return
    sums = {k: float(v) for k, v in jax.device_get(self._train_metrics).items()}
    self._check_finite(sums['nonfinite'])
    record = {**self.record, 'train_metrics': sums}
    if self.plateau:
      record['plateau'] = self.plateau.record()
    self.directory.check_lock()
    with self.directory.disk_full_as_one_line(self.step):
      try:
        self._checkpointer.save(self.step, self.state, record)
      except NonFiniteError:  # Only BatchNorm statistics can get here: the flag covers the rest.
        self._check_finite(1.0)

  def _check_finite(self, nonfinite: float) -> None:
    if nonfinite > 0:
      newest = self._checkpointer.latest_step()
      raise Diverged(
          f'training diverged: non-finite loss or parameters between step {self._checked_step} '
          f'and step {self.step}; nothing non-finite was saved; newest good checkpoint: '
          + (f'step {newest} in {self._checkpointer.directory}' if newest is not None else 'none')
          + ' (lower the learning rate, or check the data)')
    self._checked_step = self.step

  def _log_train(self) -> None:
    result = metrics.summarize(self._train_metrics)  # The only host sync of the training loop.
    self._check_finite(result.pop('nonfinite'))
    self._train_metrics = jax.device_put(steps.zero_train_metrics(),
                                         self.assembly.replicated)
    now = time.time()
    img_per_sec = ((self.step - self._last_log[1]) * self.config.batch_size
                   / (now - self._last_log[0]))
    self._last_log = (now, self.step)
    self.writer.write(self.step, {
        'epoch': self.step / self.steps_per_epoch, 'train/loss': result['loss'],
        'train/top1_acc': result['top1_acc'], 'train/img_per_sec': img_per_sec,
        'train/learning_rate': float(self._lr_schedule(self.step - 1))
                               * (self.plateau.scale if self.plateau else 1.0)})
    self.progress.advance(1, loss=f'{result["loss"]:.4f}', img_per_sec=f'{img_per_sec:,.0f}')

  def evaluate(self, epoch: int, *, write: bool = True) -> dict[str, float]:
    """Loss, top-1 and top-5 over the whole eval split, each example counted exactly once; of
    the averaged weights where `ema_decay` > 0 (what the papers evaluated). The 'plateau'
    schedule takes its top-1 error.

    A diverged state is not evaluated (`Diverged`); a stop requested meanwhile saves and raises
    `Stopped` at the next batch."""
    self._check_finite(float(jax.device_get(self._train_metrics['nonfinite'])))
    ema = self.state.ema_params is not None
    state = self.state.averaged() if ema else self.state
    result = self.evaluator((state,), interrupted=lambda: self.stops.requested)
    if result is None:
      self._stop()
    del result['nonfinite']  # Noted by the evaluator.
    if result['loss'] is None:  # No finite output: null in metrics.jsonl, NaN in TensorBoard.
      result['loss'] = float('nan')
    if write:
      self.writer.write(self.step, {'epoch': epoch,
                                    **{f'eval/{k}': v for k, v in result.items()}})
    self.progress.print(
        f'epoch {epoch}: eval{" of the EMA weights" if ema else ""} loss {result["loss"]:.4f}, '
        f'top-1 {result["top1_acc"]:.4f}, top-5 {result["top5_acc"]:.4f} on '
        f'{result["num_examples"]} examples')
    if self.plateau:
      if self.plateau.update(epoch, 1.0 - result['top1_acc']):
        self.progress.print(f'epoch {epoch}: top-1 error plateaued; learning rate scaled by '
                            f'{self.plateau.scale:g}')
      self._set_lr_scale()  # Exactly the saved scale, float32 roundings at min_scale included.
    self._last_log = (time.time(), self.step)  # Evaluation time is not training throughput.
    return result

  def logged_eval(self) -> bool:
    """Whether an earlier run of this workdir logged an evaluation at the current step."""
    return any(r['step'] == self.step and 'eval/loss' in r for r in self.writer.previous)

  def close(self) -> None:
    """Closes the writers, waits for pending saves, releases the workdir and the signals."""
    try:
      self.profiler.stop(self.state, self.step)
      self.progress.close()
      self.writer.close()
    finally:
      try:
        self.directory.close(self.step)
      finally:
        self.stops.close()


def train_and_evaluate(config, workdir: str) -> Summary:
  start_time = time.time()
  with Run(config, workdir) as run:
    best_top1 = max([r['eval/top1_acc'] or 0.0 for r in run.writer.previous
                     if 'eval/top1_acc' in r], default=0.0)
    due = lambda epoch: epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs
    evaluations = []
    first_epoch, into_epoch = divmod(run.step, run.steps_per_epoch)
    if (first_epoch and not into_epoch and due(first_epoch)) or first_epoch >= config.num_epochs:
      # Resumed at the end of an epoch (or of training): its evaluation may have been stopped.
      # Every process evaluates; it is logged only if it was not before.
      evaluations.append(run.evaluate(first_epoch, write=not run.logged_eval()))
    for epoch in range(first_epoch, config.num_epochs):
      run.train_epoch(epoch)
      if due(epoch + 1):
        evaluations.append(run.evaluate(epoch + 1))
    run.save()
  last_eval = evaluations[-1]
  best_top1 = max([best_top1] + [e['top1_acc'] for e in evaluations])
  summary = Summary(steps=run.step, best_top1_acc=best_top1, last_eval=last_eval,
                    wall_seconds=time.time() - start_time)
  if jax.process_index() == 0:
    print(f'done: {run.step} steps in {summary.wall_seconds / 60:.1f} min; last eval top-1 '
          f'{last_eval["top1_acc"]:.4f}, top-5 {last_eval["top5_acc"]:.4f} on '
          f'{last_eval["num_examples"]} examples; best top-1 {best_top1:.4f}')
  return summary

"""`train_and_evaluate(config, workdir)`: the whole recipe, top to bottom.

Everything a user can get wrong (config, model, data, batch geometry) is checked before the workdir
is touched, so a failed start never changes an existing run. `Run` holds one run's pieces so that
benchmarks can time `Run.train_epoch` exactly as training executes it; it is a context manager, so
that however training ends, pending saves finish, writers close and the workdir lock is released.

What a long run relies on (README, "When things go wrong"): SIGTERM and SIGINT (and JAX's
preemption notice in a multi-process job) end the current step, save it and raise `Stopped`; a
non-finite loss or state raises `Diverged` and is never saved; a resume that would change what the
state or the data order means is refused.
"""

import contextlib
import dataclasses
import json
import os
import signal
import time

import jax
import numpy as np
from flax import nnx

import cnns
import input_pipeline
from training import mesh as mesh_lib
from training import optim, sdlm, steps, weights
from training.checkpoints import Checkpointer, disk_full
from training.errors import ConfigError, Diverged, NonFiniteError, Stopped
from training.setup import set_up
from training.state import TrainState, count_params, create_train_state, with_ema
from training.workdir import WorkdirLock, write_atomic
from training.writers import MetricWriter, Progress

# Fields that fix what a checkpoint's state and position in the data order mean: a resume must
# keep them. Any other change (learning rate, epochs, cadence, ...) is allowed and printed.
MEANING_FIELDS = ('model', 'model_kwargs', 'dataset', 'image_size', 'num_classes', 'in_channels',
                  'input_convention', 'optimizer', 'ema_decay', 'batch_size', 'seed',
                  'data_shards', 'shuffle_buffer_size', 'synthetic_train_examples')


@dataclasses.dataclass
class Summary:
  """What a finished run reached; also printed as the final console line."""
  steps: int
  best_top1_acc: float
  last_eval: dict[str, float]
  wall_seconds: float


def evaluate_split(eval_step, states: tuple[TrainState, ...], source: input_pipeline.Source, *,
                   local_batch: int, num_steps: int, data_sharding, replicated,
                   interrupted=lambda: False) -> dict | None:
  """Loss, top-1 and top-5 accuracy over `source`'s eval split, each example counted once; None
  as soon as `interrupted()` (a stop requested in a single process)."""
  metrics = jax.device_put(steps.zero_metrics(*steps.EVAL_METRICS), replicated)
  for batch in source.eval_batches(local_batch, num_steps):
    if interrupted():
      return None
    metrics = eval_step(states, metrics, mesh_lib.to_global(batch, data_sharding))
  return steps.summarize(metrics)


class Run:
  """One training run: data, jitted steps, state (restored if the workdir has a checkpoint).

  Single process: from construction on, SIGTERM and SIGINT stop the run: during set-up at once
  (nothing new to save), during training after the current step, saved, and during an evaluation
  at its next batch, after saving (the evaluation is redone on resume). With several processes
  JAX's own SIGTERM handler feeds `reached_preemption` instead, checked at every step.
  """

  def __init__(self, config, workdir: str):
    self._created = time.perf_counter()
    self.startup_seconds = None  # Construction to the end of the first step: see train_epoch.
    self._profiling = False
    self._stop_signal = None
    self._training = False
    self._previous_handlers = {}
    if jax.process_count() == 1:
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
    try:
      self._set_up(config, workdir)
    except BaseException:
      self._restore_signal_handlers()
      raise

  def _set_up(self, config, workdir: str) -> None:
    setup = set_up(config, [workdir])
    self.config = config
    self._local_batch = mesh_lib.local_batch_size(config.batch_size)
    self._local_eval_batch = setup.local_eval_batch
    self._replicated, self._data_sharding = setup.replicated, setup.data_sharding
    self.source = setup.source
    self.steps_per_epoch = self.source.num_train_examples // config.batch_size
    if self.steps_per_epoch == 0:
      raise ConfigError(f'batch_size={config.batch_size} exceeds the '
                        f'{self.source.num_train_examples} training examples')
    self._num_eval_steps = input_pipeline.num_eval_steps(
        self.source.num_eval_examples, setup.eval_batch_size, jax.process_count())
    architecture, abstract = setup.architecture, setup.abstract_model
    # A fresh run starts from init_from's layers; a resumed one from its own checkpoints.
    init_source = (weights.check_init_from(config)
                   if config.init_from and not weights.has_checkpoint(workdir) else None)
    if config.batchnorm == 'per_device' and not any(
        isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(abstract)):
      raise ConfigError(f"batchnorm='per_device' but {config.model} has no BatchNorm layers")
    model = cnns.create_model(config.model, dtype=setup.dtype, rngs=nnx.Rngs(config.seed),
                              **architecture)
    tx = optim.create_optimizer(config, self.steps_per_epoch)
    if config.optimizer == 'sdlm':
      sdlm.check(config, model)
    self.graphdef, state = create_train_state(model, tx)
    notes = []
    if init_source is not None:
      state = weights.init_from(config, init_source, abstract, state, self._replicated,
                                note=notes.append)
    ema_decay = optim.ema_decay(config)
    if ema_decay > 0:  # Starts at the initial (or copied) params.
      state = with_ema(state)
    norm = setup.normalization
    self._train_step = steps.make_train_step(
        self.graphdef, tx, num_classes=architecture['num_classes'],
        label_smoothing=config.label_smoothing, seed=config.seed, out_sharding=self._replicated,
        aux_loss_weight=config.aux_loss_weight,
        bn_groups=jax.device_count() if config.batchnorm == 'per_device' else 1,
        ema_decay=ema_decay, **norm)
    self._eval_step = steps.make_eval_step(self.graphdef, out_sharding=self._replicated, **norm)
    self._curvature = (sdlm.Curvature(config, self.graphdef, self.steps_per_epoch,
                                      out_sharding=self._replicated, **norm)
                       if config.optimizer == 'sdlm' else None)
    self._lr_schedule = optim.learning_rate_schedule(config, self.steps_per_epoch)
    self._record = {'config': resolved_config(config, architecture),
                    'dataset': dataset_record(self.source)}

    # From here on the workdir is created and written, by this process only (the lock).
    is_chief = jax.process_index() == 0
    self._lock = WorkdirLock(workdir)
    self._lock.acquire()
    self._checkpointer = None
    try:
      self._checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                                        every_steps=config.checkpoint_every_steps,
                                        keep=config.keep_checkpoints)
      state = jax.device_put(state, self._replicated)
      changes = []
      check = lambda saved, step: changes.append(check_resume(saved, self._record, step))
      restored = self._checkpointer.restore_latest(state, check_record=check)
      train_sums, saved = None, {}
      if restored is not None:
        state, saved, _ = restored
        train_sums = saved.get('train_metrics')
      self.state = state
      # The plateau schedule's state travels in the record too (its scale set by evaluations).
      self._plateau = (optim.Plateau(config, saved.get('plateau'))
                       if config.lr_schedule == 'plateau' else None)
      self._set_lr_scale()
      self.step = int(self.state.step)
      if is_chief:
        write_atomic(os.path.join(workdir, 'config.json'),
                     json.dumps(self._record['config'], indent=2, sort_keys=True) + '\n')
      self.writer = MetricWriter(workdir, resume_step=self.step, enabled=is_chief)
      self.progress = Progress(total_steps=config.num_epochs * self.steps_per_epoch,
                               initial_step=self.step, enabled=is_chief)
      self.progress.print(
          f'{config.model} on {config.dataset}: {count_params(self.state.params):,} parameters, '
          f'{jax.device_count()} device(s), {self.steps_per_epoch} steps/epoch, '
          + (f'resumed at step {self.step}' if self.step else 'starting'))
      if changes and changes[0]:
        self.progress.print(f'resuming with changed {changes[0]}')
      for line in notes:
        self.progress.print(line)
      # The sums since the last log travel in the checkpoint: a resumed run logs the same numbers.
      self._train_metrics = jax.device_put(
          {k: np.float32(v) for k, v in train_sums.items()} if train_sums
          else steps.zero_metrics(*steps.TRAIN_METRICS), self._replicated)
    except BaseException:
      if self._checkpointer is not None:
        self._checkpointer.close()
      self._lock.release()
      raise
    self._checked_step = self.step  # Steps up to here are known to be finite.
    self._last_log = (time.time(), self.step)
    self._profile_dir = os.path.join(workdir, 'profile')

  def __enter__(self) -> 'Run':
    self._training = True
    if self._stop_signal:  # Arrived at the very end of set-up.
      self._stop()
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def _request_stop(self, signum, frame) -> None:
    del frame
    if self._stop_signal:
      return  # A second signal while saving changes nothing.
    self._stop_signal = signal.Signals(signum).name
    if not self._training:  # Set-up has nothing to save: stop it where it is.
      raise Stopped(f'stopped by {self._stop_signal} before training started; rerun the same '
                    'command to start')

  def _restore_signal_handlers(self) -> None:
    for signum, handler in self._previous_handlers.items():
      signal.signal(signum, handler)
    self._previous_handlers = {}

  def _set_lr_scale(self) -> None:
    self._lr_scale = jax.device_put(
        np.float32(self._plateau.scale if self._plateau else 1.0), self._replicated)

  def _zero_metrics(self, names):
    return jax.device_put(steps.zero_metrics(*names), self._replicated)

  def train_epoch(self, epoch: int) -> None:
    """Trains the rest of `epoch` (all of it unless resuming inside it), logging and saving.

    Raises `Stopped` after saving when a stop was requested, `Diverged` when a check finds a
    non-finite step (checks run at each log and save, where the host fetches the sums anyway).
    """
    config = self.config
    first_step = self.step - epoch * self.steps_per_epoch
    batches = mesh_lib.prefetch_to_device(
        self.source.train_batches(epoch, first_step, self._local_batch, self.steps_per_epoch),
        self._data_sharding, config.prefetch_to_device)
    for batch in batches:
      if self._curvature and self._curvature.due(self.step):  # SDLM's Hessian estimate.
        into = self.step - epoch * self.steps_per_epoch
        self.state = self._curvature.refresh(self.state, self.source.train_batches(
            epoch, into, self._local_batch, min(into + self._curvature.num_batches,
                                                self.steps_per_epoch)), self._data_sharding)
      self._profile(self.step)
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
        self._stop_signal = 'a preemption notice'
      if self._stop_signal:
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

  def _profile(self, step: int) -> None:
    """Starts or stops the `profile_steps` = (start, stop) trace of steps start .. stop - 1
    (process 0 only: one trace per job). A trace that cannot be written costs the run nothing
    but a note."""
    if not self.config.profile_steps or jax.process_index() != 0:
      return
    start, stop = self.config.profile_steps
    if step == start and not self._profiling:
      try:
        jax.profiler.start_trace(self._profile_dir)
        self._profiling = True
      except Exception as error:  # pylint: disable=broad-except
        self._profile_failed(error)
    elif step == stop and self._profiling:
      self._stop_profile()

  def _stop_profile(self) -> None:
    self._profiling = False
    try:
      jax.block_until_ready(self.state)
      jax.profiler.stop_trace()
    except Exception as error:  # pylint: disable=broad-except
      self._profile_failed(error)
      return
    self.progress.print(f'profile of steps {self.config.profile_steps[0]} to '
                        f'{self.step - 1} written to {self._profile_dir}')

  def _profile_failed(self, error: Exception) -> None:
    self.progress.print(f'note: no profile written to {self._profile_dir}: '
                        + ' '.join(str(error).split()))

  def _stop(self) -> None:
    """Saves the current step, waits until it is on disk, and raises `Stopped`."""
    self.save()
    with self._disk_full_as_one_line():
      self._checkpointer.wait()
    raise Stopped(f'stopped by {self._stop_signal} at step {self.step}, saved in '
                  f'{self._checkpointer.directory}; rerun the same command to resume')

  def save(self) -> None:
    """Saves the current step unless it is saved already; never a non-finite state."""
    if self.step == self._checkpointer.latest_step():
      return
    sums = {k: float(v) for k, v in jax.device_get(self._train_metrics).items()}
    self._check_finite(sums['nonfinite'])
    record = {**self._record, 'train_metrics': sums}
    if self._plateau:
      record['plateau'] = self._plateau.record()
    with self._disk_full_as_one_line():
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

  @contextlib.contextmanager
  def _disk_full_as_one_line(self):
    """A full disk or quota while saving becomes one ConfigError naming what is intact."""
    try:
      yield
    except Exception as error:
      if not disk_full(error):
        raise
      failed, intact = self._checkpointer.failed_save()
      raise ConfigError(f'disk full while saving step {failed or self.step} in '
                        f'{self._checkpointer.directory}; '
                        + (f'step {intact} is intact' if intact is not None else 'no step is saved')
                        + ': free space and rerun the same command') from error

  def _log_train(self) -> None:
    result = steps.summarize(self._train_metrics)  # The only host sync of the training loop.
    self._check_finite(result.pop('nonfinite'))
    self._train_metrics = self._zero_metrics(steps.TRAIN_METRICS)
    now = time.time()
    img_per_sec = ((self.step - self._last_log[1]) * self.config.batch_size
                   / (now - self._last_log[0]))
    self._last_log = (now, self.step)
    self.writer.write(self.step, {
        'epoch': self.step / self.steps_per_epoch, 'train/loss': result['loss'],
        'train/top1_acc': result['top1_acc'], 'train/img_per_sec': img_per_sec,
        'train/learning_rate': float(self._lr_schedule(self.step - 1))
                               * (self._plateau.scale if self._plateau else 1.0)})
    self.progress.advance(1, loss=f'{result["loss"]:.4f}', img_per_sec=f'{img_per_sec:,.0f}')

  def evaluate(self, epoch: int, *, write: bool = True) -> dict[str, float]:
    """Loss, top-1 and top-5 over the whole eval split, each example counted exactly once; of
    the averaged weights where `ema_decay` > 0 (what the papers evaluated). The 'plateau'
    schedule takes its top-1 error.

    A diverged state is not evaluated (`Diverged`); a stop requested meanwhile saves and raises
    `Stopped` at the next batch."""
    self._check_finite(float(jax.device_get(self._train_metrics['nonfinite'])))
    ema = self.state.ema_params is not None
    state = self.state.replace(params=self.state.ema_params, ema_params=None) if ema else self.state
    result = evaluate_split(self._eval_step, (state,), self.source,
                            local_batch=self._local_eval_batch, num_steps=self._num_eval_steps,
                            data_sharding=self._data_sharding, replicated=self._replicated,
                            interrupted=lambda: self._stop_signal is not None)
    if result is None:
      self._stop()
    if write:
      self.writer.write(self.step, {'epoch': epoch,
                                    **{f'eval/{k}': v for k, v in result.items()}})
    self.progress.print(
        f'epoch {epoch}: eval{" of the EMA weights" if ema else ""} loss {result["loss"]:.4f}, '
        f'top-1 {result["top1_acc"]:.4f}, top-5 {result["top5_acc"]:.4f} on '
        f'{result["num_examples"]} examples')
    if self._plateau:
      if self._plateau.update(epoch, 1.0 - result['top1_acc']):
        self.progress.print(f'epoch {epoch}: top-1 error plateaued; learning rate scaled by '
                            f'{self._plateau.scale:g}')
      self._set_lr_scale()  # Exactly the saved scale, float32 roundings at min_scale included.
    self._last_log = (time.time(), self.step)  # Evaluation time is not training throughput.
    return result

  def logged_eval(self) -> bool:
    """Whether an earlier run of this workdir logged an evaluation at the current step."""
    return any(r['step'] == self.step and 'eval/loss' in r for r in self.writer.previous)

  def close(self) -> None:
    """Waits for pending saves, closes the writers, releases the workdir and the signals."""
    try:
      with self._disk_full_as_one_line():
        self._checkpointer.close()
    finally:
      if self._profiling:  # Training ended inside the profiled steps.
        self._stop_profile()
      self._restore_signal_handlers()
      self.progress.close()
      self.writer.close()
      self._lock.release()


def dataset_record(source: input_pipeline.Source) -> dict:
  """What predict.py needs of the dataset, saved with each checkpoint so that it needs no data:
  its channel statistics and class names."""
  return {'mean': list(source.spec.mean), 'std': list(source.spec.std),
          'class_names': list(source.class_names), 'fingerprint': source.fingerprint}


def resolved_config(config, architecture: dict) -> dict:
  """The config as a checkpoint records it: JSON types (tuples as lists, so that a comparison
  after the round trip is fair), the values that -1 stands for (classes, channels, data shards),
  and the synthetic source's fields only where that source is used."""
  resolved = {**config.to_dict(), 'num_classes': architecture['num_classes'],
              'in_channels': architecture['in_channels'],
              'data_shards': input_pipeline.num_data_shards(config, jax.process_count())}
  if config.dataset != 'synthetic':
    resolved = {k: v for k, v in resolved.items() if not k.startswith('synthetic_')}
  return json.loads(json.dumps(resolved))


def check_resume(saved: dict, record: dict, step: int) -> str:
  """Refuses a resume that changes a MEANING_FIELDS value or switches to or from the plateau
  schedule (whose state starts with the run); returns the other changes, printable.

  Checkpoints older than the saved config hold only the data position; those older than
  `input_convention` standardised with the dataset's statistics, those older than `ema_decay`
  averaged nothing.
  """
  config = record['config']
  before = ({'input_convention': 'dataset', 'ema_decay': 0.0, **saved['config']}
            if saved.get('config') else
            {'seed': saved.get('seed'), 'data_shards': saved.get('data_shards'),
             'batch_size': saved.get('global_batch_size')})
  changed = {k: (before[k], config[k]) for k in before if k in config and before[k] != config[k]}
  refused = [k for k in MEANING_FIELDS if k in changed]
  if 'plateau' in changed.get('lr_schedule', ()):  # Its state starts with the run: no switch.
    refused.append('lr_schedule')
  before_data = saved.get('dataset', {}).get('fingerprint')
  now_data = record.get('dataset', {}).get('fingerprint')
  if before_data and now_data and before_data != now_data:
    raise ConfigError(f'checkpoint at step {step} was trained on other files of '
                      f'{config["dataset"]} (images added, removed or changed): that changes '
                      'the data order and statistics; restore the files or use another --workdir')
  if refused:
    raise ConfigError(
        f'checkpoint at step {step} was written with '
        + ', '.join(f'{k}={changed[k][0]}' for k in refused) + '; this run has '
        + ', '.join(f'{k}={changed[k][1]}' for k in refused)
        + ': that changes what the saved state or the data order means; resume with the same '
        'values or use another --workdir')
  return ', '.join(f'{k}: {a} -> {b}' for k, (a, b) in changed.items())


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

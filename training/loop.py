"""`train_and_evaluate(config, workdir)`: the whole recipe, top to bottom.

Everything a user can get wrong (config, model, data, batch geometry) is checked before the workdir
is touched, so a failed start never changes an existing run. `Run` holds one run's pieces so that
benchmarks can time `Run.train_epoch` exactly as training executes it.
"""

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
from flax import nnx

import cnns
import input_pipeline
from training import mesh as mesh_lib
from training import optim, steps
from training.checkpoints import Checkpointer
from training.errors import ConfigError
from training.state import TrainState, count_params, create_train_state
from training.writers import MetricWriter, Progress

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
BATCHNORM = ('global', 'per_device')


@dataclasses.dataclass
class Summary:
  """What a finished run reached; also printed as the final console line."""
  steps: int
  best_top1_acc: float
  last_eval: dict[str, float]
  wall_seconds: float


def validate(config, workdir: str) -> None:
  """Errors a user can cause that need no data: one message each, raised as ConfigError."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f'workdir {workdir} exists and is not a directory')
  if config.num_epochs <= 0:
    raise ConfigError(f'num_epochs={config.num_epochs} must be positive')
  if config.batchnorm not in BATCHNORM:
    raise ConfigError(f'unknown batchnorm {config.batchnorm!r}; known: {", ".join(BATCHNORM)}')
  if config.dtype not in DTYPES:
    raise ConfigError(f'unknown dtype {config.dtype!r}; known: {", ".join(DTYPES)}')
  if config.model not in cnns.available_models():
    raise ConfigError(f'unknown model {config.model!r}; known models: '
                      f'{", ".join(cnns.available_models())}')
  for field in ('log_every_steps', 'checkpoint_every_steps', 'eval_every_epochs',
                'keep_checkpoints'):
    if config[field] <= 0:
      raise ConfigError(f'{field}={config[field]} must be positive')


def evaluate_split(eval_step, states: tuple[TrainState, ...], source: input_pipeline.Source, *,
                   local_batch: int, num_steps: int, data_sharding, replicated) -> dict:
  """Loss, top-1 and top-5 accuracy over `source`'s eval split, each example counted once."""
  metrics = jax.device_put(steps.zero_metrics(*steps.EVAL_METRICS), replicated)
  for batch in source.eval_batches(local_batch, num_steps):
    metrics = eval_step(states, metrics, mesh_lib.to_global(batch, data_sharding))
  return steps.summarize(metrics)


def model_architecture(config, source: input_pipeline.Source) -> dict:
  """Constructor arguments of `config.model` for `source`'s images: classes, channels, size, and
  the family's own options."""
  num_classes = config.num_classes if config.num_classes > 0 else source.spec.num_classes
  channels = source.image_shape[-1]
  if config.in_channels > 0 and config.in_channels != channels:
    raise ConfigError(f'in_channels={config.in_channels} but {config.dataset} images have '
                      f'{channels} channels: set --config.in_channels={channels}')
  return dict(num_classes=num_classes, in_channels=channels, image_size=source.image_shape[0],
              **config.model_kwargs)


class Run:
  """One training run: data, jitted steps, state (restored if the workdir has a checkpoint)."""

  def __init__(self, config, workdir: str):
    validate(config, workdir)
    self.config = config
    eval_batch_size = config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size
    self._local_batch = mesh_lib.local_batch_size(config.batch_size)
    self._local_eval_batch = mesh_lib.local_batch_size(eval_batch_size, 'eval_batch_size')
    mesh = mesh_lib.create_mesh()
    self._replicated = mesh_lib.replicated_sharding(mesh)
    self._data_sharding = mesh_lib.batch_sharding(mesh)

    self.source = input_pipeline.create_source(config, process_index=jax.process_index(),
                                               process_count=jax.process_count())
    self.steps_per_epoch = self.source.num_train_examples // config.batch_size
    if self.steps_per_epoch == 0:
      raise ConfigError(f'batch_size={config.batch_size} exceeds the '
                        f'{self.source.num_train_examples} training examples')
    self._num_eval_steps = input_pipeline.num_eval_steps(
        self.source.num_eval_examples, eval_batch_size, jax.process_count())
    dtype = DTYPES[config.dtype]
    architecture = model_architecture(config, self.source)
    num_classes = architecture['num_classes']
    # A window that does not tile its input (GeometryError) surfaces here, before any weights.
    abstract, _ = cnns.trace(config.model, **architecture)
    if config.batchnorm == 'per_device' and not any(
        isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(abstract)):
      raise ConfigError(f"batchnorm='per_device' but {config.model} has no BatchNorm layers")
    model = cnns.create_model(config.model, dtype=dtype, rngs=nnx.Rngs(config.seed),
                              **architecture)
    tx = optim.create_optimizer(config, self.steps_per_epoch)
    self.graphdef, state = create_train_state(model, tx)
    norm = dict(mean=self.source.spec.mean, std=self.source.spec.std, dtype=dtype)
    self._train_step = steps.make_train_step(
        self.graphdef, tx, num_classes=num_classes, label_smoothing=config.label_smoothing,
        seed=config.seed, out_sharding=self._replicated, aux_loss_weight=config.aux_loss_weight,
        bn_groups=jax.device_count() if config.batchnorm == 'per_device' else 1, **norm)
    self._eval_step = steps.make_eval_step(self.graphdef, out_sharding=self._replicated, **norm)
    self._lr_schedule = optim.learning_rate_schedule(config, self.steps_per_epoch)

    # From here on the workdir is created and written.
    self._checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                                      every_steps=config.checkpoint_every_steps,
                                      keep=config.keep_checkpoints)
    self._position = dict(seed=config.seed, global_batch_size=config.batch_size,
                          data_shards=input_pipeline.num_data_shards(config, jax.process_count()))
    state = jax.device_put(state, self._replicated)
    restored = self._checkpointer.restore_latest(state, self._position)
    self.state = state if restored is None else restored[0]
    self.step = int(self.state.step)
    is_chief = jax.process_index() == 0
    self.writer = MetricWriter(workdir, resume_step=self.step, enabled=is_chief)
    self.progress = Progress(total_steps=config.num_epochs * self.steps_per_epoch,
                             initial_step=self.step, enabled=is_chief)
    self.progress.print(
        f'{config.model} on {config.dataset}: {count_params(self.state.params):,} parameters, '
        f'{jax.device_count()} device(s), {self.steps_per_epoch} steps/epoch, '
        + (f'resumed at step {self.step}' if self.step else 'starting'))
    self._train_metrics = self._zero_metrics(steps.TRAIN_METRICS)
    self._last_log = (time.time(), self.step)

  def _zero_metrics(self, names):
    return jax.device_put(steps.zero_metrics(*names), self._replicated)

  def train_epoch(self, epoch: int) -> None:
    """Trains the rest of `epoch` (all of it unless resuming inside it), logging and saving."""
    config = self.config
    first_step = self.step - epoch * self.steps_per_epoch
    for batch in self.source.train_batches(epoch, first_step, self._local_batch,
                                           self.steps_per_epoch):
      self.state, self._train_metrics = self._train_step(
          self.state, self._train_metrics, mesh_lib.to_global(batch, self._data_sharding))
      self.step += 1
      if self.step % config.log_every_steps == 0:
        self._log_train()
      else:
        self.progress.advance(1)
      self._checkpointer.maybe_save(self.step, self.state, self._position)

  def _log_train(self) -> None:
    result = steps.summarize(self._train_metrics)  # The only host sync of the training loop.
    self._train_metrics = self._zero_metrics(steps.TRAIN_METRICS)
    now = time.time()
    img_per_sec = ((self.step - self._last_log[1]) * self.config.batch_size
                   / (now - self._last_log[0]))
    self._last_log = (now, self.step)
    self.writer.write(self.step, {
        'epoch': self.step / self.steps_per_epoch, 'train/loss': result['loss'],
        'train/top1_acc': result['top1_acc'], 'train/img_per_sec': img_per_sec,
        'train/learning_rate': float(self._lr_schedule(self.step - 1))})
    self.progress.advance(1, loss=f'{result["loss"]:.4f}', img_per_sec=f'{img_per_sec:,.0f}')

  def evaluate(self, epoch: int) -> dict[str, float]:
    """Loss, top-1 and top-5 over the whole eval split, each example counted exactly once."""
    result = evaluate_split(self._eval_step, (self.state,), self.source,
                            local_batch=self._local_eval_batch, num_steps=self._num_eval_steps,
                            data_sharding=self._data_sharding, replicated=self._replicated)
    self.writer.write(self.step, {'epoch': epoch, **{f'eval/{k}': v for k, v in result.items()}})
    self.progress.print(
        f'epoch {epoch}: eval loss {result["loss"]:.4f}, top-1 {result["top1_acc"]:.4f}, '
        f'top-5 {result["top5_acc"]:.4f} on {result["num_examples"]} examples')
    self._last_log = (time.time(), self.step)  # Evaluation time is not training throughput.
    return result

  def close(self) -> None:
    self._checkpointer.maybe_save(self.step, self.state, self._position, force=True)
    self._checkpointer.close()
    self.progress.close()
    self.writer.close()


def train_and_evaluate(config, workdir: str) -> Summary:
  start_time = time.time()
  run = Run(config, workdir)
  best_top1 = max([r['eval/top1_acc'] for r in run.writer.previous if 'eval/top1_acc' in r],
                  default=0.0)
  last_eval = {}
  for epoch in range(run.step // run.steps_per_epoch, config.num_epochs):
    run.train_epoch(epoch)
    if (epoch + 1) % config.eval_every_epochs == 0 or epoch + 1 == config.num_epochs:
      last_eval = run.evaluate(epoch + 1)
      best_top1 = max(best_top1, last_eval['top1_acc'])
  if not last_eval:  # Restarted after the last step: report the final model anyway.
    last_eval = run.evaluate(config.num_epochs)
    best_top1 = max(best_top1, last_eval['top1_acc'])
  run.close()
  summary = Summary(steps=run.step, best_top1_acc=best_top1, last_eval=last_eval,
                    wall_seconds=time.time() - start_time)
  if jax.process_index() == 0:
    print(f'done: {run.step} steps in {summary.wall_seconds / 60:.1f} min; last eval top-1 '
          f'{last_eval["top1_acc"]:.4f}, top-5 {last_eval["top5_acc"]:.4f} on '
          f'{last_eval["num_examples"]} examples; best top-1 {best_top1:.4f}')
  return summary

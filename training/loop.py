"""`train_and_evaluate(config, workdir)`: the whole recipe, top to bottom.

Everything a user can get wrong (config, model, data, batch geometry) is checked before the workdir
is touched, so a failed start never changes an existing run.
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
from training.state import count_params, create_train_state
from training.writers import MetricWriter, Progress

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass
class Summary:
  """What a finished run reached; also printed as the final console lines."""
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
  if config.dtype not in DTYPES:
    raise ConfigError(f'unknown dtype {config.dtype!r}; known: {", ".join(DTYPES)}')
  if config.model not in cnns.available_models():
    raise ConfigError(f'unknown model {config.model!r}; known models: '
                      f'{", ".join(cnns.available_models())}')
  if config.dataset not in input_pipeline.available_datasets():
    raise ConfigError(f'unknown dataset {config.dataset!r}; known datasets: '
                      f'{", ".join(input_pipeline.available_datasets())}')
  for field in ('log_every_steps', 'checkpoint_every_steps', 'eval_every_epochs',
                'keep_checkpoints'):
    if config[field] <= 0:
      raise ConfigError(f'{field}={config[field]} must be positive')


def train_and_evaluate(config, workdir: str) -> Summary:
  start_time = time.time()
  validate(config, workdir)
  eval_batch_size = config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size
  local_batch = mesh_lib.local_batch_size(config.batch_size)
  local_eval_batch = mesh_lib.local_batch_size(eval_batch_size, 'eval_batch_size')
  mesh = mesh_lib.create_mesh()
  replicated = mesh_lib.replicated_sharding(mesh)
  data_sharding = mesh_lib.batch_sharding(mesh)
  is_chief = jax.process_index() == 0

  source = input_pipeline.create_source(config, process_index=jax.process_index(),
                                        process_count=jax.process_count())
  steps_per_epoch = source.num_train_examples // config.batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f'batch_size={config.batch_size} exceeds the {source.num_train_examples} '
                      'training examples')
  num_eval_steps = input_pipeline.num_eval_steps(source.num_eval_examples, eval_batch_size,
                                                 jax.process_count())
  total_steps = config.num_epochs * steps_per_epoch
  num_classes = config.num_classes if config.num_classes > 0 else source.spec.num_classes

  dtype = DTYPES[config.dtype]
  model = cnns.create_model(config.model, num_classes=num_classes,
                            in_channels=source.image_shape[-1], dtype=dtype,
                            rngs=nnx.Rngs(config.seed))
  tx = optim.create_optimizer(config, steps_per_epoch)
  graphdef, state = create_train_state(model, tx)
  state = jax.device_put(state, replicated)
  norm = dict(mean=source.spec.mean, std=source.spec.std, dtype=dtype)
  train_step = steps.make_train_step(
      graphdef, tx, num_classes=num_classes, label_smoothing=config.label_smoothing,
      seed=config.seed, out_sharding=replicated, **norm)
  eval_step = steps.make_eval_step(graphdef, out_sharding=replicated, **norm)

  # From here on the workdir is created and written.
  checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                              every_steps=config.checkpoint_every_steps,
                              keep=config.keep_checkpoints)
  position = dict(seed=config.seed, global_batch_size=config.batch_size)
  restored = checkpointer.restore_latest(state, position)
  if restored is not None:
    state, _ = restored
  step = int(state.step)
  writer = MetricWriter(workdir, resume_step=step, enabled=is_chief)
  progress = Progress(total_steps=total_steps, initial_step=step, enabled=is_chief)
  progress.print(f'{config.model} on {config.dataset}: {count_params(state.params):,} parameters, '
                 f'{jax.device_count()} device(s), {steps_per_epoch} steps/epoch, '
                 + (f'resumed at step {step}' if step else 'starting'))

  def evaluate(epoch: int) -> dict[str, float]:
    metrics = jax.device_put(steps.zero_metrics('loss', 'top1_acc', 'top5_acc'), replicated)
    for batch in source.eval_batches(local_eval_batch, num_eval_steps):
      metrics = eval_step(state, metrics, mesh_lib.to_global(batch, data_sharding))
    result = steps.summarize(metrics)
    writer.write(step, {'epoch': epoch, **{f'eval/{k}': v for k, v in result.items()}})
    progress.print(f'epoch {epoch}: eval loss {result["loss"]:.4f}, top-1 {result["top1_acc"]:.4f},'
                   f' top-5 {result["top5_acc"]:.4f} on {result["num_examples"]} examples')
    return result

  train_metrics = jax.device_put(steps.zero_metrics('loss', 'top1_acc'), replicated)
  lr_schedule = optim.learning_rate_schedule(config, steps_per_epoch)
  best_top1 = max([r['eval/top1_acc'] for r in writer.previous if 'eval/top1_acc' in r],
                  default=0.0)
  last_eval = {}
  last_log = (time.time(), step)
  for epoch in range(step // steps_per_epoch, config.num_epochs):
    first_step = step - epoch * steps_per_epoch
    for batch in source.train_batches(epoch, first_step, local_batch, steps_per_epoch):
      state, train_metrics = train_step(state, train_metrics,
                                        mesh_lib.to_global(batch, data_sharding))
      step += 1
      if step % config.log_every_steps == 0:
        result = steps.summarize(train_metrics)  # The only host sync in the training loop.
        now = time.time()
        img_per_sec = (step - last_log[1]) * config.batch_size / (now - last_log[0])
        last_log = (now, step)
        writer.write(step, {'epoch': step / steps_per_epoch, 'train/loss': result['loss'],
                            'train/top1_acc': result['top1_acc'],
                            'train/img_per_sec': img_per_sec,
                            'train/learning_rate': float(lr_schedule(step - 1))})
        progress.advance(1, loss=f'{result["loss"]:.4f}', img_per_sec=f'{img_per_sec:,.0f}')
        train_metrics = jax.device_put(steps.zero_metrics('loss', 'top1_acc'), replicated)
      else:
        progress.advance(1)
      checkpointer.maybe_save(step, state, position)
    if (epoch + 1) % config.eval_every_epochs == 0 or epoch + 1 == config.num_epochs:
      last_eval = evaluate(epoch + 1)
      best_top1 = max(best_top1, last_eval['top1_acc'])
      last_log = (time.time(), step)  # Evaluation time is not training throughput.
  checkpointer.maybe_save(step, state, position, force=True)
  checkpointer.close()
  progress.close()
  if not last_eval:  # Resumed after the last step: report the final model anyway.
    last_eval = evaluate(config.num_epochs)
    best_top1 = last_eval['top1_acc']
  writer.close()
  summary = Summary(steps=step, best_top1_acc=best_top1, last_eval=last_eval,
                    wall_seconds=time.time() - start_time)
  if is_chief:
    print(f'done: {step} steps in {summary.wall_seconds / 60:.1f} min; last eval top-1 '
          f'{last_eval["top1_acc"]:.4f}, top-5 {last_eval["top5_acc"]:.4f} on '
          f'{last_eval["num_examples"]} examples; best top-1 {best_top1:.4f}')
  return summary

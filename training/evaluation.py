"""Saved checkpoints evaluated with the papers' protocols (crops, ensembles).

`evaluate_checkpoints` is evaluate.py's work: it restores the latest checkpoint of one workdir (or
of several, an ensemble of the same config), without building real weights first, and evaluates
the validation split on one centre crop or on ten crops per image, every image counted once.
"""

import dataclasses
import os

import jax

import cnns
import input_pipeline
from training import loop, optim, steps
from training import mesh as mesh_lib
from training.checkpoints import Checkpointer
from training.errors import ConfigError
from training.state import TrainState, split_model


@dataclasses.dataclass
class CheckpointResult:
  metrics: dict  # loss, top1_acc, top5_acc, num_examples.
  checkpoint_steps: list[int]  # One per workdir, in order.


def abstract_train_state(config, architecture: dict, dtype, replicated):
  """(graphdef, shapes and shardings of the TrainState that train.py saves), built abstractly."""
  abstract, _ = cnns.trace(config.model, dtype=dtype, **architecture)
  graphdef, params, batch_stats = split_model(abstract)
  tx = optim.create_optimizer(config, steps_per_epoch=1)  # The schedule does not shape the state.
  state = TrainState(step=jax.ShapeDtypeStruct((), 'int32'), params=params,
                     batch_stats=batch_stats, opt_state=jax.eval_shape(tx.init, params))
  return graphdef, jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)


def restore(workdir: str, abstract_state) -> tuple[TrainState, int]:
  """The latest checkpoint of `workdir` and its step; nothing in the workdir is created."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  checkpointer = Checkpointer(directory, every_steps=1, keep=1, create=False) if os.path.isdir(
      directory) else None
  if checkpointer is None or checkpointer.latest_step() is None:
    raise ConfigError(f'no checkpoint in {directory}: train this config there first '
                      f'(python train.py --config=... --workdir={workdir})')
  try:
    state, _, step = checkpointer.restore_latest(abstract_state)
  finally:
    checkpointer.close()
  return state, step


def evaluate_checkpoints(config, workdirs: list[str], crops: int) -> CheckpointResult:
  """Evaluates the ensemble of the latest checkpoints in `workdirs` on `crops` crops per image."""
  for workdir in workdirs:
    loop.validate(config, workdir)
  eval_batch_size = config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size
  local_batch = mesh_lib.local_batch_size(eval_batch_size, 'eval_batch_size')
  mesh = mesh_lib.create_mesh()
  replicated = mesh_lib.replicated_sharding(mesh)
  source = input_pipeline.create_source(config, process_index=jax.process_index(),
                                        process_count=jax.process_count(), eval_crops=crops)
  dtype = loop.DTYPES[config.dtype]
  graphdef, abstract_state = abstract_train_state(
      config, loop.model_architecture(config, source), dtype, replicated)
  restored = [restore(workdir, abstract_state) for workdir in workdirs]
  eval_step = steps.make_eval_step(graphdef, mean=source.spec.mean, std=source.spec.std,
                                   dtype=dtype, out_sharding=replicated)
  metrics = loop.evaluate_split(
      eval_step, tuple(state for state, _ in restored), source, local_batch=local_batch,
      num_steps=input_pipeline.num_eval_steps(source.num_eval_examples, eval_batch_size,
                                              jax.process_count()),
      data_sharding=mesh_lib.batch_sharding(mesh), replicated=replicated)
  return CheckpointResult(metrics=metrics, checkpoint_steps=[step for _, step in restored])

"""Saved checkpoints evaluated with the papers' protocols (crops, ensembles).

`evaluate_checkpoints` is evaluate.py's work: it restores the latest checkpoint of one workdir (or
of several, an ensemble of the same config), without building real weights first, and evaluates
the validation split on one centre crop or on ten crops per image, every image counted once.
"""

import dataclasses

import jax
import ml_collections

import cnns
import input_pipeline
from training import loop, steps, weights
from training import mesh as mesh_lib


@dataclasses.dataclass
class CheckpointResult:
  metrics: dict  # loss, top1_acc, top5_acc, num_examples.
  checkpoint_steps: list[int]  # One per workdir, in order.


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
  config = weights.checkpoint_config(config, workdirs, note=print if jax.process_index() == 0
                                     else lambda _: None)
  dtype = loop.DTYPES[config.dtype]
  abstract_model, _ = cnns.trace(config.model, dtype=dtype,
                                 **loop.model_architecture(config, source))
  # The optimizer state's shapes are those of the optimizer that trained the checkpoint.
  recorded = weights.recorded_config(workdirs[0])
  graphdef, abstract_state = weights.abstract_train_state(
      ml_collections.ConfigDict(recorded) if recorded else config, abstract_model, replicated)
  restored = [weights.restore(workdir, abstract_state) for workdir in workdirs]
  mean, std = input_pipeline.normalization(config, source.spec)
  eval_step = steps.make_eval_step(graphdef, mean=mean, std=std, dtype=dtype,
                                   out_sharding=replicated)
  metrics = loop.evaluate_split(
      eval_step, tuple(state for state, _ in restored), source, local_batch=local_batch,
      num_steps=input_pipeline.num_eval_steps(source.num_eval_examples, eval_batch_size,
                                              jax.process_count()),
      data_sharding=mesh_lib.batch_sharding(mesh), replicated=replicated)
  return CheckpointResult(metrics=metrics, checkpoint_steps=[step for _, step in restored])

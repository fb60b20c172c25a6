"""A checkpoint ready for inference, as predict.py and visualize.py use it.

What the model was built for comes from its checkpoint (app/weights.py): model options,
input convention, dataset (its channel statistics and class names, saved with every checkpoint),
image size, classes, channels, and the optimizer whose state shapes the checkpoint.
"""

import dataclasses
import sys

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

import input_pipeline
from app import weights
from app.assembly import assemble_from_record
from training import steps
from training.errors import ConfigError


@dataclasses.dataclass
class Checkpoint:
  config: ml_collections.ConfigDict  # The user's, with the checkpoint's fields.
  graphdef: nnx.GraphDef
  params: dict
  batch_stats: dict
  class_names: list[str]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  step: int

  def model(self) -> nnx.Module:
    """The model with the checkpoint's weights, in evaluation mode."""
    model = nnx.merge(self.graphdef, self.params, self.batch_stats)
    model.eval()
    return model

  def logits(self, params, images: jax.Array) -> jax.Array:
    """The model in evaluation mode on uint8 (or float, 0-255) images, widened to float32."""
    model = nnx.merge(self.graphdef, params, self.batch_stats)
    model.eval()
    dtype = jnp.dtype(self.config.dtype)
    return steps.at_least_float32(model(steps.normalize(images, self.mean, self.std, dtype)))


def load(config, workdir: str, note=lambda line: print(line, file=sys.stderr)) -> Checkpoint:
  """The latest checkpoint of `workdir`, restored for inference (its averaged weights where
  training kept an average, `config.ema_decay`); `note` hears what the checkpoint changes in
  `config`."""
  config = weights.checkpoint_config(config, [workdir], note=note)
  saved = weights.record(workdir)
  recorded = saved.get('config')
  if recorded is None:
    raise ConfigError(f'the checkpoints in {workdir} predate recorded configs, which predict.py '
                      'and visualize.py read; evaluate.py still evaluates them')
  # Checkpoints saved before the dataset record: the dataset's known facts, where there are any.
  dataset = saved.get('dataset') or input_pipeline.source_class(
      recorded['dataset']).known_record(recorded['dataset'], config)
  if dataset is None:
    raise ConfigError(f'the newest checkpoint in {workdir} predates the record of its '
                      f'{recorded["dataset"]} data (statistics, class names): resume the run '
                      'with this version until it saves once more')
  for field in ('dataset', 'image_size', 'num_classes', 'in_channels'):
    if config[field] != recorded[field]:
      if field in ('dataset', 'image_size'):
        note(f'note: using the checkpoint\'s {field}={recorded[field]} (the config says '
             f'{config[field]})')
      config[field] = recorded[field]
  assembly = assemble_from_record(config, recorded, dataset)
  graphdef, abstract_state = assembly.abstract_state(ml_collections.ConfigDict(recorded))
  state, step = weights.restore(workdir, abstract_state)
  mean, std = assembly.normalization['mean'], assembly.normalization['std']
  names = list(dataset['class_names'])
  names += [f'class {i}' for i in range(len(names), recorded['num_classes'])]
  # The running averages where training kept them: what evaluate.py scores.
  final = state if state.ema_params is None else state.averaged()
  return Checkpoint(config, graphdef, final.params, final.batch_stats, names, mean, std, step)

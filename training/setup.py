"""The set-up train.py and evaluate.py share: the config checked, mesh, data source, model shapes.

Everything here can fail only on what a user chose (config, data, geometry) and touches no workdir,
so a failed start never changes an existing run. Training adds its optimizer and state
(`loop.Run`); evaluation its checkpoints and protocol (`evaluation`).
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding

import cnns
import input_pipeline
from training import mesh as mesh_lib
from training.errors import ConfigError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
BATCHNORM = ('global', 'per_device')


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
  if config.input_convention not in ('dataset', *input_pipeline.INPUT_CONVENTIONS):
    raise ConfigError(f'unknown input_convention {config.input_convention!r}; known: dataset, '
                      + ', '.join(input_pipeline.INPUT_CONVENTIONS))
  if config.model not in cnns.available_models():
    raise ConfigError(f'unknown model {config.model!r}; known models: '
                      f'{", ".join(cnns.available_models())}')
  for field in ('log_every_steps', 'checkpoint_every_steps', 'eval_every_epochs',
                'keep_checkpoints', 'learning_rate', 'lr_decay_factor'):
    if not config[field] > 0:
      raise ConfigError(f'{field}={config[field]} must be positive')
  for field, low, high in (('label_smoothing', 0, 1), ('momentum', 0, 1),
                           ('rmsprop_decay', 0, 1)):
    if not low <= config[field] < high:
      raise ConfigError(f'{field}={config[field]} must be in [{low}, {high})')
  for field in ('weight_decay', 'warmup_epochs', 'aux_loss_weight', 'prefetch_to_device'):
    if not config[field] >= 0:
      raise ConfigError(f'{field}={config[field]} must not be negative')
  profile = tuple(config.profile_steps)
  if profile and not (len(profile) == 2 and all(isinstance(s, int) for s in profile)
                      and 0 <= profile[0] < profile[1]):
    raise ConfigError(f'profile_steps={profile} must be (start, stop), whole steps with '
                      '0 <= start < stop, or () for none')


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


@dataclasses.dataclass(frozen=True)
class Setup:
  """What a config gives every entry point before it reads a checkpoint or trains a step."""
  replicated: NamedSharding  # Parameters and metric sums.
  data_sharding: NamedSharding  # Batches, split along the mesh's 'data' axis.
  source: input_pipeline.Source  # This process's part of each split.
  architecture: dict  # The model's constructor arguments.
  abstract_model: nnx.Module  # Shapes only: no weights are made.
  dtype: jnp.dtype  # Computation dtype.
  normalization: dict  # mean, std and dtype, as the steps standardise pixels on the device.
  eval_batch_size: int  # Global.
  local_eval_batch: int  # This process's share.


def set_up(config, workdirs: list[str], *, local: bool = False) -> Setup:
  """Checks `config` (and that each of `workdirs` could be one), builds the mesh and this process's
  data source, and traces the model: a window that does not tile its input (GeometryError)
  surfaces here, before any weights. `local` meshes this process's devices only, for evaluations
  whose batches differ between processes (evaluate.py's protocols: dense testing's batches hold
  whole images of one shape)."""
  for workdir in workdirs:
    validate(config, workdir)
  eval_batch_size = config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size
  local_eval_batch = mesh_lib.local_batch_size(eval_batch_size, 'eval_batch_size')
  mesh = mesh_lib.create_mesh(local=local)
  source = input_pipeline.create_source(config, process_index=jax.process_index(),
                                        process_count=jax.process_count())
  dtype = DTYPES[config.dtype]
  architecture = model_architecture(config, source)
  abstract_model, _ = cnns.trace(config.model, dtype=dtype, **architecture)
  mean, std = input_pipeline.normalization(config, source.spec)
  return Setup(replicated=mesh_lib.replicated_sharding(mesh),
               data_sharding=mesh_lib.batch_sharding(mesh), source=source,
               architecture=architecture, abstract_model=abstract_model, dtype=dtype,
               normalization=dict(mean=mean, std=std, dtype=dtype),
               eval_batch_size=eval_batch_size, local_eval_batch=local_eval_batch)

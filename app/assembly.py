"""The one assembly every command starts from: the config checked, mesh and shardings, data source,
architecture, abstract and concrete model, optimizer and train-state shapes.

train.py, evaluate.py, predict.py, visualize.py, import_weights.py and the benchmarks all build
their pieces here and nowhere else. `assemble` reads the data source (training and evaluation);
`assemble_from_record` builds a model as a checkpoint recorded it, with no data (inference,
imports, `init_from`). Everything here can fail only on what a user chose (config, data,
geometry) and touches no workdir, so a failed start never changes an existing run.
"""

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

import cnns
import input_pipeline
from training import mesh as mesh_lib
from training import optim, sdlm, steps
from training.errors import ConfigError
from training.state import TrainState, split_model

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
  compute_dtype(config)
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


def check_model_options(config, model: nnx.Module) -> None:
  """Options that the model must support: one line each where it does not."""
  if config.batchnorm == 'per_device' and not any(
      isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(model)):
    raise ConfigError(f"batchnorm='per_device' but {config.model} has no BatchNorm layers")
  if config.optimizer == 'sdlm':
    sdlm.check(config, model)


def eval_batch_size(config) -> int:
  """Global; `batch_size` unless the config sets its own."""
  return config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size


def compute_dtype(config) -> jnp.dtype:
  if config.dtype not in DTYPES:
    raise ConfigError(f'unknown dtype {config.dtype!r}; known: {", ".join(DTYPES)}')
  return DTYPES[config.dtype]


def recorded_architecture(recorded: dict) -> dict:
  """Constructor arguments of a checkpoint's model, as its run resolved them."""
  return dict(num_classes=recorded['num_classes'], in_channels=recorded['in_channels'],
              image_size=recorded['image_size'], **recorded['model_kwargs'])


@dataclasses.dataclass(frozen=True)
class Assembly:
  """What a config gives a command before it reads a checkpoint or trains a step."""
  config: object  # The checked ml_collections config.
  mesh: Mesh  # Every device of every process, or this process's (`local`).
  source: input_pipeline.Source | None  # This process's part of each split; None without data.
  architecture: dict  # The model's constructor arguments.
  abstract_model: nnx.Module  # Shapes only: no weights are made.
  dtype: jnp.dtype  # Computation dtype.
  normalization: dict | None  # mean, std and dtype, as the steps standardise pixels on device.
  local: bool = False  # The mesh holds this process's devices only: no collective between them.

  @functools.cached_property
  def replicated(self) -> NamedSharding:  # Parameters and metric sums.
    return mesh_lib.replicated_sharding(self.mesh)

  @functools.cached_property
  def data_sharding(self) -> NamedSharding:  # Batches, split along the mesh's 'data' axis.
    return mesh_lib.batch_sharding(self.mesh)

  @property
  def local_batch(self) -> int:
    """This process's share of `batch_size`."""
    return mesh_lib.local_batch_size(self.config.batch_size)

  @property
  def eval_batch_size(self) -> int:
    return eval_batch_size(self.config)

  @property
  def local_eval_batch(self) -> int:
    return mesh_lib.local_batch_size(self.eval_batch_size, 'eval_batch_size')

  def model(self) -> nnx.Module:
    """The model with fresh weights from the config's seed."""
    return cnns.create_model(self.config.model, dtype=self.dtype,
                             rngs=nnx.Rngs(self.config.seed), **self.architecture)

  def optimizer(self, steps_per_epoch: int) -> optax.GradientTransformation:
    return optim.create_optimizer(self.config, steps_per_epoch)

  def train_step(self, graphdef: nnx.GraphDef, tx: optax.GradientTransformation):
    """The jitted train step of the config's recipe (training/steps.py)."""
    config = self.config
    return steps.make_train_step(
        graphdef, tx, num_classes=self.architecture['num_classes'],
        label_smoothing=config.label_smoothing, seed=config.seed, out_sharding=self.replicated,
        aux_loss_weight=config.aux_loss_weight,
        bn_groups=jax.device_count() if config.batchnorm == 'per_device' else 1,
        ema_decay=optim.ema_decay(config), **self.normalization)

  def abstract_state(self, config) -> tuple[nnx.GraphDef, TrainState]:
    """(graphdef, shapes and shardings of the TrainState that training saves under `config`, a
    checkpoint's recorded one, or the assembly's own for checkpoints older than recorded
    configs): with `ema_params` where its `ema_decay` > 0 (absent from configs recorded before
    it: 0)."""
    graphdef, params, batch_stats = split_model(self.abstract_model)
    tx = optim.create_optimizer(config, steps_per_epoch=1)  # The schedule shapes no state.
    state = TrainState(step=jax.ShapeDtypeStruct((), 'int32'), params=params,
                       batch_stats=batch_stats, opt_state=jax.eval_shape(tx.init, params),
                       ema_params=params if optim.ema_decay(config) > 0 else None)
    return graphdef, jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated), state)


def assemble(config, workdirs=(), *, local: bool = False) -> Assembly:
  """Checks `config` (and that each of `workdirs` could be one), builds the mesh and this
  process's data source, and traces the model: a window that does not tile its input
  (GeometryError) surfaces here, before any weights. `local` meshes this process's devices only,
  for evaluations whose batches differ between processes (dense testing's batches hold whole
  images of one shape)."""
  for workdir in workdirs:
    validate(config, workdir)
  mesh_lib.local_batch_size(eval_batch_size(config), 'eval_batch_size')
  mesh = mesh_lib.create_mesh(local=local)
  source = input_pipeline.create_source(config, process_index=jax.process_index(),
                                        process_count=jax.process_count())
  dtype = compute_dtype(config)
  architecture = model_architecture(config, source)
  abstract_model, _ = cnns.trace(config.model, dtype=dtype, **architecture)
  check_model_options(config, abstract_model)
  mean, std = input_pipeline.normalization(config, source.spec)
  return Assembly(config=config, mesh=mesh, source=source, architecture=architecture,
                  abstract_model=abstract_model, dtype=dtype,
                  normalization=dict(mean=mean, std=std, dtype=dtype), local=local)


def assemble_from_record(config, recorded: dict, dataset: dict | None = None) -> Assembly:
  """The model a checkpoint recorded (`recorded`: its config, with the classes and channels its
  run resolved), in `config`'s dtype, on every device, with no data source; standardised with
  `dataset`'s recorded statistics where given."""
  dtype = compute_dtype(config)
  architecture = recorded_architecture(recorded)
  abstract_model, _ = cnns.trace(recorded['model'], dtype=dtype, **architecture)
  normalization = None
  if dataset is not None:
    spec = input_pipeline.DatasetSpec(recorded['num_classes'], (0, 0, recorded['in_channels']),
                                      '', '', tuple(dataset['mean']), tuple(dataset['std']))
    mean, std = input_pipeline.normalization(config, spec)
    normalization = dict(mean=mean, std=std, dtype=dtype)
  return Assembly(config=config, mesh=mesh_lib.create_mesh(), source=None,
                  architecture=architecture, abstract_model=abstract_model, dtype=dtype,
                  normalization=normalization)

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
import math
import os

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

import cnns
import input_pipeline
from cnns import layers
from training import mesh as mesh_lib
from training import optim, sdlm, steps
from training.errors import ConfigError
from training.state import TrainState, split_model

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float64': jnp.float64}
BATCHNORM = ('global', 'per_device')
BATCHNORM_RUNNING_VARS = ('biased', 'unbiased')
# The config's numeric fields (configs/default.py says what each means) by the values they take;
# the fields of one optimizer or schedule (sdlm_samples, plateau_*) are checked where it is built.
# Whole numbers: the smallest allowed, and what -1 stands for where the field has such a value.
WHOLE_NUMBERS = {
    'num_classes': (1, "the dataset's number of classes"),
    'in_channels': (1, "the dataset's image channels"),
    'image_size': (1, None),
    'shuffle_buffer_size': (1, None),
    'data_shards': (1, 'one per process'),
    'eval_resize': (1, 'image_size / 0.875'),
    'synthetic_train_examples': (1, None),
    'synthetic_eval_examples': (1, None),
    'batch_size': (1, None),
    'eval_batch_size': (1, 'batch_size'),
    'num_epochs': (1, None),
    'seed': (0, None),
    'sdlm_every_examples': (1, 'once per epoch'),
    'log_every_steps': (1, None),
    'eval_every_epochs': (1, None),
    'checkpoint_every_steps': (1, None),
    'keep_checkpoints': (1, None),
    'prefetch_to_device': (0, None),
    'paper.crops': (0, None),
}
# Real numbers: the fields, what each value must satisfy, and that rule in words. NaN satisfies
# none; infinity is refused with every other non-finite number of the config.
REAL_NUMBERS = (
    (('learning_rate', 'lr_decay_factor', 'rmsprop_epsilon', 'sdlm_mu'), lambda v: v > 0,
     'be positive'),
    (('aux_loss_weight', 'pca_lighting', 'lr_decay_every_epochs', 'warmup_epochs', 'weight_decay'),
     lambda v: v >= 0, 'not be negative'),
    (('label_smoothing', 'momentum', 'rmsprop_decay', 'ema_decay'), lambda v: 0 <= v < 1,
     'be in [0, 1)'),
)
# Tuples of numbers (the sources, the schedule and evaluate.py check what the numbers mean), and
# those of them that are intervals, (smallest, largest).
NUMBER_TUPLES = ('crop_area_range', 'train_scale_range', 'dataset_mean', 'dataset_std',
                 'lr_decay_epochs', 'lr_decay_factors', 'profile_steps', 'paper.scales')
INTERVALS = ('crop_area_range', 'train_scale_range')


def validate(config, workdir: str) -> None:
  """Errors a user can cause that need no data: one message each, raised as ConfigError, before
  anything is read or written. Every field with a type, a range or a set of known values is
  checked here, and every number in the config is finite; what a value means for the dataset,
  the model or the schedule is checked where those are built (`assemble`: still before the
  workdir is made)."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f'workdir {workdir} exists and is not a directory')
  if config.model not in cnns.available_models():
    raise ConfigError(f'unknown model {config.model!r}; known models: '
                      f'{", ".join(cnns.available_models())}')
  for field, known in (('dtype', tuple(DTYPES)), ('batchnorm', BATCHNORM),
                       ('batchnorm_running_var', BATCHNORM_RUNNING_VARS),
                       ('input_convention', ('dataset', *input_pipeline.INPUT_CONVENTIONS)),
                       ('optimizer', optim.OPTIMIZERS), ('lr_schedule', optim.SCHEDULES),
                       ('weight_decay_params', optim.WEIGHT_DECAY_PARAMS),
                       ('ema_num_updates', optim.EMA_NUM_UPDATES)):
    if config[field] not in known:
      raise ConfigError(f'unknown {field} {config[field]!r}; known: {", ".join(known)}')
  for field, (low, minus_one) in WHOLE_NUMBERS.items():
    value = _field(config, field)
    if not (isinstance(value, int) and not isinstance(value, bool)):
      raise ConfigError(f'{field}={value!r} must be a whole number')
    if not (value >= low or minus_one and value == -1):
      raise ConfigError(f'{field}={value} must ' + ('be positive' if low else 'not be negative')
                        + (f', or -1 for {minus_one}' if minus_one else ''))
  if config.seed >= 2**63:
    raise ConfigError(f'seed={config.seed} must be below 2**63')
  for fields, allowed, rule in REAL_NUMBERS:
    for field in fields:
      if not (_is_number(config[field]) and allowed(config[field])):
        raise ConfigError(f'{field}={config[field]!r} must {rule}')
  for field in NUMBER_TUPLES:
    values = tuple(_field(config, field))
    if not all(map(_is_number, values)) or (field in INTERVALS and len(values) != 2):
      raise ConfigError(f'{field}={values} must be ' + (
          '(smallest, largest)' if field in INTERVALS else 'numbers'))
  if not all(epoch >= 0 for epoch in config.lr_decay_epochs):
    raise ConfigError(f'lr_decay_epochs={tuple(config.lr_decay_epochs)} must be epochs >= 0')
  for field in ('top1_error', 'top5_error'):
    value = config.paper[field]
    if not (value is None or _is_number(value) and 0 <= value <= 100):
      raise ConfigError(f'paper.{field}={value!r} must be a percentage, or None')
  for field, value in config_fields(config.to_dict()):
    numbers = value if isinstance(value, (tuple, list)) else (value,)
    if not all(math.isfinite(v) for v in numbers if isinstance(v, float)):
      raise ConfigError(f'{field}={value} must ' + (
          'hold finite numbers' if isinstance(value, (tuple, list)) else 'be a finite number'))
  profile = tuple(config.profile_steps)
  if profile and not (len(profile) == 2 and all(isinstance(s, int) for s in profile)
                      and 0 <= profile[0] < profile[1]):
    raise ConfigError(f'profile_steps={profile} must be (start, stop), whole steps with '
                      '0 <= start < stop, or () for none')


def _field(config, dotted: str):
  """`config`'s field 'name' or 'group.name'."""
  for name in dotted.split('.'):
    config = config[name]
  return config


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_fields(tree: dict, name: str = ''):
  """(field, value) of every field of a config's dict, those of its groups as 'group.field'."""
  for key, value in tree.items():
    field = f'{name}.{key}' if name else key
    if isinstance(value, dict):
      yield from config_fields(value, field)
    else:
      yield field, value


def model_architecture(config, source: input_pipeline.Source) -> dict:
  """Constructor arguments of `config.model` for `source`'s images: classes, channels, size, and
  the family's own options."""
  num_classes = config.num_classes if config.num_classes > 0 else source.spec.num_classes
  channels = source.image_shape[-1]
  if config.in_channels > 0 and config.in_channels != channels:
    raise ConfigError(f'in_channels={config.in_channels} but {config.dataset} images have '
                      f'{channels} channels: set --config.in_channels={channels}')
  taken = sorted({'num_classes', 'in_channels', 'image_size', 'dtype', 'rngs'}
                 & set(config.model_kwargs))
  if taken:
    raise ConfigError(f'model_kwargs cannot set {taken[0]}: the config\'s own fields do '
                      f'(--config.{"seed" if taken[0] == "rngs" else taken[0]})')
  return dict(num_classes=num_classes, in_channels=channels, image_size=source.image_shape[0],
              **config.model_kwargs)


def check_model_options(config, model: nnx.Module) -> None:
  """Options that the model must support: one line each where it does not."""
  if config.batchnorm == 'per_device' and not any(
      isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(model)):
    raise ConfigError(f"batchnorm='per_device' but {config.model} has no BatchNorm layers")
  if config.optimizer == 'sdlm':
    sdlm.check(config, model)


def device_memory() -> int:
  """Bytes that one device holds: its allocator's limit (GPU, TPU), or on the CPU, whose devices
  share the host's memory, an equal share of that."""
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get('bytes_limit') or input_pipeline.host_memory() // jax.local_device_count()


def check_activation_memory(config, rows: list[layers.Row], dtype: jnp.dtype) -> None:
  """Refuses an image size whose largest activation (the model's layers `rows`, per image) for
  one device's share of a batch does not fit in a device's memory on its own: one line naming the
  size, where the first step would fail out of memory, or the system kill the process, after the
  workdir is made. A sure failure, not an estimate of what training needs (several times more)."""
  batch, field = max((config.batch_size, 'batch_size'),
                     (eval_batch_size(config), 'eval_batch_size'), key=lambda pair: pair[0])
  images = batch // jax.device_count()
  layer = max(rows, key=lambda row: math.prod(row.output_shape))
  needed = images * math.prod(layer.output_shape) * jnp.dtype(dtype).itemsize
  memory = device_memory()
  if needed > memory:
    raise ConfigError(
        f"image_size={config.image_size}: {layer.name}'s output alone for {images} images (a "
        f"device's share of {field}={batch}) takes {input_pipeline.in_bytes(needed)}, more than a "
        f"device's {input_pipeline.in_bytes(memory)}; use a smaller image_size or {field}")


def check_parameter_memory(config, model: nnx.Module) -> None:
  """Refuses a model whose training state cannot fit in a device's memory: its float32
  parameters, their gradients and the optimizer's buffer (momentum, or Adam's two: counted as
  one), a sure lower bound. Fully connected layers grow with the image: AlexNet, VGG or LeNet-5
  at a few thousand pixels would otherwise be killed by the system after the workdir is made."""
  params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  needed = 3 * params * 4
  memory = device_memory()
  if needed > memory:
    raise ConfigError(
        f'image_size={config.image_size}: {config.model} has {params:,} parameters here; with '
        f'their gradients and the optimizer\'s buffer they take {input_pipeline.in_bytes(needed)}, '
        f'more than a device\'s {input_pipeline.in_bytes(memory)}; use a smaller image_size')


def eval_batch_size(config) -> int:
  """Global; `batch_size` unless the config sets its own."""
  return config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size


def compute_dtype(config) -> jnp.dtype:
  if config.dtype not in DTYPES:
    raise ConfigError(f'unknown dtype {config.dtype!r}; known: {", ".join(DTYPES)}')
  if config.dtype == 'float64' and not jax.config.jax_enable_x64:  # JAX would compute float32.
    raise ConfigError("dtype='float64' needs JAX's 64-bit mode: set JAX_ENABLE_X64=1")
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
        bn_unbiased_var=config.batchnorm_running_var == 'unbiased',
        ema_decay=optim.ema_decay(config),
        ema_counts_this_step=config.ema_num_updates == 'after_step', **self.normalization)

  def abstract_state(self, config) -> tuple[nnx.GraphDef, TrainState]:
    """(graphdef, shapes and shardings of the TrainState that training saves under `config`, a
    checkpoint's recorded one, or the assembly's own for checkpoints older than recorded
    configs): with `ema_params` where its `ema_decay` > 0 (absent from configs recorded before
    it: 0), and `ema_batch_stats` where it averages them (`optim.ema_batch_stats`)."""
    graphdef, params, batch_stats = split_model(self.abstract_model)
    tx = optim.create_optimizer(config, steps_per_epoch=1)  # The schedule shapes no state.
    state = TrainState(step=jax.ShapeDtypeStruct((), 'int32'), params=params,
                       batch_stats=batch_stats, opt_state=jax.eval_shape(tx.init, params),
                       ema_params=params if optim.ema_decay(config) > 0 else None,
                       ema_batch_stats=batch_stats if optim.ema_batch_stats(config) else None)
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
  mesh_lib.local_batch_size(config.batch_size)
  mesh_lib.local_batch_size(eval_batch_size(config), 'eval_batch_size')
  mesh = mesh_lib.create_mesh(local=local)
  source = input_pipeline.create_source(config, process_index=jax.process_index(),
                                        process_count=jax.process_count())
  dtype = compute_dtype(config)
  architecture = model_architecture(config, source)
  with layers.recording() as recorder:
    try:
      abstract_model, _ = cnns.trace(config.model, dtype=dtype, **architecture)
    except TypeError as e:  # An option of model_kwargs that the model does not take.
      if 'unexpected keyword argument' not in str(e):
        raise
      raise ConfigError(f'model_kwargs={dict(config.model_kwargs)}: {config.model} '
                        f'{str(e).rsplit(") ", 1)[-1]}') from e
  check_parameter_memory(config, abstract_model)
  check_activation_memory(config, recorder.rows, dtype)
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

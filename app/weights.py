"""Weights a command reads from another workdir: restoring, what they need, and fine-tuning.

A checkpoint's record holds the config that made it, so the options that say what its weights
compute travel with it: ResNet's stride placement and padding (`model_kwargs`) and the pixel
standardisation (`input_convention`), both set by import_weights.py for published weights.
`checkpoint_config` gives evaluate.py and predict.py the user's config with those taken from the
checkpoint; `init_from` starts a new run from another run's (or an import's) layers, copied where
the paper's layer name and every shape match.
"""

import json
import os

import jax
import ml_collections
from flax import nnx

from app.assembly import assemble_from_record
from cnns import layers
from training.checkpoints import Checkpointer, committed_steps
from training.errors import ConfigError
from training import optim
from training.state import TrainState, create_train_state, with_ema

ADOPTED_FIELDS = ('model_kwargs', 'input_convention')  # What the weights compute with.
INITIALISATION_OPTIONS = ('zero_init_residual',)  # model_kwargs that only choose initial values.


def _checkpointer(workdir: str) -> Checkpointer | None:
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  return Checkpointer(directory, every_steps=1, keep=1, create=False) if os.path.isdir(
      directory) else None


def _no_checkpoint(workdir: str) -> ConfigError:
  return ConfigError(f'no checkpoint in {os.path.join(workdir, "checkpoints")}: train a config '
                     f'there first (python train.py --config=... --workdir={workdir}) or import '
                     'published weights (python import_weights.py ...)')


def record(workdir: str) -> dict:
  """The record saved with the newest readable checkpoint of `workdir`: the config that made it
  ('config'), what predict.py needs of its dataset ('dataset'), and the training state's own
  facts (metric sums, checksum, an import's source)."""
  checkpointer = _checkpointer(workdir)
  found = checkpointer.latest_record() if checkpointer else None
  if checkpointer:
    checkpointer.close()
  if found is None:
    raise _no_checkpoint(workdir)
  return found[0]


def recorded_config(workdir: str) -> dict | None:
  """The config recorded with the newest readable checkpoint of `workdir` (None for checkpoints
  older than recorded configs)."""
  return record(workdir).get('config')


def has_checkpoint(workdir: str) -> bool:
  return bool(committed_steps(os.path.join(workdir, 'checkpoints')))


def restore(workdir: str, abstract_state) -> tuple[TrainState, int]:
  """The latest checkpoint of `workdir` and its step; nothing in the workdir is created."""
  checkpointer = _checkpointer(workdir)
  if checkpointer is None or checkpointer.latest_step() is None:
    raise _no_checkpoint(workdir)
  try:
    state, _, step = checkpointer.restore_latest(abstract_state)
  finally:
    checkpointer.close()
  return state, step


def _json(value):
  return json.loads(json.dumps(value.to_dict() if hasattr(value, 'to_dict') else value))


def checkpoint_config(config, workdirs: list[str], note=print):
  """`config` with ADOPTED_FIELDS from the checkpoints of `workdirs` (which must agree), and
  a note for each that differs from what `config` says; a checkpoint of another model or number
  of classes is refused. Checkpoints older than recorded configs adopt nothing."""
  recorded = [recorded_config(w) for w in workdirs]
  if any(saved is None for saved in recorded):
    return config
  for workdir, saved in zip(workdirs, recorded):
    if saved['model'] != config.model:
      raise ConfigError(f'{workdir} holds a {saved["model"]} checkpoint, not {config.model}: '
                        f'pass that model\'s config')
    if 0 < config.num_classes != saved['num_classes']:
      raise ConfigError(f'{workdir} holds a {saved["num_classes"]}-class model; the config has '
                        f'num_classes={config.num_classes}')
    for field in ADOPTED_FIELDS:
      if _recorded(saved, field) != _recorded(recorded[0], field):
        raise ConfigError(f'{workdirs[0]} and {workdir} differ in {field}: an ensemble needs '
                          'models that compute the same kind of function')
  adopted = ml_collections.ConfigDict(config.to_dict())
  for field in ADOPTED_FIELDS:
    value = _recorded(recorded[0], field)
    if value != _json(config[field]):
      note(f'note: using the checkpoint\'s {field}={value} '
           f'(the config says {_json(config[field])})')
      adopted[field] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
  adopted.lock()
  return adopted


def _recorded(saved: dict, field: str):
  """A recorded config's `field`; checkpoints from before the field had its default."""
  return saved.get(field, {'model_kwargs': {}, 'input_convention': 'dataset'}[field])


def check_init_from(config) -> dict:
  """The recorded config of `config.init_from`, refused (one line, before any workdir is touched)
  where the new run would standardise its pixels or compute its layers otherwise."""
  source = recorded_config(config.init_from)
  if source is None:
    raise ConfigError(f'init_from={config.init_from}: its checkpoints predate recorded configs')
  convention = _recorded(source, 'input_convention')
  if convention != config.input_convention:
    raise ConfigError(f'init_from={config.init_from} expects input_convention={convention}: '
                      f'add --config.input_convention={convention}')
  theirs, ours = source['model_kwargs'], _json(config.model_kwargs)
  for key in sorted(set(theirs) | set(ours)):
    if theirs.get(key) != ours.get(key) and key not in INITIALISATION_OPTIONS:
      raise ConfigError(f'init_from={config.init_from} was made with model_kwargs.{key}='
                        f'{theirs.get(key)}; this run has {ours.get(key)}: add '
                        f'--config.model_kwargs.{key}={theirs.get(key)}')
  return source


def initial_state(assembly, tx, workdir: str, note=print) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, a run's state before it restores its own checkpoints): the config's
  initialisation, or in a fresh run with `init_from`, that run's layers where they match; with a
  running average of the params that starts at them where the config keeps one."""
  config = assembly.config
  # A fresh run starts from init_from's layers; a resumed one from its own checkpoints.
  source = check_init_from(config) if config.init_from and not has_checkpoint(workdir) else None
  graphdef, state = create_train_state(assembly.model(), tx)
  if source is not None:
    state = init_from(config, source, assembly, state, note=note)
  if optim.ema_decay(config) > 0:
    state = with_ema(state, optim.ema_batch_stats(config))
  return graphdef, state


def layer_names(model: nnx.Module) -> dict[tuple, str]:
  """State path of each layer -> its paper name (conv1_1, conv2_1a, fc6, Block35_1/...)."""
  names = {}
  for path, module in nnx.iter_modules(model):
    if isinstance(module, layers.ConvBN):
      names[path] = module.conv.name
    elif isinstance(module, layers.Conv):
      names[path] = module.name
    elif isinstance(module, layers.Linear):
      names[path] = '/'.join(map(str, path))
  return names


def by_layer(model: nnx.Module, params: dict, batch_stats: dict) -> dict[str, dict]:
  """{layer name: {(part, path, path within the layer): array}} of params and statistics."""
  names = layer_names(model)
  grouped = {}
  for part, tree in (('params', params), ('batch_stats', batch_stats)):
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      path = tuple(k.key for k in key_path)
      cut = next((i for i in range(len(path)) if path[:i] in names), len(path) - 1)
      name = names.get(path[:cut], '/'.join(map(str, path[:cut])))
      grouped.setdefault(name, {})[(part, path, path[cut:])] = leaf
  return grouped


def init_from(config, source: dict, assembly, state: TrainState, note=print):
  """`state` with every layer of `assembly`'s model whose name and shapes match the latest
  checkpoint of `config.init_from` (recorded config `source`) copied from it; the others keep
  their values."""
  theirs_assembly = assemble_from_record(config, source)
  source_model = theirs_assembly.abstract_model
  _, abstract = theirs_assembly.abstract_state(ml_collections.ConfigDict(source))
  try:
    restored, step = restore(config.init_from, abstract)
  except ConfigError as e:
    raise ConfigError(f'init_from={config.init_from}: {e}') from e
  # The source's final model: its running averages where it kept them.
  final = restored if restored.ema_params is None else restored.averaged()
  theirs = {name: {within: leaf for (_, _, within), leaf in parts.items()}
            for name, parts in by_layer(source_model, final.params, final.batch_stats).items()}
  ours = by_layer(assembly.abstract_model, state.params, state.batch_stats)
  copied, fresh = [], []
  tree = {'params': state.params, 'batch_stats': state.batch_stats}
  for name, parts in ours.items():
    match = theirs.get(name, {})
    if len(match) == len(parts) and all(
        within in match and match[within].shape == leaf.shape
        for (_, _, within), leaf in parts.items()):
      copied.append(name)
      for (part, path, within), _ in parts.items():
        tree[part] = _replace(tree[part], path, match[within])
    else:
      fresh.append(name)
  if not copied:
    raise ConfigError(f'init_from={config.init_from}: no layer of {config.model} matches a layer '
                      f'of its {source["model"]} by name and shape')
  if not fresh:
    listed = f'all {len(copied)} layers'
  elif len(fresh) <= len(copied):
    listed = f'{len(copied)} of {len(ours)} layers, all but {", ".join(fresh)}'
  else:
    listed = f'{len(copied)} of {len(ours)} layers: {", ".join(copied)}'
  note(f'init_from {config.init_from} (step {step}, {source["model"]}): copied {listed}')
  return state.replace(params=tree['params'], batch_stats=tree['batch_stats'])


def _replace(tree: dict, path: tuple, value) -> dict:
  """A copy of nested dict `tree` with the leaf at `path` replaced."""
  if len(path) == 1:
    return {**tree, path[0]: value}
  return {**tree, path[0]: _replace(tree[path[0]], path[1:], value)}

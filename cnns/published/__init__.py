"""Published weights (Keras Applications, torchvision) mapped exactly onto this project's models.

Each covered model is a `Variant`: the source's own model, the constructor options with which this
project's family computes that model's function (ResNet's stride placement and padding), and the
source's input convention (`input_pipeline.INPUT_CONVENTIONS`). `load` reads the source's file in
its own format, maps every tensor by name and layout (HWIO kernels, NHWC flattening before fc6),
folds what this project's layers do not have (Keras' convolution biases before BatchNorm go into
the running mean; another BatchNorm epsilon goes into the running variance; a BGR model's channel
order goes into its first convolution), and returns the params and batch statistics of the
model's state, or raises `WeightsError` naming the first tensor that does not fit.
"""

import dataclasses
import os

import jax
import numpy as np
from flax import nnx

# Our state path -> (array, the file's name of the layer it comes from).
Entries = dict[tuple, tuple[np.ndarray, str]]

_RESNET_V1 = {'stride_on_3x3': False, 'padding': 'symmetric'}  # The authors' Caffe models.
_RESNET_V1_5 = {'stride_on_3x3': True, 'padding': 'symmetric'}  # torchvision's.


class WeightsError(ValueError):
  """A weights file that cannot be read, or does not fit the config's model."""


@dataclasses.dataclass(frozen=True)
class Variant:
  source: str  # 'keras' or 'torchvision'.
  name: str  # The source's name of the model: keras.applications.<name>, torchvision.models.<name>.
  model_kwargs: dict  # This project's constructor options that compute the source's function.
  input_convention: str  # Key of input_pipeline.INPUT_CONVENTIONS.
  bgr: bool = False  # Trained on BGR pixels: the reader reverses conv1's input channels.


VARIANTS = {
    ('keras', 'vgg16'): Variant('keras', 'VGG16', {}, 'caffe', bgr=True),
    ('keras', 'vgg19'): Variant('keras', 'VGG19', {}, 'caffe', bgr=True),
    **{('keras', f'resnet{d}'): Variant('keras', f'ResNet{d}', _RESNET_V1, 'caffe', bgr=True)
       for d in (50, 101, 152)},
    ('keras', 'inception_resnet_v2'): Variant('keras', 'InceptionResNetV2', {}, 'tf'),
    **{('torchvision', f'resnet{d}'): Variant('torchvision', f'resnet{d}', _RESNET_V1_5, 'torch')
       for d in (18, 34, 50, 101, 152)},
    **{('torchvision', f'vgg{d}'): Variant('torchvision', f'vgg{d}', {}, 'torch')
       for d in (11, 13, 16, 19)},
}
SUFFIXES = {'.h5': 'keras', '.hdf5': 'keras', '.pth': 'torchvision', '.pt': 'torchvision'}


def variant(path: str, model: str) -> Variant:
  """The covered variant of `model` that the weights file `path` holds, by its suffix."""
  source = SUFFIXES.get(os.path.splitext(path)[1].lower())
  if source is None:
    raise WeightsError(f'{path}: not a Keras (.h5, .weights.h5) or torchvision (.pth) file')
  if (source, model) not in VARIANTS:
    covered = ', '.join(m for s, m in VARIANTS if s == source)
    raise WeightsError(f'{path} is a {source} file; {source} weights are imported for {covered}, '
                       f'not {model}')
  return VARIANTS[source, model]


def load(path: str, chosen: Variant, model: nnx.Module, *,
         check_hash: bool = True) -> tuple[dict, dict]:
  """(params, batch_stats) of `model` (abstract: shapes only) from the file `path`; `check_hash`:
  a torchvision file's SHA-256 against the prefix in its name (`torchvision.check_hash_prefix`)."""
  if chosen.source == 'keras':
    from cnns.published import keras as reader
  else:
    from cnns.published import torchvision as reader
    if check_hash:
      reader.check_hash_prefix(path)
  return fill(path, model, reader.entries(path, chosen, model))


def module_at(model: nnx.Module, path: tuple) -> nnx.Module:
  for key in path:
    model = model[key] if isinstance(key, int) else getattr(model, key)
  return model


def add_conv_bn(entries: Entries, model: nnx.Module, path: tuple, name: str, kernel, *, beta,
                mean, var, epsilon: float, gamma=None, bias=None) -> None:
  """A `layers.ConvBN` at `path` from a convolution (HWIO `kernel`, optional `bias`) followed by
  BatchNorm with the source's `epsilon` (`gamma` None: BatchNorm without scale, a scale of ones
  where ours has one)."""
  bn = module_at(model, path).bn
  ours = bn.epsilon
  entries[(*path, 'conv', 'conv', 'kernel')] = (kernel, name)
  if bn.scale is not None:
    entries[(*path, 'bn', 'scale')] = (np.ones_like(beta) if gamma is None else gamma, name)
  elif gamma is not None:
    raise WeightsError(f"{name}'s BatchNorm has a scale, the config's model none")
  entries[(*path, 'bn', 'bias')] = (beta, name)
  # BN(conv + b) with mean m is BN(conv) with mean m - b; sqrt(var + e) = sqrt(var' + ours).
  entries[(*path, 'bn', 'mean')] = (mean if bias is None else mean - bias, name)
  entries[(*path, 'bn', 'var')] = (var + np.float32(epsilon - ours), name)


def add_dense(entries: Entries, path: tuple, name: str, kernel, bias) -> None:
  """The `nnx.Linear` or biased `nnx.Conv` at `path` from its kernel (in the module's layout)."""
  entries[(*path, 'kernel')] = (kernel, name)
  entries[(*path, 'bias')] = (bias, name)


def bgr_to_rgb(kernel: np.ndarray) -> np.ndarray:
  """The first convolution of a model trained on BGR pixels, for RGB pixels (exact)."""
  return kernel[:, :, ::-1, :]


def fill(path: str, model: nnx.Module, entries: Entries) -> tuple[dict, dict]:
  """The model's params and batch statistics, each leaf taken from `entries`, all of which must
  be used, with the model's shape and dtype (float32; float64 for a float64 model)."""
  _, params, batch_stats = nnx.split(model, nnx.Param, ...)
  params, batch_stats = nnx.to_pure_dict(params), nnx.to_pure_dict(batch_stats)
  unused = dict(entries)

  def take(key_path, leaf):
    key = tuple(k.key for k in key_path)
    where = '/'.join(map(str, key))
    if key not in unused:
      raise WeightsError(f'{path} has no tensor for {where} of the config\'s model')
    array, name = unused.pop(key)
    if not np.isfinite(array).all():
      raise WeightsError(f'{path}: {name}\'s {key[-1]} holds non-finite numbers ({where})')
    if array.shape != leaf.shape:
      raise WeightsError(f'{path}: {name}\'s {key[-1]} has shape {tuple(array.shape)} where the '
                         f'config\'s model has {tuple(leaf.shape)} ({where})')
    return np.ascontiguousarray(array, leaf.dtype)

  params, batch_stats = (jax.tree_util.tree_map_with_path(take, tree)
                         for tree in (params, batch_stats))
  if unused:
    name = next(iter(unused.values()))[1]
    raise WeightsError(f'{path}: {name} has no place in the config\'s model')
  return params, batch_stats

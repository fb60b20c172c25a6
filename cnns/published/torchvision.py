"""torchvision's weights (`.pth` state dicts), read without PyTorch (cnns/published/torch_file.py).

PyTorch stores convolution kernels [out, in, h, w] and linear weights [out, in]; this project's
are [h, w, in, out] and [in, out]. VGG's fc6 also sees its input flattened in another order
(PyTorch flattens C, H, W; NHWC flattens H, W, C), so its rows are permuted. ResNet's state dict
names (layer1.0.conv1, downsample.0/1, bn1) map onto conv2_1's first convolution, its projection
shortcut, and so on.

torch.hub names each published file after the first hex digits of its SHA-256
(`resnet50-0676ba61.pth`) and refuses a download that does not match them; `check_hash_prefix`
does the same for a file given by path, so that a damaged or substituted file is not imported.
"""

import hashlib
import math
import os
import re

import numpy as np
from flax import nnx

from cnns.published import Variant, WeightsError, add_conv_bn, add_dense, torch_file


class StateDict(dict):
  """A state dict that says which tensor is missing, and which were never used."""

  def __init__(self, path: str, tensors: dict):
    super().__init__(tensors)
    self.path, self.used = path, set()

  def __getitem__(self, key: str) -> np.ndarray:
    if key not in self:
      raise WeightsError(f'{self.path} has no tensor {key} where the config\'s model has one')
    self.used.add(key)
    return super().__getitem__(key)


# torch.hub's HASH_REGEX (`-([a-f0-9]*)\.`), at the end of the name and at least 8 digits long.
HASH_PREFIX = re.compile(r'-([0-9a-f]{8,})\.pth$')


def check_hash_prefix(path: str) -> None:
  """Raises WeightsError unless the SHA-256 of the file begins with the hex digits its name
  carries, if it carries them."""
  match = HASH_PREFIX.search(os.path.basename(path))
  if match is None:
    return
  with open(path, 'rb') as f:
    digest = hashlib.file_digest(f, 'sha256').hexdigest()
  expected = match.group(1)
  if not digest.startswith(expected):
    raise WeightsError(f'{path}: its name says its SHA-256 starts with {expected}, it starts with '
                       f'{digest[:len(expected)]}: the file is damaged or not the published one; '
                       'download it again, or add --accept_hash_mismatch to import it as it is')


def entries(path: str, chosen: Variant, model: nnx.Module) -> dict:
  try:
    tensors = torch_file.load_state_dict(path)
  except ValueError as e:
    raise WeightsError(str(e)) from e
  state = StateDict(path, {k: v for k, v in tensors.items()
                           if not k.endswith('num_batches_tracked')})
  mapped = {}
  (_resnet if chosen.name.startswith('resnet') else _vgg)(state, model, mapped)
  unused = [key for key in state if key not in state.used]
  if unused:
    raise WeightsError(f'{path}: {unused[0]} has no place in the config\'s model')
  return mapped


def _kernel(state: StateDict, key: str) -> np.ndarray:
  """The convolution weight `key`, PyTorch's [out, in, H, W] as Flax's [H, W, in, out]."""
  weight = state[key]
  if weight.ndim != 4:
    raise WeightsError(f'{state.path}: {key} has shape {tuple(weight.shape)}, not a '
                       'convolution\'s [out, in, height, width]')
  return weight.transpose(2, 3, 1, 0)


def _conv_bn(mapped, model, path, state, conv: str, bn: str) -> None:
  add_conv_bn(mapped, model, path, conv, _kernel(state, f'{conv}.weight'),
              gamma=state[f'{bn}.weight'], beta=state[f'{bn}.bias'],
              mean=state[f'{bn}.running_mean'], var=state[f'{bn}.running_var'], epsilon=1e-5)


def _resnet(state: StateDict, model: nnx.Module, mapped) -> None:
  _conv_bn(mapped, model, ('conv1',), state, 'conv1', 'bn1')
  for key in list(state):
    if m := re.fullmatch(r'layer(\d)\.(\d+)\.(conv\d|downsample\.0)\.weight', key):
      layer, index, conv = m.groups()
      name = f'conv{int(layer) + 1}_{int(index) + 1}'  # layer1.0 is the paper's conv2_1.
      if name not in model.names:
        raise WeightsError(f'{state.path}: {key} has no place in the config\'s '
                           f'{len(model.names)}-block model')
      unit = 'shortcut' if conv.startswith('downsample') else conv
      bn = 'downsample.1' if unit == 'shortcut' else conv.replace('conv', 'bn')
      prefix = f'layer{layer}.{index}'
      _conv_bn(mapped, model, ('blocks', model.names.index(name), unit), state,
               f'{prefix}.{conv}', f'{prefix}.{bn}')
  add_dense(mapped, ('fc', 'linear'), 'fc', state['fc.weight'].T, state['fc.bias'])


def _vgg(state: StateDict, model: nnx.Module, mapped) -> None:
  convs = sorted(int(m.group(1)) for key, value in state.items()
                 if (m := re.fullmatch(r'features\.(\d+)\.weight', key)) and value.ndim == 4)
  for i, index in enumerate(convs):
    add_dense(mapped, ('convs', i, 'conv'), f'features.{index}',
              _kernel(state, f'features.{index}.weight'), state[f'features.{index}.bias'])
  # fc6's inputs: PyTorch's [C, H, W] order -> NHWC's [H, W, C], at the config's final size.
  fc6 = state['classifier.0.weight']
  channels = model.convs[-1].conv.out_features
  side = math.isqrt(model.fc6.linear.in_features // channels)
  if fc6.shape[1] != side * side * channels:
    raise WeightsError(f'{state.path}: classifier.0 sees {fc6.shape[1]} inputs where the '
                       f'config\'s model has {side}x{side}x{channels} (its image_size differs)')
  fc6 = fc6.reshape(-1, channels, side, side).transpose(0, 2, 3, 1).reshape(fc6.shape[0], -1)
  add_dense(mapped, ('fc6', 'linear'), 'classifier.0', fc6.T, state['classifier.0.bias'])
  for torch_index, ours in ((3, 'fc7'), (6, 'fc8')):
    add_dense(mapped, (ours, 'linear'), f'classifier.{torch_index}',
              state[f'classifier.{torch_index}.weight'].T, state[f'classifier.{torch_index}.bias'])

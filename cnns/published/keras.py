"""Keras Applications' weights: the published `.h5` files and Keras 3's `.weights.h5`.

Keras itself reads the file into its own model, built without weights, so both formats (and the
published files' layer order, which Keras matches by position) are read exactly as
`keras.applications.<Name>(weights=FILE)` reads them. Layers are then mapped by their names (VGG:
block1_conv1 -> conv1_1, fc1 -> fc6; ResNet: conv2_block1_1_conv -> conv2_1's first convolution)
or, for Inception-ResNet-v2, whose branch layers Keras names by a running counter (conv2d,
conv2d_1, ...), in the order Keras creates them, which is the order of the TF-slim model's code
that this project's Inception-ResNet-v2 follows.
"""

import re
import warnings

import numpy as np
from flax import nnx

from cnns.published import Variant, WeightsError, add_conv_bn, add_dense, bgr_to_rgb

_EPSILON = {'ResNet': 1.001e-5, 'InceptionResNetV2': 1e-3}  # Their BatchNormalization's.


class Layers(dict):
  """Keras layer name -> {weight name ('kernel', 'gamma', ...): array}."""

  def __missing__(self, name: str):
    raise WeightsError(f'the file has no layer {name} where the config\'s model has one')


def read_layers(path: str, chosen: Variant, num_classes: int) -> Layers:
  """Keras' model with every weight from the file. Its weights start as NaN, so that one Keras
  skipped (it warns and goes on) cannot pass for a loaded one: `fill` refuses non-finite ones."""
  import keras  # pylint: disable=import-outside-toplevel
  model = getattr(keras.applications, chosen.name)(weights=None, classes=num_classes,
                                                   classifier_activation=None)
  for weight in model.weights:
    weight.assign(np.full(weight.shape, np.nan, weight.dtype))
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # Keras warns before it raises the same error.
      model.load_weights(path)
  except Exception as e:  # pylint: disable=broad-except  (Keras raises many types for a bad file)
    reason = ' '.join(str(e).split())[:400] or type(e).__name__
    raise WeightsError(f'{path} does not fit keras.applications.{chosen.name} with '
                       f'{num_classes} classes: {reason}') from e
  return Layers({layer.name: {w.name: np.asarray(w.numpy()) for w in layer.weights}
                 for layer in model.layers if layer.weights})


def entries(path: str, chosen: Variant, model: nnx.Module) -> dict:
  classifier = (model.fc8 if chosen.name.startswith('VGG') else
                model.fc if chosen.name.startswith('ResNet') else model.logits)
  return layer_entries(read_layers(path, chosen, classifier.linear.out_features), chosen, model)


def layer_entries(layers: Layers, chosen: Variant, model: nnx.Module) -> dict:
  """The entries of `layers` (by Keras' layer names, as `read_layers` gives them) for `model`."""
  mapped = {}
  if chosen.name.startswith('VGG'):
    _vgg(layers, chosen, mapped)
  elif chosen.name.startswith('ResNet'):
    _resnet(layers, chosen, model, mapped)
  else:
    _inception_resnet_v2(layers, model, mapped)
  return mapped


def _conv_bn(mapped, model, path, layers, conv: str, bn: str, epsilon: float, bgr=False):
  weights, stats = layers[conv], layers[bn]
  kernel = bgr_to_rgb(weights['kernel']) if bgr else weights['kernel']
  add_conv_bn(mapped, model, path, conv, kernel, gamma=stats.get('gamma'), beta=stats['beta'],
              mean=stats['moving_mean'], var=stats['moving_variance'], epsilon=epsilon,
              bias=weights.get('bias'))


def _dense(mapped, path, layers, name: str, bgr=False):
  kernel = bgr_to_rgb(layers[name]['kernel']) if bgr else layers[name]['kernel']
  add_dense(mapped, path, name, kernel, layers[name]['bias'])


def _vgg(layers: Layers, chosen: Variant, mapped) -> None:
  convs = sorted((tuple(map(int, m.groups())), name) for name in layers
                 if (m := re.fullmatch(r'block(\d+)_conv(\d+)', name)))
  for i, (_, name) in enumerate(convs):
    _dense(mapped, ('convs', i, 'conv'), layers, name, bgr=chosen.bgr and i == 0)
  for keras_name, ours in (('fc1', 'fc6'), ('fc2', 'fc7'), ('predictions', 'fc8')):
    _dense(mapped, (ours, 'linear'), layers, keras_name)


def _resnet(layers: Layers, chosen: Variant, model: nnx.Module, mapped) -> None:
  epsilon = _EPSILON['ResNet']
  _conv_bn(mapped, model, ('conv1',), layers, 'conv1_conv', 'conv1_bn', epsilon, bgr=chosen.bgr)
  ours = {'1': 'conv1', '2': 'conv2', '3': 'conv3', '0': 'shortcut'}  # Keras' 0: the projection.
  for name in layers:
    if m := re.fullmatch(r'conv(\d)_block(\d+)_(\d)_conv', name):
      stage, block, unit = m.groups()
      if f'conv{stage}_{block}' not in model.names:
        raise WeightsError(f'{name} has no place in the config\'s {len(model.names)}-block model')
      path = ('blocks', model.names.index(f'conv{stage}_{block}'), ours[unit])
      _conv_bn(mapped, model, path, layers, name, name[:-len('conv')] + 'bn', epsilon)
  _dense(mapped, ('fc', 'linear'), layers, 'predictions')


def _numbered(layers: Layers, base: str) -> list[str]:
  """Keras' automatically named layers `base`, `base_1`, `base_2`, ... in creation order."""
  found = [(int(m.group(1) or 0), name) for name in layers
           if (m := re.fullmatch(rf'{base}(?:_(\d+))?', name))]
  return [name for _, name in sorted(found)]


def _inception_resnet_v2(layers: Layers, model: nnx.Module, mapped) -> None:
  """Keras' conv2d_bn units, unnamed, in the order its code creates them; the named layers: each
  residual block's up-projection (block35_1_conv, ...), conv_7b and predictions."""
  units = [('stem', i, 'conv') for i in range(len(model.stem))]
  residual = []
  for group in ('mixed_5b', 'blocks_a', 'mixed_6a', 'blocks_b', 'mixed_7a', 'blocks_c'):
    modules = getattr(model, group)
    if not isinstance(modules, nnx.List):  # Mixed_5b or a reduction: one `Branches`.
      units += _chain_units((group,), modules)
      continue
    for i, block in enumerate(modules):
      units += _chain_units((group, i, 'branches'), block.branches)
      residual.append(((group, i, 'up', 'conv'), f'{_BLOCK_NAMES[group]}_{i + 1}_conv'))
  convs, norms = _numbered(layers, 'conv2d'), _numbered(layers, 'batch_normalization')
  if not len(convs) == len(norms) == len(units):
    raise WeightsError(f'the file has {len(convs)} unnamed convolutions, the config\'s model '
                       f'{len(units)}')
  for path, conv, bn in zip(units, convs, norms):
    _conv_bn(mapped, model, path, layers, conv, bn, _EPSILON['InceptionResNetV2'])
  for path, name in residual:
    _dense(mapped, path, layers, name)
  _conv_bn(mapped, model, ('conv_7b', 'conv'), layers, 'conv_7b', 'conv_7b_bn',
           _EPSILON['InceptionResNetV2'])
  _dense(mapped, ('logits', 'linear'), layers, 'predictions')


def _chain_units(prefix: tuple, branches) -> list[tuple]:
  return [(*prefix, 'chains', b, j, 'conv') for b, chain in enumerate(branches.chains)
          for j in range(len(chain))]


_BLOCK_NAMES = {'blocks_a': 'block35', 'blocks_b': 'block17', 'blocks_c': 'block8'}

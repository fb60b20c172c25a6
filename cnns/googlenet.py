"""GoogLeNet, Inception v1 (Szegedy et al., 2015, Table 1), with its two auxiliary classifiers.

224x224x3 -> conv1 7x7/2 -> pool1 3x3/2 -> norm1 (LRN) -> conv2 (1x1 reduce 64, 3x3 192) -> norm2
-> pool2 -> inception 3a, 3b -> pool3 -> 4a .. 4e -> pool4 -> 5a, 5b -> 7x7 average pool ->
dropout 0.4 -> fc classes, ReLU after every convolution. An inception module concatenates four
branches: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5; 3x3 max pool (stride 1) -> 1x1 projection.

The auxiliary classifiers sit on 4a and 4d (5x5/3 average pool -> 1x1 conv 128 -> fc 1024 ->
dropout 0.7 -> fc classes) and run only in training, where the model returns
`AuxiliaryOutputs(logits, (aux1, aux2))` and the train step adds 0.3 x their losses; evaluation
returns the main logits only, and `cnns.summary` lists the heads' 3.19M parameters each apart from
the inference network's 7.0M (the text's "12 times fewer parameters than AlexNet" says about 5M).

Output sizes and multiply-adds equal Table 1's (to its rounding) for conv2 and every inception
module except 5a, whose row (1072K, 54M) does not follow from its own widths (1,018K weights, 51.1M
multiply-adds at 1K = 1024). The table's params column disagrees with its widths for most modules
(4c: 463K printed, 497.5K computed) and conv1's row (2.7K, 34M) is not 7x7x3x64 = 9,408 weights
(118M multiply-adds); this model follows the widths, as BVLC's Caffe model and torchvision do.
Details after BVLC's reproduction (`bvlc_googlenet`): max pools with ceil rounding ('SAME' here, the
same sizes), LRN of size 5 with Caffe's alpha = 1e-4 / 5, beta 0.75, k = 1. The final 7x7 average
pool is global, so other input sizes work where the auxiliary pools fit (e.g. 128).
"""

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from cnns import layers
from cnns.layers import record
from cnns.registry import register

# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
_MODULES = {
    '3a': (64, 96, 128, 16, 32, 32), '3b': (128, 128, 192, 32, 96, 64),
    '4a': (192, 96, 208, 16, 48, 64), '4b': (160, 112, 224, 24, 64, 64),
    '4c': (128, 128, 256, 24, 64, 64), '4d': (112, 144, 288, 32, 64, 64),
    '4e': (256, 160, 320, 32, 128, 128), '5a': (256, 160, 320, 32, 128, 128),
    '5b': (384, 192, 384, 48, 128, 128),
}
_POOL_BEFORE = {'4a': 'pool3', '5a': 'pool4'}
_AUX_AFTER = {'4a': 'aux1', '4d': 'aux2'}


def _caffe_lrn() -> layers.LocalResponseNorm:
  return layers.LocalResponseNorm(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0)


class Inception(nnx.Module):
  """Four parallel branches concatenated along channels."""

  def __init__(self, name: str, in_features: int, widths: tuple[int, ...], *, conv):
    n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj = widths
    self.name = name
    self.b1 = conv(f'{name}/1x1', in_features, n1x1, 1)
    self.b2_reduce = conv(f'{name}/3x3_reduce', in_features, n3x3red, 1)
    self.b2 = conv(f'{name}/3x3', n3x3red, n3x3, 3, padding=1)
    self.b3_reduce = conv(f'{name}/5x5_reduce', in_features, n5x5red, 1)
    self.b3 = conv(f'{name}/5x5', n5x5red, n5x5, 5, padding=2)
    self.b4 = conv(f'{name}/pool_proj', in_features, pool_proj, 1)
    self.out_features = n1x1 + n3x3 + n5x5 + pool_proj

  def __call__(self, x: jax.Array) -> jax.Array:
    relu = nnx.relu
    pooled = layers.max_pool(f'{self.name}/pool', x, 3, 1, 1)
    return jnp.concatenate([relu(self.b1(x)), relu(self.b2(relu(self.b2_reduce(x)))),
                            relu(self.b3(relu(self.b3_reduce(x)))), relu(self.b4(pooled))],
                           axis=-1)


class AuxiliaryClassifier(nnx.Module):
  """5x5/3 average pool -> 1x1 conv 128 -> fc 1024 -> dropout 0.7 -> fc classes."""

  def __init__(self, name: str, in_features: int, in_size: int, num_classes: int, *, conv, dtype,
               rngs: nnx.Rngs):
    self.name = name
    size = layers.check_fit(f'{name}/pool', in_size, 5, 3, 0)
    self.conv = conv(f'{name}/conv', in_features, 128, 1)
    self.fc1 = layers.Linear(size * size * 128, 1024, dtype=dtype, rngs=rngs)
    self.fc2 = layers.Linear(1024, num_classes, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(0.7)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None) -> jax.Array:
    x = nnx.relu(self.conv(layers.avg_pool(f'{self.name}/pool', x, 5, 3)))
    x = nnx.relu(self.fc1(x.reshape(x.shape[0], -1)))
    return self.fc2(self.dropout(x, rngs=rngs))


class GoogLeNet(nnx.Module):
  auxiliary_heads = ('aux1', 'aux2')

  def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
               dropout_rate: float = 0.4, dtype=jnp.float32, rngs: nnx.Rngs):
    conv = functools.partial(layers.Conv, dtype=dtype, rngs=rngs)
    self.conv1 = conv('conv1', in_channels, 64, 7, 2, 'SAME')
    self.norm1 = _caffe_lrn()
    self.conv2_reduce = conv('conv2/3x3_reduce', 64, 64, 1)
    self.conv2 = conv('conv2/3x3', 64, 192, 3, padding=1)
    self.norm2 = _caffe_lrn()
    size_4x = math.ceil(image_size / 16)  # conv1 and three 'SAME' stride-2 pools.
    modules, features = [], 192
    for name, widths in _MODULES.items():
      modules.append(Inception(f'inception_{name}', features, widths, conv=conv))
      features = modules[-1].out_features
      if name in _AUX_AFTER:
        setattr(self, _AUX_AFTER[name], AuxiliaryClassifier(
            _AUX_AFTER[name], features, size_4x, num_classes, conv=conv, dtype=dtype, rngs=rngs))
    self.inceptions = nnx.List(modules)
    self.dropout = nnx.Dropout(dropout_rate)
    self.fc = layers.Linear(features, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *,
               rngs: nnx.Rngs | None = None) -> jax.Array | layers.AuxiliaryOutputs:
    training = not self.dropout.deterministic  # Set by `model.train()` / `model.eval()`.
    relu = nnx.relu
    x = record('conv1', relu(self.conv1(x)))
    x = record('pool1', layers.max_pool('pool1', x, 3, 2, 'SAME'))
    x = record('norm1', self.norm1(x))
    x = record('conv2', relu(self.conv2(relu(self.conv2_reduce(x)))))
    x = record('norm2', self.norm2(x))
    x = record('pool2', layers.max_pool('pool2', x, 3, 2, 'SAME'))
    aux_logits = []
    for name, module in zip(_MODULES, self.inceptions):
      if name in _POOL_BEFORE:
        pool = _POOL_BEFORE[name]
        x = record(pool, layers.max_pool(pool, x, 3, 2, 'SAME'))
      x = record(module.name, module(x))
      if training and name in _AUX_AFTER:
        aux_logits.append(getattr(self, _AUX_AFTER[name])(x, rngs=rngs))
    x = record('avgpool', layers.global_avg_pool(x))
    logits = record('fc', self.fc(self.dropout(x, rngs=rngs)))
    return layers.AuxiliaryOutputs(logits, tuple(aux_logits)) if training else logits


@register
def googlenet(**kwargs) -> GoogLeNet:
  return GoogLeNet(**kwargs)

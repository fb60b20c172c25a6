"""TF-slim's train_image_classifier.py (tensorflow/models research/slim), the script of the
authors' TF-slim release of Inception-ResNet-v2, on Keras' port of slim's network.

slim itself (tf.contrib.slim, TensorFlow 1) runs nowhere today; its training step is made of
TensorFlow ops that TensorFlow 2 still has, run here eagerly in the virtual environment's
TensorFlow, in the order of slim's graph:

- the model: `keras.applications.InceptionResNetV2(weights=None)`, Keras' port of
  nets/inception_resnet_v2.py (the same layers, names aside, as the importer's exact mapping of
  Keras' published weights shows: tests/test_published.py), its BatchNorm layers set to slim's
  `batch_norm_decay=0.9997` (inception_resnet_v2_arg_scope; Keras' default is 0.99; the epsilon,
  0.001, and the absent scale are slim's already; Keras' has no dropout, slim's keeps 80%, and
  the check turns the project's off). Keras' builder has slim's fixed 10, 20 and 10 residual
  blocks; a smaller check keeps the first of each kind (and the last, unscaled C block) by
  wrapping the builder's `inception_resnet_block`, so every layer is still Keras' own;
- the loss: `tf.compat.v1.losses.softmax_cross_entropy(onehot_labels, logits,
  label_smoothing)` (train_image_classifier.py's clone_fn; slim.losses is that function) plus
  the arg scope's regularisers, `weight_decay * tf.nn.l2_loss(w)` (slim.l2_regularizer) on the
  weights and biases of every `conv2d` and `fully_connected` (Keras' Conv2D and Dense), not on
  BatchNorm's;
- the rate: `tf.compat.v1.train.exponential_decay(learning_rate, global_step, decay_steps,
  learning_rate_decay_factor, staircase=True)` with _configure_learning_rate's decay_steps,
  int(num_samples_per_epoch / batch_size * num_epochs_per_decay);
- the step: `tf.compat.v1.train.RMSPropOptimizer(learning_rate, decay=rmsprop_decay,
  momentum=rmsprop_momentum, epsilon=opt_epsilon).apply_gradients(..., global_step)` on
  `tape.gradient` of that total loss with respect to every trainable variable (Keras 3 keeps
  each variable's tf.Variable in `.value`, which the TensorFlow 1 optimizer updates eagerly);
  BatchNorm's moving statistics are updated in the forward pass, as slim's UPDATE_OPS are;
- the average (with `moving_average_decay`): `tf.compat.v1.train.ExponentialMovingAverage(
  moving_average_decay, global_step).apply(slim.get_model_variables())`, every weight of the
  model, BatchNorm's moving mean and variance among them (slim's batch_norm creates them as
  model variables). Its averages are created before the first step, at the variables' initial
  values, as slim's graph initialises them. slim groups the average's op with the gradient
  step in one `tf.group` without an order between them; here it runs after the step, so that
  its decay's num_updates is the global step that apply_gradients has just counted.

Numbers reach TensorFlow as tensors of the run's dtype: TensorFlow 1's optimizer and
exponential_decay make float32 tensors of Python numbers before casting them to a float64
variable's dtype (the decay 0.9 becomes 0.8999999762, the rate's 0.94 0.9399999976), which alone
parts float64 runs by 1e-7 a step; in float32, slim's precision, it changes nothing.
ExponentialMovingAverage computes its decay in float32 whatever the variables' dtype, as this
project does. The loss announced is slim's, whose reduction compute_weighted_loss does in float32
(the gradient is exact): in float64 the losses agree to float32's rounding.

The state after each step goes back to the check as arrays by Keras' layer and weight names
(weights, RMSProp's `rms` and `momentum` slots, the averages: a file each), read into the
config's model by the importer's mapping of Keras' Inception-ResNet-v2 (cnns/published/keras.py).
"""

import os
import sys

import jax
import numpy as np
import optax

from cnns import published
from cnns.published import keras as keras_weights
from training import optim
from training.errors import ConfigError

PYTHON = sys.executable  # The virtual environment's, with TensorFlow and Keras.
NEEDS = 'TensorFlow and Keras'
INSTALL = 'pip install -r requirements.txt'
KERAS_BLOCKS = (10, 20, 10)  # InceptionResNetV2's Inception-ResNet-A, -B and -C blocks.
KERAS_SMALLEST_IMAGE = 75  # InceptionResNetV2's min_size.

# train_image_classifier.py's step on Keras' InceptionResNetV2, as the docstring above says.
SCRIPT = r"""
import json, os, sys
os.environ['KERAS_BACKEND'] = 'tensorflow'
import numpy as np, tensorflow as tf, keras
from keras.src.applications import inception_resnet_v2 as builder

BATCH_NORM_DECAY = 0.9997  # inception_resnet_v2_arg_scope's batch_norm_decay.

def announce(message):
  print(json.dumps(message), flush=True)
  if not sys.stdin.readline():  # The other side has gone.
    sys.exit(1)

def keep_blocks(repeats):
  # The builder's blocks beyond `repeats` are left out (the input goes on unchanged); the last C
  # block, unscaled, stays, named as the builder names the last block it keeps.
  block = builder.inception_resnet_block
  def some_blocks(x, scale, block_type, block_idx, activation='relu'):
    kept = dict(zip(('block35', 'block17', 'block8'), repeats))[block_type]
    if block_type == 'block8' and activation is None:
      return block(x, scale, block_type, kept, activation)
    if block_idx > kept - (block_type == 'block8'):
      return x
    return block(x, scale, block_type, block_idx, activation)
  builder.inception_resnet_block = some_blocks

def model(dtype):
  keras.backend.clear_session()  # Layer names count from conv2d again.
  keras.config.set_floatx(dtype)
  size = args['image_size']
  net = keras.applications.InceptionResNetV2(weights=None, input_shape=(size, size, 3),
                                             classes=args['num_classes'],
                                             classifier_activation=None)
  for layer in net.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.momentum = BATCH_NORM_DECAY
  return net

def weights(net):
  return {f'{layer.name}/{w.name}': w for layer in net.layers for w in layer.weights}

def train(dtype):
  net = model(dtype)
  for key, w in weights(net).items():
    w.assign(initial[key].astype(dtype))
  variables = [w.value for w in net.weights]  # slim.get_model_variables().
  trainable = [w.value for w in net.trainable_weights]
  regularised = [w.value for layer in net.layers
                 if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
                 for w in layer.weights]
  global_step = tf.Variable(0, dtype=tf.int64, trainable=False)  # slim.create_global_step's.
  decay_steps = int(args['num_samples_per_epoch'] / args['batch_size']
                    * args['num_epochs_per_decay'])
  learning_rate = tf.compat.v1.train.exponential_decay(
      tf.constant(args['learning_rate'], dtype), global_step, decay_steps,
      tf.constant(args['learning_rate_decay_factor'], dtype), staircase=True)
  optimizer = tf.compat.v1.train.RMSPropOptimizer(
      learning_rate, decay=tf.constant(args['rmsprop_decay'], dtype),
      momentum=tf.constant(args['rmsprop_momentum'], dtype),
      epsilon=tf.constant(args['opt_epsilon'], dtype))
  averages = None
  if args['moving_average_decay']:
    averages = tf.compat.v1.train.ExponentialMovingAverage(args['moving_average_decay'],
                                                           global_step)
    averages.apply(variables)  # Created at the initial values; average - value is 0.
  for step in range(args['steps']):
    onehot = tf.one_hot(labels[step], args['num_classes'], dtype=dtype)
    with tf.GradientTape() as tape:
      logits = net(tf.constant(images[step], dtype), training=True)
      loss = tf.compat.v1.losses.softmax_cross_entropy(
          onehot, logits, label_smoothing=args['label_smoothing'])
      total_loss = loss + tf.add_n([args['weight_decay'] * tf.nn.l2_loss(v)
                                    for v in regularised])
    rate = learning_rate()
    optimizer.apply_gradients(zip(tape.gradient(total_loss, trainable), trainable),
                              global_step=global_step)
    if averages:
      averages.apply(variables)
    slot = lambda name: lambda w: (optimizer.get_slot(w.value, name) if w.trainable
                                   else tf.zeros_like(w.value))  # The importer fills every weight.
    parts = {'weights': lambda w: w.value, 'ms': slot('rms'), 'mom': slot('momentum')}
    if averages:
      parts['ema'] = lambda w: averages.average(w.value)
    for part, get in parts.items():  # A file each: one part in memory at a time.
      np.savez(f'{directory}/{part}.npz', **{key: np.asarray(get(w))
                                             for key, w in weights(net).items()})
    announce({'loss': float(loss), 'rate': float(rate)})

directory = sys.argv[1]
with open(f'{directory}/args.json') as f:
  args = json.load(f)
keep_blocks(args['repeats'])
keras.utils.set_random_seed(args['seed'])
initial = {key: np.asarray(w.value) for key, w in weights(model('float32')).items()}
np.savez(f'{directory}/initial.npz', **initial)
batches = np.load(f'{directory}/batches.npz')
images, labels = batches['images'], batches['labels']
announce({'tensorflow': tf.__version__, 'keras': keras.__version__})
for dtype in args['dtypes']:
  train(dtype)
  keras.backend.clear_session()
  announce({'trained': dtype})
"""


def arguments(config, steps_count: int, steps_per_epoch: int, dtypes: tuple[str, ...]) -> dict:
  """train_image_classifier.py's flags for `config`'s recipe (its names), or ConfigError where
  the check cannot run that recipe with slim's script and Keras' network."""
  if config.model != 'inception_resnet_v2':
    raise ConfigError(f'no slim reference for {config.model}: it is the reference of '
                      'inception_resnet_v2 (keras.applications.InceptionResNetV2)')
  kwargs = config.model_kwargs.to_dict()
  repeats = tuple(kwargs.get('repeats', KERAS_BLOCKS))
  refusals = [
      (kwargs.get('batchnorm_scale', True), "model_kwargs batchnorm_scale=True: slim's and "
       "Keras' BatchNorm have no scale; use configs/inception_resnet_v2_slim.py"),
      (not all(0 <= n <= most for n, most in zip(repeats, KERAS_BLOCKS)),
       f"repeats={repeats}: Keras' builder has {KERAS_BLOCKS} blocks, of which the check can "
       'leave some out'),
      (config.optimizer != 'rmsprop',
       f"optimizer={config.optimizer!r}: the check runs train_image_classifier.py's RMSProp"),
      (config.lr_schedule != 'exponential', f'lr_schedule={config.lr_schedule!r}: '
       "train_image_classifier.py's exponential_decay(staircase=True) is 'exponential'"),
      (config.warmup_epochs > 0, 'warmup_epochs > 0: train_image_classifier.py does not warm up'),
      (config.image_size < KERAS_SMALLEST_IMAGE, f"image_size={config.image_size}: Keras' "
       f'InceptionResNetV2 takes images of {KERAS_SMALLEST_IMAGE}x{KERAS_SMALLEST_IMAGE} or more'),
      (config.num_classes < 1 or config.in_channels != 3,
       'num_classes and in_channels=3 must be set')]
  for refused, message in refusals:
    if refused:
      raise ConfigError(f'no slim reference for {message}')
  return {'repeats': repeats, 'num_classes': config.num_classes, 'image_size': config.image_size,
          'seed': config.seed, 'weight_decay': config.weight_decay,
          'learning_rate': config.learning_rate, 'rmsprop_decay': config.rmsprop_decay,
          'rmsprop_momentum': config.momentum, 'opt_epsilon': config.rmsprop_epsilon,
          'label_smoothing': config.label_smoothing,
          'num_epochs_per_decay': config.lr_decay_every_epochs,
          'learning_rate_decay_factor': 1.0 / config.lr_decay_factor,
          'moving_average_decay': optim.ema_decay(config) or None,
          'batch_size': config.batch_size,
          'num_samples_per_epoch': steps_per_epoch * config.batch_size, 'steps': steps_count,
          'dtypes': list(dtypes)}


def _read(trainer, name: str) -> tuple[dict, dict]:
  """(params, batch_stats) of the file `name`, arrays by Keras' layer and weight names, read by
  the importer's mapping of Keras' Inception-ResNet-v2."""
  path = os.path.join(trainer.directory, name)
  layers = keras_weights.Layers()
  with np.load(path) as arrays:
    for key in arrays.files:
      layer, weight = key.split('/')
      layers.setdefault(layer, {})[weight] = arrays[key]
  variant = published.VARIANTS['keras', 'inception_resnet_v2']
  return published.fill(path, trainer.abstract,
                        keras_weights.layer_entries(layers, variant, trainer.abstract))


def initial(trainer) -> tuple[dict, dict]:
  return _read(trainer, 'initial.npz')


def after(trainer, step: int):
  """The state after `step` steps: RMSProp's ms is optax's nu; its mom, which the rate scales
  before the momentum, is minus optax's trace (optax adds the scaled update, TensorFlow
  subtracts mom)."""
  ms, _ = _read(trainer, 'ms.npz')
  mom, _ = _read(trainer, 'mom.npz')
  ema = _read(trainer, 'ema.npz') if optim.ema_decay(trainer.config) > 0 else None
  return trainer.state(*_read(trainer, 'weights.npz'), step, ema=ema, nu=ms,
                       trace=jax.tree.map(np.negative, mom))


def parts(config) -> tuple:
  """RMSProp's ms and mom, and with an average, the averaged parameters and the BatchNorm
  statistics that evaluations use (the averaged ones only with `ema_batch_stats`: slim's)."""
  slot = lambda name: lambda state: optax.tree_utils.tree_get(state.opt_state, name)
  rmsprop = (('RMSProp ms', slot('nu')),
             ('RMSProp mom', lambda state: jax.tree.map(np.negative, slot('trace')(state))))
  if optim.ema_decay(config) == 0:
    return rmsprop
  return (*rmsprop, ('averaged parameters', lambda state: state.averaged().params),
          ('averaged statistics', lambda state: state.averaged().batch_stats))

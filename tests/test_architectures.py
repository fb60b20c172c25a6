"""Architectures of the seed against its tables and the papers, by abstract evaluation."""

import functools
import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import cnns
from cnns import layers, summary
from tests.cli_runner import run_cli
from tests.conftest import read_metrics
from training import steps
from training.state import create_train_state


def table(model, image_size=224, in_channels=3, num_classes=1000, **model_kwargs):
  return summary.summarize(model, image_size=image_size, in_channels=in_channels,
                           num_classes=num_classes, **model_kwargs)


def rows(result):
  return {row['name']: row for row in result['layers']}


def test_lenet5_table():
  result = table('lenet5', image_size=32, in_channels=1, num_classes=10)
  assert result['total_params'] == 61_706
  assert [tuple(r['output_shape']) for r in result['layers']] == [
      (28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (120,), (84,), (10,)]


def test_alexnet_follows_the_seed():
  result = table('alexnet', image_size=227)
  by_name = rows(result)
  assert by_name['conv1']['params'] == 34_848 + 96
  assert [(r['name'], tuple(r['output_shape'])) for r in result['layers']] == [
      ('conv1', (55, 55, 96)), ('pool1', (27, 27, 96)), ('norm1', (27, 27, 96)),
      ('conv2', (27, 27, 256)), ('pool2', (13, 13, 256)), ('norm2', (13, 13, 256)),
      ('conv3', (13, 13, 384)), ('conv4', (13, 13, 384)), ('conv5', (13, 13, 256)),
      ('pool3', (6, 6, 256)), ('fc6', (4096,)), ('fc7', (4096,)), ('fc8', (1000,))]
  assert by_name['fc6']['params'] == 6 * 6 * 256 * 4096 + 4096  # "9216 to 4096 neurons".
  assert result['total_params'] == 62_378_344


# Table 2 of the VGG paper, in millions.
VGG_MILLIONS = {'vgg11': 133, 'vgg11_lrn': 133, 'vgg13': 133, 'vgg16c': 134, 'vgg16': 138,
                'vgg19': 144}


@pytest.mark.parametrize('model', VGG_MILLIONS)
def test_vgg_parameters_match_table_2(model):
  assert round(table(model)['total_params'] / 1e6) == VGG_MILLIONS[model]


def test_vgg16_matches_the_seeds_worked_example():
  result = table('vgg16')
  biases = sum(r['output_shape'][-1] for r in result['layers'] if r['params'])
  assert result['total_params'] - biases == 138_344_128
  by_name = rows(result)
  assert by_name['conv1_1']['params'] - 64 == 1_728  # (3 x 3 x 3) x 64
  assert tuple(by_name['conv1_2']['output_shape']) == (224, 224, 64)
  assert tuple(by_name['pool3']['output_shape']) == (28, 28, 256)
  assert tuple(by_name['pool5']['output_shape']) == (7, 7, 512)
  assert by_name['fc6']['params'] - 4096 == 7 * 7 * 512 * 4096  # 102,760,448
  # Seed: about 15M activations, 60 MB per image forward, 550 + 60 x 128 = 8.2 GB per batch.
  assert 15.0e6 < result['total_activations'] < 15.5e6
  assert 8.0 < summary.batch_memory_gb(result, 128, 1) < 8.6
  assert result['total_macs'] == pytest.approx(15.47e9, rel=1e-3)


def test_vgg16c_has_the_1x1_convolutions():
  by_name = rows(table('vgg16c'))
  assert by_name['conv3_3']['params'] == 256 * 256 + 256
  assert by_name['conv5_3']['params'] == 512 * 512 + 512


def test_geometry_that_does_not_fit_names_the_layer():
  with pytest.raises(layers.GeometryError, match=r'conv1: .* = 54\.25 does not fit'):
    table('alexnet', image_size=224)


@pytest.mark.parametrize('model, options, message', [
    ('resnet18', {'padding': 'valid'}, "unknown padding 'valid'; known: same, symmetric"),
    ('inception_resnet_v2', {'repeats': (5, 10)}, r'repeats=\(5, 10\) must be the numbers of A, '),
    ('inception_resnet_v2', {'repeats': (5, 10, 0)}, 'at least one C')])
def test_family_options_that_build_no_network_are_one_line(model, options, message):
  """`model_kwargs` a family refuses: a GeometryError, the entry points' one line."""
  with pytest.raises(layers.GeometryError, match=message):
    table(model, **options)


def test_summary_cli_json_and_geometry_error():
  result = run_cli('cnns.summary', '--config=configs/vgg19.py', '--json')
  assert result.returncode == 0, result.stderr
  data = json.loads(result.stdout)
  assert data['total_params'] == 143_667_240
  assert {'name', 'output_shape', 'params', 'macs'} <= set(data['layers'][0])
  bad = run_cli('cnns.summary', '--config=configs/alexnet.py', '--config.image_size=224')
  assert bad.returncode != 0 and 'Traceback' not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1].startswith('error: conv1: ')


# Table 1 of the GoogLeNet paper: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, output
# size, and ops in millions.
GOOGLENET_TABLE = {
    'inception_3a': (64, 96, 128, 16, 32, 32, (28, 28, 256), 128),
    'inception_3b': (128, 128, 192, 32, 96, 64, (28, 28, 480), 304),
    'inception_4a': (192, 96, 208, 16, 48, 64, (14, 14, 512), 73),
    'inception_4b': (160, 112, 224, 24, 64, 64, (14, 14, 512), 88),
    'inception_4c': (128, 128, 256, 24, 64, 64, (14, 14, 512), 100),
    'inception_4d': (112, 144, 288, 32, 64, 64, (14, 14, 528), 119),
    'inception_4e': (256, 160, 320, 32, 128, 128, (14, 14, 832), 170),
    'inception_5a': (256, 160, 320, 32, 128, 128, (7, 7, 832), 54),
    'inception_5b': (384, 192, 384, 48, 128, 128, (7, 7, 1024), 71),
}


def test_googlenet_follows_table_1():
  result = table('googlenet')
  by_name = rows(result)
  assert [(r['name'], tuple(r['output_shape'])) for r in result['layers'][:6]] == [
      ('conv1', (112, 112, 64)), ('pool1', (56, 56, 64)), ('norm1', (56, 56, 64)),
      ('conv2', (56, 56, 192)), ('norm2', (56, 56, 192)), ('pool2', (28, 28, 192))]
  assert by_name['conv2']['macs'] == pytest.approx(360e6, abs=0.5e6)
  in_features = 192
  for name, (n1, r3, n3, r5, n5, pool, shape, ops) in GOOGLENET_TABLE.items():
    row = by_name[name]
    assert tuple(row['output_shape']) == shape, name
    weights = in_features * (n1 + r3 + r5 + pool) + r3 * 9 * n3 + r5 * 25 * n5
    assert row['params'] == weights + n1 + r3 + n3 + r5 + n5 + pool, name
    if name != 'inception_5a':  # Its row's 54M does not follow from its widths (51.1M).
      assert row['macs'] == pytest.approx(ops * 1e6, abs=1e6), name  # Truncated or rounded.
    in_features = shape[-1]
  assert tuple(by_name['avgpool']['output_shape']) == (1024,)
  assert by_name['fc']['params'] == 1024 * 1000 + 1000
  # Auxiliary heads: listed apart, not in the inference network's total.
  head = lambda c: c * 128 + 128 + 4 * 4 * 128 * 1024 + 1024 + 1024 * 1000 + 1000
  assert result['auxiliary_params'] == {'aux1': head(512), 'aux2': head(528)}
  assert result['total_params'] == sum(r['params'] for r in result['layers']) == 6_998_552


def test_googlenet_returns_auxiliary_logits_only_in_training():
  net = nnx.eval_shape(lambda: cnns.create_model('googlenet', num_classes=10, image_size=128,
                                                 rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(net)

  def forward(state, images, training):
    model = nnx.merge(graphdef, state)
    model.train() if training else model.eval()
    return model(images, rngs=nnx.Rngs(dropout=0))

  images = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
  train_out = jax.eval_shape(functools.partial(forward, training=True), state, images)
  assert isinstance(train_out, layers.AuxiliaryOutputs) and len(train_out.aux_logits) == 2
  assert all(a.shape == (2, 10) for a in (train_out.logits, *train_out.aux_logits))
  assert jax.eval_shape(functools.partial(forward, training=False), state, images).shape == (2, 10)


# torchvision's parameter counts (an independent implementation) and Table 1's FLOPs.
RESNETS = {18: (11_689_512, 1.8), 34: (21_797_672, 3.6), 50: (25_557_032, 3.8),
           101: (44_549_160, 7.6), 152: (60_192_808, 11.3)}


@pytest.mark.parametrize('depth', RESNETS)
def test_resnet_follows_table_1(depth):
  params, gflops = RESNETS[depth]
  result = table(f'resnet{depth}')
  assert result['total_params'] == params
  assert result['total_macs'] / 1e9 == pytest.approx(gflops, abs=0.07)
  by_name = rows(result)
  expansion = 1 if depth < 50 else 4
  for stage, size in zip((2, 3, 4, 5), (56, 28, 14, 7)):
    width = 64 * 2**(stage - 2) * expansion
    assert tuple(by_name[f'conv{stage}_1']['output_shape']) == (size, size, width)
  assert tuple(by_name['conv1']['output_shape']) == (112, 112, 64)


def test_resnet_v1_5_moves_the_stride_and_zero_init_starts_at_identity():
  v1_5 = table('resnet50', stride_on_3x3=True)
  assert v1_5['total_params'] == RESNETS[50][0]
  assert v1_5['total_macs'] / 1e9 == pytest.approx(4.09, abs=0.01)  # torchvision's 4.09 GFLOPS.
  net = nnx.eval_shape(lambda: cnns.create_model('resnet50', zero_init_residual=True,
                                                 rngs=nnx.Rngs(0)))
  assert net.blocks[0].conv3.bn.scale.get_value().shape == (256,)
  real = cnns.create_model('resnet18', num_classes=10, image_size=32, zero_init_residual=True,
                           rngs=nnx.Rngs(0))
  assert all(float(jnp.abs(b.conv2.bn.scale.get_value()).max()) == 0.0 for b in real.blocks)
  assert all(float(jnp.abs(b.conv1.bn.scale.get_value()).min()) == 1.0 for b in real.blocks)


def test_torchvision_init_draws_as_torchvision():
  """He normal (fan-out) convolutions, then VGG's N(0, 0.01) fully connected layers and
  ResNet's fc as PyTorch's nn.Linear (uniform within 1/sqrt(fan-in)); biases 0 in VGG."""
  vgg = cnns.create_model('vgg11', num_classes=10, image_size=32, torchvision_init=True,
                          rngs=nnx.Rngs(0))
  assert np.std(vgg.convs[1].conv.kernel.get_value()) == pytest.approx(
      (2 / (9 * 128)) ** 0.5, rel=0.02)  # conv2_1: 128 outputs of 3x3.
  assert np.std(vgg.fc7.linear.kernel.get_value()) == pytest.approx(0.01, rel=0.01)
  assert float(jnp.abs(vgg.fc7.linear.bias.get_value()).max()) == 0.0
  resnet = cnns.create_model('resnet18', num_classes=1000, image_size=32, torchvision_init=True,
                             rngs=nnx.Rngs(0))
  for weights in (resnet.fc.linear.kernel.get_value(), resnet.fc.linear.bias.get_value()):
    assert float(jnp.abs(weights).max()) == pytest.approx(512 ** -0.5, rel=0.01)
    assert np.std(weights) == pytest.approx((3 * 512) ** -0.5, rel=0.1)


def test_zfnet_is_alexnet_with_the_seeds_changes():
  result = table('zfnet', image_size=227)
  by_name = rows(result)
  assert by_name['conv1']['params'] == 7 * 7 * 3 * 96 + 96
  assert [tuple(by_name[n]['output_shape']) for n in ('conv3', 'conv4', 'conv5', 'pool3')] == [
      (13, 13, 512), (13, 13, 1024), (13, 13, 512), (6, 6, 512)]
  assert by_name['conv4']['params'] == 3 * 3 * 512 * 1024 + 1024
  assert by_name['fc6']['params'] == 6 * 6 * 512 * 4096 + 4096


def test_inception_resnet_v2_volumes_and_counts():
  result = table('inception_resnet_v2', image_size=299)
  by_name = rows(result)
  expected = {'Conv2d_1a_3x3': (149, 149, 32), 'Conv2d_2a_3x3': (147, 147, 32),
              'Conv2d_2b_3x3': (147, 147, 64), 'MaxPool_3a_3x3': (73, 73, 64),
              'Conv2d_3b_1x1': (73, 73, 80), 'Conv2d_4a_3x3': (71, 71, 192),
              'MaxPool_5a_3x3': (35, 35, 192), 'Mixed_5b': (35, 35, 320),
              'Block35_10': (35, 35, 320), 'Mixed_6a': (17, 17, 1088),
              'Block17_20': (17, 17, 1088), 'Mixed_7a': (8, 8, 2080), 'Block8_10': (8, 8, 2080),
              'Conv2d_7b_1x1': (8, 8, 1536), 'Logits': (1000,)}
  assert {name: tuple(by_name[name]['output_shape']) for name in expected} == expected
  assert sum(r['name'].startswith('Block35_') for r in result['layers']) == 10
  figure_15 = table('inception_resnet_v2', image_size=299, repeats=(5, 10, 5))
  assert [sum(r['name'].startswith(b) for r in figure_15['layers'])
          for b in ('Block35_', 'Block17_', 'Block8_')] == [5, 10, 5]
  # timm's port of the TF-slim model: 55.84M parameters, 13.16 G multiply-adds.
  assert round(result['total_params'] / 1e4) == 5584
  assert result['total_macs'] / 1e9 == pytest.approx(13.16, abs=0.005)
  # Without BatchNorm's scale, slim's and Keras' model: Keras' 55,813,192 trainable parameters.
  unscaled = table('inception_resnet_v2', image_size=299, batchnorm_scale=False)
  assert unscaled['total_params'] == 55_813_192
  assert unscaled['total_macs'] == result['total_macs']
  with pytest.raises(layers.GeometryError, match=r'Conv2d_1a_3x3: .* = 148\.50 does not fit'):
    table('inception_resnet_v2', image_size=298)


# Every registered model is covered with its config's input (configs/<model>.py; 3 channels and 10
# classes where the config leaves them to the dataset), with no list to keep: its training step is
# traced abstractly at the config's image size, and the cheapest model of each family file (fewest
# multiply-accumulates on its smallest input), where compiling and running it is cheap, also
# trains a few steps on that input; its siblings differ in depth and widths, not in code
# (ResNet-50's bottleneck blocks train in test_imagenet.py; Inception-ResNet-v2's, one block of
# each kind, take TF-slim's exact steps in test_reference.py). What is cheap is measured: the traced
# step's jaxpr equations (compile time grows with them; measured: ResNet-50's step 5,500,
# ResNet-101's 10,800, Inception-ResNet-v2's 22,500) and cnns.summary's multiply-accumulates of
# one image of the smallest input (AlphaGo's 19x19x48 board has the most: 1.4G).
MAX_CONCRETE_EQUATIONS = 8_000
MAX_CONCRETE_MACS = 2e9


def config_input(model: str) -> dict:
  """The constructor arguments of `model`'s config: input, classes and model options."""
  try:
    config = importlib.import_module(f'configs.{model}').get_config()
  except ModuleNotFoundError:
    pytest.fail(f'registered model {model} has no config: add configs/{model}.py')
  assert config.model == model
  return dict(image_size=config.image_size,
              in_channels=config.in_channels if config.in_channels > 0 else 3,
              num_classes=config.num_classes if config.num_classes > 0 else 10,
              **config.model_kwargs)


def smallest_input(model: str, image_size: int, **kwargs) -> tuple[int, dict]:
  """The smallest image size that `model` fits among the config's size minus multiples of 16
  (the ImageNet networks halve their input four or five times), with its cnns.summary table."""
  for size in range(image_size % 16 or 16, image_size + 1, 16):
    try:
      return size, table(model, image_size=size, **kwargs)
    except layers.GeometryError:
      continue
  raise AssertionError(f'{model} fits no smaller size than {image_size}')


@functools.cache
def cheapest_input(model: str) -> tuple[int, float]:
  """`model`'s smallest input size and the multiply-accumulates of one image of it."""
  size, small = smallest_input(model, **config_input(model))
  return size, small['total_macs']


def trains_for_real(model: str, step_equations: int) -> bool:
  siblings = [m for m in cnns.available_models() if cnns.family(m) == cnns.family(model)]
  cheapest = min(siblings, key=lambda m: (cheapest_input(m)[1], m))
  return (model == cheapest and step_equations <= MAX_CONCRETE_EQUATIONS
          and cheapest_input(model)[1] <= MAX_CONCRETE_MACS)


def equations(jaxpr) -> int:
  """The operations of a jaxpr, those inside calls (jit, derivative rules, loops) included."""
  count = 0
  for equation in jaxpr.eqns:
    count += 1
    for param in equation.params.values():
      for inner in param if isinstance(param, (tuple, list)) else (param,):
        if hasattr(inner, 'eqns'):
          count += equations(inner)
  return count


def training_step(model: str, *, abstract: bool, image_size: int, in_channels: int,
                  num_classes: int, **kwargs):
  """(graphdef, state, jitted train step, normalisation) of `model`, with or without weights."""
  create = lambda: cnns.create_model(model, num_classes=num_classes, in_channels=in_channels,
                                     image_size=image_size, rngs=nnx.Rngs(0), **kwargs)
  net = nnx.eval_shape(create) if abstract else create()
  tx = optax.sgd(0.01, momentum=0.9)
  graphdef, state = create_train_state(net, tx)
  norm = dict(mean=(127.5,) * in_channels, std=(64.0,) * in_channels, dtype=jnp.float32)
  step = steps.make_train_step(graphdef, tx, num_classes=num_classes, label_smoothing=0.0, seed=0,
                               out_sharding=None, aux_loss_weight=0.3, **norm)
  return graphdef, state, step, norm


def assert_training_lowers_the_loss(model: str, *, image_size: int, in_channels: int = 3,
                                    num_classes: int = 10, **kwargs):
  graphdef, state, step, norm = training_step(model, abstract=False, image_size=image_size,
                                              in_channels=in_channels, num_classes=num_classes,
                                              **kwargs)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (8, image_size, image_size, in_channels), dtype=np.uint8),
           'label': np.arange(8, dtype=np.int32) * (num_classes // 8)}

  @jax.jit
  def training_loss(state):
    """The main head's loss (the model's own criterion where it has one) in training mode (batch
    statistics), with one fixed dropout mask."""
    model = nnx.merge(graphdef, state.params, state.batch_stats)
    model.train()
    outputs = model(steps.normalize(batch['image'], **norm), rngs=nnx.Rngs(dropout=0))
    logits = outputs.logits if isinstance(outputs, layers.AuxiliaryOutputs) else outputs
    criterion = getattr(model, 'loss', optax.softmax_cross_entropy)
    return criterion(logits, jax.nn.one_hot(batch['label'], num_classes)).mean()

  before = float(training_loss(state))
  for _ in range(5):
    state, _ = step(state, steps.zero_train_metrics(), batch)
  after = float(training_loss(state))
  assert np.isfinite(after) and after < before, (before, after)


def traced_step(model: str, arguments: dict):
  """The abstract train state of `model` and its training step traced on a batch of 2 images."""
  _, state, step, _ = training_step(model, abstract=True, **arguments)
  size, channels = arguments['image_size'], arguments['in_channels']
  batch = {'image': jax.ShapeDtypeStruct((2, size, size, channels), jnp.uint8),
           'label': jax.ShapeDtypeStruct((2,), jnp.int32)}
  return state, step.trace(state, steps.zero_train_metrics(), batch)


@pytest.mark.parametrize('model', cnns.available_models())
def test_every_registered_model_traces_a_training_step_and_the_cheap_ones_train(model):
  arguments = config_input(model)
  state, traced = traced_step(model, arguments)
  new_state, metrics = traced.out_info
  assert jax.tree.map(lambda x: x.shape, new_state.params) == jax.tree.map(
      lambda x: x.shape, state.params)
  assert metrics['loss'].shape == ()
  if trains_for_real(model, equations(traced.jaxpr)):
    arguments['image_size'] = cheapest_input(model)[0]
    assert_training_lowers_the_loss(model, **arguments)


def test_the_measure_of_cheap_tells_a_small_network_from_a_deep_one():
  """Not degenerate: LeNet-5 trains in the test above, ResNet-101 is only traced."""
  small, deep = (equations(traced_step(model, config_input(model))[1].jaxpr)
                 for model in ('lenet5', 'resnet101'))
  assert small <= MAX_CONCRETE_EQUATIONS < deep


@pytest.mark.parametrize('n, m, k, pool', [(1, 1, 0, True), (3, 2, 2, False)])
def test_pattern_networks_of_other_shapes_train(n, m, k, pool):
  assert_training_lowers_the_loss('pattern', image_size=16, convs_per_block=n, blocks=m,
                                  fc_layers=k, widths=8, fc_width=32, pool=pool)


def test_per_group_batchnorm_normalises_each_part_by_its_own_statistics():
  """And keeps the running averages of the groups' statistics, the variance with Bessel's
  correction where asked."""
  bn = layers.BatchNorm(3, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
  bn.scale[...] = jnp.array([1.0, 2.0, 0.5])
  bn.bias[...] = jnp.array([0.0, 1.0, -1.0])
  x = np.random.default_rng(0).normal(2.0, 3.0, (8, 4, 4, 3))
  with layers.batchnorm_training(2):
    y = np.asarray(bn(jnp.asarray(x, jnp.float32)))
  # float64 reference: each half of the batch by its own mean and (biased) variance.
  for part in (slice(0, 4), slice(4, 8)):
    h = x[part]
    mean, var = h.mean((0, 1, 2)), h.var((0, 1, 2))
    expected = (h - mean) / np.sqrt(var + 1e-5) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    np.testing.assert_allclose(y[part], expected, rtol=1e-4, atol=1e-4)
  halves = [x[:4].mean((0, 1, 2)), x[4:].mean((0, 1, 2))]
  np.testing.assert_allclose(bn.mean[...], 0.1 * np.mean(halves, 0), rtol=1e-4)
  unbiased = layers.BatchNorm(3, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
  with layers.batchnorm_training(2, unbiased_var=True):  # PyTorch's running variance.
    unbiased(jnp.asarray(x, jnp.float32))
  halves = [x[:4].var((0, 1, 2), ddof=1), x[4:].var((0, 1, 2), ddof=1)]
  np.testing.assert_allclose(unbiased.var[...], 0.9 + 0.1 * np.mean(halves, 0), rtol=1e-5)
  with layers.batchnorm_training(1):  # One group: exactly flax's BatchNorm.
    reference = nnx.BatchNorm(3, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    reference.scale[...], reference.bias[...] = bn.scale[...], bn.bias[...]
    np.testing.assert_allclose(bn(jnp.asarray(x, jnp.float32)),
                               reference(jnp.asarray(x, jnp.float32)), rtol=1e-6)


def test_alphago_policy_network_follows_the_paper():
  result = table('alphago_policy', image_size=19, in_channels=48, num_classes=361)
  layers_ = rows(result)
  conv1 = 5 * 5 * 48 * 192 + 192  # 230,592
  hidden = 3 * 3 * 192 * 192 + 192  # 331,968, conv2 .. conv12
  output = 192 + 19 * 19  # conv13's 1x1 weights and its bias per board point.
  assert [r['name'] for r in result['layers']] == [f'conv{i}' for i in range(1, 14)]
  assert layers_['conv1']['params'] == conv1 and layers_['conv12']['params'] == hidden
  assert all(tuple(layers_[f'conv{i}']['output_shape']) == (19, 19, 192) for i in range(1, 13))
  assert tuple(layers_['conv13']['output_shape']) == (361,)
  assert layers_['conv13']['params'] == output
  assert result['total_params'] == conv1 + 11 * hidden + output == 3_882_793
  with pytest.raises(layers.GeometryError, match='num_classes=10 must be 19x19'):
    table('alphago_policy', image_size=19, in_channels=48, num_classes=10)


@pytest.mark.parametrize('kwargs, image_size, in_channels, classes, expected', [
    # conv1_1 3*3*3*8+8, pool to 16, conv2_1 3*3*8*16+16, pool to 8, fc1 8*8*16*10+10.
    (dict(convs_per_block=1, blocks=2, fc_layers=0, widths=(8, 16)), 32, 3, 10,
     224 + 1168 + 10250),
    # conv1_1 3*3*1*4+4, conv1_2 and conv1_3 3*3*4*4+4 each, no pool: fc1 8*8*4*20+20,
    # fc2 20*20+20, fc3 20*5+5.
    (dict(convs_per_block=3, blocks=1, fc_layers=2, widths=4, fc_width=20, pool=False), 8, 1, 5,
     40 + 2 * 148 + 5140 + 420 + 105),
    # VGG-16's convolutions are N = 2, 2, 3, 3, 3: the same widths with N = 2 everywhere and K = 2
    # is VGG-13 (configuration B) exactly.
    (dict(convs_per_block=2, blocks=5, fc_layers=2, widths=(64, 128, 256, 512, 512),
          fc_width=4096), 224, 3, 1000, 133_047_848),
])
def test_pattern_networks_match_hand_counts(kwargs, image_size, in_channels, classes, expected):
  result = table('pattern', image_size=image_size, in_channels=in_channels, num_classes=classes,
                 **kwargs)
  assert result['total_params'] == expected
  if kwargs['blocks'] == 5:
    assert result['total_params'] == table('vgg13')['total_params']


def test_pattern_geometry_that_does_not_fit_is_one_line():
  with pytest.raises(layers.GeometryError, match=r'pool2: .* = 7\.50 does not fit'):
    table('pattern', image_size=30, in_channels=1, num_classes=10)
  result = run_cli('cnns.summary', '--config=configs/pattern.py', '--config.image_size=30')
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert 'pool2: (N - F + 2P)/stride + 1 = (15 - 2 + 2*0)/2 + 1 = 7.50 does not fit' in (
      result.stderr.strip().splitlines()[-1])


def test_alphago_config_trains_on_synthetic_positions(tmp_path):
  """configs/alphago_policy.py as a user runs it: synthetic 19x19x48 positions, 361 classes."""
  # Two steps of its batch of 16 (a position costs 1.4 G multiply-accumulates: cnns.summary).
  result = run_cli('train.py', '--config=configs/alphago_policy.py', '--config.num_epochs=1',
                   '--config.synthetic_train_examples=32', '--config.synthetic_eval_examples=20',
                   '--config.log_every_steps=1', f'--workdir={tmp_path}')
  assert result.returncode == 0, result.stderr
  records = read_metrics(str(tmp_path))
  assert [r['step'] for r in records if 'train/loss' in r] == [1, 2]
  assert all(np.isfinite(r['train/loss']) for r in records if 'train/loss' in r)
  assert records[-1]['eval/num_examples'] == 20  # Two batches, the second padded.
  assert 'alphago_policy on synthetic: 3,882,793 parameters' in result.stderr + result.stdout

r"""The seed's layer table for any config: output volume, parameters, MACs, connections (LeNet-5's
paper's count: MACs plus bias additions) and memory per layer.

  python -m cnns.summary --config=configs/vgg16.py [--batch_size=128] [--json]

One row per layer as the paper's table names it; then totals: trainable parameters (BatchNorm scale
and bias included, running statistics not: torchvision's convention) and their float32 memory,
multiply-accumulates per image, and activations per image in the seed's convention (the input plus
one output volume per listed layer, a conv and its ReLU together: VGG-16 gives about 15.2M, about
60 MB forward), with the seed's estimate for a batch (parameters + batch x forward activations,
"550 + 60 x 128 = 8.2 GB") and with backward (activations about 3x forward). The model is evaluated
abstractly (`jax.eval_shape`), so no weights are allocated: VGG-19 summarises in seconds.
"""

import json
import math
import sys

import jax
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

import cnns
from cnns import layers

FLAGS = flags.FLAGS

IMAGENET_CLASSES, RGB = 1000, 3
BYTES = 4  # float32.


def _num_params(module: nnx.Module) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(module, nnx.Param))))


def summarize(model_name: str, *, image_size: int, in_channels: int, num_classes: int,
              **model_kwargs) -> dict:
  """Per-layer rows and totals of `model_name` on one image, by abstract evaluation.

  Totals are the inference network's; a model's `auxiliary_heads` (training-only classifiers) are
  counted apart, under 'auxiliary_params'.
  """
  with layers.recording() as recorder:
    abstract, _ = cnns.trace(model_name, num_classes=num_classes, in_channels=in_channels,
                             image_size=image_size, **model_kwargs)
  auxiliary = {name: _num_params(getattr(abstract, name))
               for name in getattr(abstract, 'auxiliary_heads', ())}
  total_params = _num_params(abstract) - sum(auxiliary.values())
  recorded = sum(row.params for row in recorder.rows)
  if recorded != total_params:  # A layer outside the accounting would make the table lie.
    raise AssertionError(f'{model_name}: rows hold {recorded} parameters, model {total_params}')
  activations = image_size * image_size * in_channels + sum(
      math.prod(row.output_shape) for row in recorder.rows)
  return {
      'model': model_name,
      'input_shape': [image_size, image_size, in_channels],
      'layers': [{'name': r.name, 'output_shape': list(r.output_shape), 'params': r.params,
                  'macs': r.macs, 'connections': r.connections,
                  'activations': math.prod(r.output_shape)}
                 for r in recorder.rows],
      'total_params': total_params,
      'auxiliary_params': auxiliary,
      'params_mb': total_params * BYTES / 1e6,
      'total_macs': sum(row.macs for row in recorder.rows),
      'total_connections': sum(row.connections for row in recorder.rows),
      'total_activations': activations,
      'activations_mb_per_image': activations * BYTES / 1e6,
  }


def batch_memory_gb(summary: dict, batch_size: int, passes: float) -> float:
  return (summary['params_mb'] + passes * batch_size * summary['activations_mb_per_image']) / 1e3


def format_table(summary: dict, batch_size: int) -> str:
  shape = lambda s: 'x'.join(map(str, s))
  lines = [f'{"layer":<14}{"output":>16}{"params":>14}{"MACs":>16}{"connections":>16}'
           f'{"activations":>14}',
           f'{"input":<14}{shape(summary["input_shape"]):>16}{0:>14,}{0:>16,}{0:>16,}'
           f'{math.prod(summary["input_shape"]):>14,}']
  for row in summary['layers']:
    lines.append(f'{row["name"]:<14}{shape(row["output_shape"]):>16}{row["params"]:>14,}'
                 f'{row["macs"]:>16,}{row["connections"]:>16,}{row["activations"]:>14,}')
  s = summary
  lines += [
      '',
      f'parameters:   {s["total_params"]:,} ({s["total_params"] / 1e6:.1f}M, '
      f'{s["params_mb"]:.0f} MB at float32)',
      *[f'  + {name}: {n:,} (training only)' for name, n in s['auxiliary_params'].items()],
      f'MACs:         {s["total_macs"]:,} per image ({s["total_macs"] / 1e9:.2f} G multiply-adds)',
      f'connections:  {s["total_connections"]:,} per image',
      f'activations:  {s["total_activations"]:,} per image '
      f'({s["activations_mb_per_image"]:.1f} MB forward)',
      f'batch of {batch_size}: {batch_memory_gb(s, batch_size, 1):.1f} GB forward (seed\'s estimate),'
      f' {batch_memory_gb(s, batch_size, 3):.1f} GB with backward (about 3x activations)',
  ]
  return '\n'.join(lines)


def main(argv):
  del argv
  config = FLAGS.config
  try:
    summary = summarize(
        config.model, image_size=config.image_size,
        in_channels=config.in_channels if config.in_channels > 0 else RGB,
        num_classes=config.num_classes if config.num_classes > 0 else IMAGENET_CLASSES,
        **config.model_kwargs)
  except (cnns.GeometryError, cnns.UnknownModelError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  if FLAGS.json:
    print(json.dumps(summary))
  else:
    print(format_table(summary, FLAGS.batch_size))


if __name__ == '__main__':
  # Config-file and flag mistakes reported as train.py reports them, in one line. (Only this entry
  # point imports from app/; the library above does not.)
  from app.cli import parse_flags  # pylint: disable=g-import-not-at-top
  # Defined here, not on import, so that benchmarks can import `summarize` with flags of their own.
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/<model>.py).',
                                  lock_config=True)
  flags.DEFINE_integer('batch_size', 128, 'Images per batch for the memory estimate.',
                       lower_bound=1)
  flags.DEFINE_bool('json', False, 'Print one JSON object instead of the table.')
  flags.mark_flags_as_required(['config'])
  app.run(main, flags_parser=parse_flags)

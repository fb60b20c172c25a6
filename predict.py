r"""Top-5 classes of images, with class names and probabilities, from a trained or imported run.

  python predict.py --config=configs/resnet50.py --workdir=runs/resnet50 cat.jpg dog.png
  python predict.py --config=configs/resnet50.py --workdir=runs/resnet50 --json *.jpg

Restores the latest checkpoint in --workdir (with the model options and input convention recorded
in it), reads each image with Pillow, prepares it as the evaluation split is prepared (ImageNet: the centre crop of
`eval_resize`, antialiased with `--config.eval_antialias=true`) and prints its five most probable
classes. --json prints one list instead: per image {"image", "top5": [{"index", "name",
"probability"}]}. A file that is not an image is one line on stderr; the others are still
predicted.

Exit status: 0 every image predicted; 1 some files were not images; 2 a user or environment error.
"""

import json
import sys

import jax
import numpy as np
from absl import app, flags, logging
from flax import nnx

import cnns
import input_pipeline
from training import cli, steps, weights
from training import mesh as mesh_lib
from training.loop import DTYPES

cli.define_flags()
flags.DEFINE_bool('json', False, 'Print a JSON list instead of a table.')
TOP_K = 5


def load_model(config, workdir: str):
  """(config with the checkpoint's fields, a jitted images -> probabilities, checkpoint step)."""
  config = weights.checkpoint_config(config, [workdir],
                                     note=lambda line: print(line, file=sys.stderr))
  recorded = weights.recorded_config(workdir)
  config.num_classes, config.in_channels = recorded['num_classes'], recorded['in_channels']
  dtype = DTYPES[config.dtype]
  abstract, _ = cnns.trace(recorded['model'], dtype=dtype, **weights.architecture(recorded))
  replicated = mesh_lib.replicated_sharding(mesh_lib.create_mesh())
  graphdef, abstract_state = weights.abstract_train_state(config, abstract, replicated)
  state, step = weights.restore(workdir, abstract_state)
  mean, std = input_pipeline.normalization(config, input_pipeline.dataset_spec(config))

  @jax.jit
  def probabilities(params, batch_stats, images):
    model = nnx.merge(graphdef, params, batch_stats)
    model.eval()
    logits = model(steps.normalize(images, mean, std, dtype))
    return jax.nn.softmax(steps.at_least_float32(logits))

  return config, lambda images: np.asarray(
      probabilities(state.params, state.batch_stats, images)), step


def predict(config, workdir: str, images: list[str], as_json: bool) -> int:
  config, probabilities, step = load_model(config, workdir)
  names = input_pipeline.class_names(config)
  inputs, failed = {}, 0
  for path in images:
    try:
      inputs[path] = input_pipeline.prediction_image(
          config, input_pipeline.read_image(path, config.in_channels))
    except OSError as e:
      failed += 1
      print(f'error: {path}: {e.strerror or e}', file=sys.stderr)
  results = []
  if inputs:
    for path, row in zip(inputs, probabilities(np.stack(list(inputs.values())))):
      top = np.argsort(-row, kind='stable')[:TOP_K]
      results.append({'image': path, 'top5': [
          {'index': int(i), 'name': names[i] if i < len(names) else f'class {i}',
           'probability': float(row[i])} for i in top]})
  if as_json:
    print(json.dumps(results, indent=2))
  else:
    print(f'{config.model}, checkpoint step {step} in {workdir}')
    for result in results:
      print(result['image'])
      for entry in result['top5']:
        print(f'  {entry["probability"]:8.2%}  {entry["name"]} ({entry["index"]})')
  return 1 if failed else 0


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('name one or more image files after the flags')
  logging.set_verbosity(logging.WARNING)
  cli.run_reporting_errors(cli.set_up_jax)
  sys.exit(cli.run_reporting_errors(predict, cli.FLAGS.config, cli.FLAGS.workdir, argv[1:],
                                    cli.FLAGS.json))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)

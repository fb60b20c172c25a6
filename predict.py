r"""Top-5 classes of images, with class names and probabilities, from a trained or imported run.

  python predict.py --config=configs/resnet50.py --workdir=runs/resnet50 cat.jpg dog.png
  python predict.py --config=configs/resnet50.py --workdir=runs/resnet50 --json *.jpg

Restores the latest checkpoint in --workdir (with the model options, input convention, dataset
and image size recorded in it), reads each image with Pillow, prepares it as the evaluation split
is prepared (ImageNet: the centre crop of `eval_resize`, antialiased with
`--config.eval_antialias=true`) and prints its five most probable classes, `eval_batch_size`
images at a time. --json prints one list instead: per image {"image", "top5": [{"index", "name",
"probability"}]}. A file that is not an image is one line on stderr; the others are still
predicted.

Exit status: 0 every image predicted; 1 some files were not images; 2 a user or environment error.
"""

import itertools
import json
import sys

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from flax import nnx

import cnns
import input_pipeline
from training import cli, steps, weights
from training import mesh as mesh_lib
from training.errors import ConfigError
from training.loop import DTYPES

cli.define_flags()
flags.DEFINE_bool('json', False, 'Print a JSON list instead of a table.')
TOP_K = 5


def load_model(config, workdir: str):
  """(config with the checkpoint's fields, class names, a jitted images -> probabilities,
  checkpoint step).

  What the model was built for comes from its checkpoint: model options, input convention,
  dataset (its statistics and class names), image size, classes, channels and optimizer state."""
  note = lambda line: print(line, file=sys.stderr)
  config = weights.checkpoint_config(config, [workdir], note=note)
  saved = weights.record(workdir)
  recorded, dataset = saved.get('config'), saved.get('dataset')
  if recorded is None or dataset is None:
    raise ConfigError(f'the newest checkpoint in {workdir} predates the dataset record that '
                      'predict.py reads: resume the run until it saves once more')
  for field in ('dataset', 'image_size', 'num_classes', 'in_channels'):
    if config[field] != recorded[field]:
      if field in ('dataset', 'image_size'):
        note(f'note: using the checkpoint\'s {field}={recorded[field]} (the config says '
             f'{config[field]})')
      config[field] = recorded[field]
  dtype = DTYPES[config.dtype]
  abstract, _ = cnns.trace(recorded['model'], dtype=dtype, **weights.architecture(recorded))
  replicated = mesh_lib.replicated_sharding(mesh_lib.create_mesh())
  graphdef, abstract_state = weights.abstract_train_state(ml_collections.ConfigDict(recorded),
                                                          abstract, replicated)
  state, step = weights.restore(workdir, abstract_state)
  spec = input_pipeline.DatasetSpec(recorded['num_classes'], (0, 0, recorded['in_channels']),
                                    '', '', tuple(dataset['mean']), tuple(dataset['std']))
  mean, std = input_pipeline.normalization(config, spec)

  @jax.jit
  def probabilities(params, batch_stats, images):
    model = nnx.merge(graphdef, params, batch_stats)
    model.eval()
    logits = model(steps.normalize(images, mean, std, dtype))
    return jax.nn.softmax(steps.at_least_float32(logits))

  return config, dataset['class_names'], lambda images: np.asarray(
      probabilities(state.params, state.batch_stats, images)), step


def prepared(config, paths: list[str]):
  """(path, model input) of each image file; one stderr line for each that is not an image."""
  for path in paths:
    try:
      yield path, input_pipeline.prediction_image(
          config, input_pipeline.read_image(path, config.in_channels))
    except OSError as e:
      print(f'error: {path}: {e.strerror or e}', file=sys.stderr)


def predict(config, workdir: str, paths: list[str], as_json: bool) -> int:
  """Predicts in batches of `eval_batch_size` (the last one padded: one compiled shape)."""
  config, names, probabilities, step = load_model(config, workdir)
  batch = min(len(paths), config.eval_batch_size if config.eval_batch_size > 0
              else config.batch_size)
  images = prepared(config, paths)
  results = []
  if not as_json:
    print(f'{config.model}, checkpoint step {step} in {workdir}')
  while chunk := list(itertools.islice(images, batch)):
    inputs = np.zeros((batch, *chunk[0][1].shape), np.uint8)
    inputs[:len(chunk)] = [image for _, image in chunk]
    for (path, _), row in zip(chunk, probabilities(inputs)):
      top = np.argsort(-row, kind='stable')[:TOP_K]
      results.append({'image': path, 'top5': [
          {'index': int(i), 'name': names[i] if i < len(names) else f'class {i}',
           'probability': float(row[i])} for i in top]})
      if not as_json:
        print(path)
        for entry in results[-1]['top5']:
          print(f'  {entry["probability"]:8.2%}  {entry["name"]} ({entry["index"]})')
  if as_json:
    print(json.dumps(results, indent=2))
  return 0 if len(results) == len(paths) else 1


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('name one or more image files after the flags')
  logging.set_verbosity(logging.WARNING)
  cli.run_reporting_errors(cli.set_up_jax)
  sys.exit(cli.run_reporting_errors(predict, cli.FLAGS.config, cli.FLAGS.workdir, argv[1:],
                                    cli.FLAGS.json))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)

r"""Top-5 classes of images, with class names and probabilities, from a trained or imported run.

  python predict.py --config=configs/resnet50.py --workdir=runs/resnet50 cat.jpg dog.png
  python predict.py --config=configs/resnet50.py --workdir=runs/resnet50 --json *.jpg

Restores the latest checkpoint in --workdir (with the model options, input convention, dataset
and image size recorded in it), reads each image with Pillow, prepares it as the evaluation split
is prepared (ImageNet: the centre crop of `eval_resize`, antialiased with
`--config.eval_antialias=true`, torchvision's own pixels with `--config.eval_crop=torchvision`)
and prints its five most probable classes, `eval_batch_size` images at a time. --json prints one
list instead: per image {"image", "top5": [{"index", "name", "probability"}]}. A file that is not
an image is one line on stderr; the others are still predicted.

Exit status: 0 every image predicted; 1 some files were not images; 2 a user or environment error.
"""

import itertools
import json
import sys

import jax
import numpy as np
from absl import app, flags

import input_pipeline
from app import cli, inference

cli.define_flags()
flags.DEFINE_bool('json', False, 'Print a JSON list instead of a table.')
TOP_K = 5


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
  checkpoint = inference.load(config, workdir)
  config, names = checkpoint.config, checkpoint.class_names
  probabilities = jax.jit(lambda params, images: jax.nn.softmax(checkpoint.logits(params, images)))
  batch = min(len(paths), config.eval_batch_size if config.eval_batch_size > 0
              else config.batch_size)
  images = prepared(config, paths)
  results = []
  if not as_json:
    print(f'{config.model}, checkpoint step {checkpoint.step} in {workdir}')
  while chunk := list(itertools.islice(images, batch)):
    inputs = np.zeros((batch, *chunk[0][1].shape), np.uint8)
    inputs[:len(chunk)] = [image for _, image in chunk]
    for (path, _), row in zip(chunk, np.asarray(probabilities(checkpoint.params, inputs))):
      top = np.argsort(-row, kind='stable')[:TOP_K]
      results.append({'image': path, 'top5': [
          {'index': int(i), 'name': names[i],
           'probability': float(row[i])} for i in top]})
      if not as_json:
        print(path)
        for entry in results[-1]['top5']:
          print(f'  {entry["probability"]:8.2%}  {entry["name"]} ({entry["index"]})')
  if as_json:
    print(json.dumps(results, indent=2))
  return 0 if len(results) == len(paths) else 1


def main(argv):
  cli.start(argv, arguments='one or more image files')
  sys.exit(cli.run_reporting_errors(predict, cli.FLAGS.config, cli.FLAGS.workdir, argv[1:],
                                    cli.FLAGS.json))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)

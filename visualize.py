r"""Pictures of what a trained (or imported) network learnt, for one image, and a page showing them.

  python visualize.py --config=configs/lenet5.py --workdir=runs/lenet5 --out=pictures --example=7
  python visualize.py --config=configs/resnet50.py --workdir=runs/resnet50_tv --out=pictures \
      --image=cat.jpg --layers=conv1,conv2_3,conv5_3

Writes PNG files into --out and prints their paths, then `index.html` showing them with captions:
the filters of each layer that is one convolution (in colour for RGB input, as AlexNet's Figure
3; deeper ones averaged over their input channels; a ResNet block or an Inception module has
none), each layer's activation maps (one tile per channel, at most --max_tiles, evenly chosen and
listed), the image with its top-5 classes, an occlusion map (Zeiler & Fergus, Figure 7: how the
class probability changes with a square of the mean pixel at each position) and a gradient
saliency map (Simonyan et al., 2014) for the true class (--example) or the predicted one
(--image). Layer names are the layer table's (`python -m cnns.summary`); by default every layer
with spatial output, at most eight, evenly chosen. --example=N takes the N-th image of the
config's evaluation split.

Exit status: 0 written; 2 a user or environment error (one line).
"""

import html
import os
import sys

import jax
import matplotlib
import numpy as np
from absl import app, flags

matplotlib.use('Agg')  # Files only: no display is needed.
# --example reads the evaluation split only up to its image; TensorFlow (imported later) would warn
# that the split's in-memory cache stays incomplete, which is intended here.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

import input_pipeline  # pylint: disable=wrong-import-position
from cnns import layers, visualization  # pylint: disable=wrong-import-position
from app import cli, inference, weights  # pylint: disable=wrong-import-position
from training.errors import ConfigError  # pylint: disable=wrong-import-position

cli.define_flags()
flags.DEFINE_string('out', None, 'Folder for the PNG files and index.html.')
flags.DEFINE_string('image', None, 'An image file to look at.')
flags.DEFINE_integer('example', None, 'The N-th image of the evaluation split (default: 0).')
flags.DEFINE_list('layers', [], 'Layer names (cnns.summary\'s); default: up to 8 spatial layers.')
flags.DEFINE_integer('max_tiles', 64, 'At most this many channels per activation grid.')
DEFAULT_LAYERS = 8


def example_image(config, index: int) -> tuple[np.ndarray, int]:
  """The `index`-th image of the evaluation split, as the model sees it, and its label."""
  source = input_pipeline.create_source(config, process_index=0, process_count=1)
  if not 0 <= index < source.num_eval_examples:
    raise ConfigError(f'--example={index}: the evaluation split has {source.num_eval_examples} '
                      'images')
  batch = 64
  steps = input_pipeline.num_eval_steps(source.num_eval_examples, batch, 1)
  for i, batch_ in enumerate(source.eval_batches(batch, steps)):
    if i == index // batch:
      return batch_['image'][index % batch], int(batch_['label'][index % batch])
  raise AssertionError('unreachable: the index was checked')


def file_image(config, path: str) -> np.ndarray:
  try:
    return input_pipeline.prediction_image(config, input_pipeline.read_image(
        path, config.in_channels))
  except OSError as e:
    raise ConfigError(f'--image={path}: {e.strerror or e}') from e


def kernels(checkpoint: inference.Checkpoint) -> dict[str, np.ndarray]:
  """Each convolution's kernel by its paper name."""
  found = {}
  for name, parts in weights.by_layer(checkpoint.model(), checkpoint.params, {}).items():
    for (_, _, within), leaf in parts.items():
      if within[-1] == 'kernel' and leaf.ndim == 4:
        found[name] = np.asarray(leaf)
  return found


def save(figure, path: str) -> str:
  figure.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(figure)
  return path


def picture(path: str, array: np.ndarray, title: str, *, cmap=None, width: float = 6) -> str:
  height = width * array.shape[0] / array.shape[1]
  figure, axes = plt.subplots(figsize=(width, max(height, 1.5)))
  axes.imshow(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array,
              cmap=cmap or ('gray' if array.ndim == 2 or array.shape[-1] == 1 else None),
              interpolation='nearest')
  axes.set_title(title, fontsize=9)
  axes.axis('off')
  return save(figure, path)


def occlusion_picture(path: str, change: np.ndarray, title: str) -> str:
  """The change of probability on a diverging scale centred at 0, with its colour bar."""
  limit = max(float(np.abs(change).max()), 1e-6)
  figure, axes = plt.subplots(figsize=(6, 5))
  shown = axes.imshow(change, cmap='RdBu', vmin=-limit, vmax=limit, interpolation='nearest')
  figure.colorbar(shown, ax=axes)
  axes.set_title(title, fontsize=9)
  axes.axis('off')
  return save(figure, path)


def visualize(config, workdir: str, out: str) -> list[tuple[str, str]]:
  """Writes the pictures; returns (file, caption) pairs in page order."""
  checkpoint = inference.load(config, workdir)
  config = checkpoint.config
  flags_ = cli.FLAGS
  if flags_.image and flags_.example is not None:
    raise ConfigError('give --image or --example, not both')
  if flags_.max_tiles < 1:
    raise ConfigError(f'--max_tiles={flags_.max_tiles} must be at least 1')
  if config.in_channels not in (1, 3):
    raise ConfigError(f'{config.model} sees {config.in_channels} input planes, not an image: '
                      'visualize.py draws networks of grey or RGB images')
  if flags_.image:
    image, label, source = file_image(config, flags_.image), None, os.path.basename(flags_.image)
  else:
    index = flags_.example or 0
    image, label = example_image(config, index)
    source = f'evaluation image {index} of {config.dataset}'
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise ConfigError(f'--out={out}: {e.strerror}') from e

  order = []  # The layers' names in the order they run (a returned dict would be sorted).

  @jax.jit
  def forward(params, images):
    with layers.recording() as recorder:
      logits = checkpoint.logits(params, images)
    order[:] = recorder.outputs
    return jax.nn.softmax(logits), list(recorder.outputs.values())

  probabilities, values = forward(checkpoint.params, image[None])
  outputs = dict(zip(order, values))
  probabilities = np.asarray(probabilities[0])
  spatial = [name for name, x in outputs.items() if x.ndim == 4]
  chosen = list(dict.fromkeys(flags_.layers)) or [
      spatial[i] for i in visualization.evenly_chosen(len(spatial), DEFAULT_LAYERS)]
  convolutions = kernels(checkpoint)
  unknown = [name for name in chosen if name not in spatial and name not in convolutions]
  if unknown:
    raise ConfigError(f'--layers: {", ".join(unknown)} not a layer of {config.model} with '
                      f'activation maps or filters; those are: {", ".join(spatial)}')
  names, written = checkpoint.class_names, []
  top = np.argsort(-probabilities, kind='stable')[:5]
  target = label if label is not None else int(top[0])
  text = '\n'.join(f'{probabilities[i]:.1%}  {names[i]}' for i in top)
  truth = f' (true class: {names[label]})' if label is not None else ''
  written.append((picture(os.path.join(out, 'prediction.png'), image / 255.0,
                          f'{source}{truth}\n{text}'), f'{source}: top-5 classes{truth}'))

  for name in chosen:
    if name in convolutions:
      kernel = convolutions[name]
      colour = 'in colour' if kernel.shape[2] == 3 else 'averaged over input channels' if (
          kernel.shape[2] > 1) else 'grey'
      written.append((picture(os.path.join(out, f'filters_{name}.png'),
                              visualization.filter_grid(kernel),
                              f'{name}: {kernel.shape[3]} filters {kernel.shape[0]}x'
                              f'{kernel.shape[1]}x{kernel.shape[2]}, {colour}'),
                      f'{name}: its {kernel.shape[3]} filters, {colour}'))
    maps = np.asarray(outputs[name][0], np.float32)
    if maps.ndim != 3:
      continue
    channels = visualization.evenly_chosen(maps.shape[-1], flags_.max_tiles)
    shown = ('all channels' if len(channels) == maps.shape[-1] else
             f'channels {", ".join(map(str, channels))}')
    volume = 'x'.join(map(str, maps.shape))
    written.append((picture(os.path.join(out, f'activations_{name}.png'),
                            visualization.tile_grid(maps, channels),
                            f'{name}: output {volume} ({shown})'),
                    f'{name}: activation maps, output {volume} ({shown})'))

  size = max(2, config.image_size // 4)
  mean = np.asarray(checkpoint.mean, np.float32)
  change = visualization.occlusion_map(
      jax.jit(lambda x: jax.nn.softmax(checkpoint.logits(checkpoint.params, x))), image, target,
      size=size, stride=max(1, size // 4), fill=mean) - probabilities[target]
  written.append((occlusion_picture(
      os.path.join(out, 'occlusion.png'), change,
      f'change of P({names[target]}) = {probabilities[target]:.1%} with a {size}x{size} square '
      'of the mean pixel at each position'),
      f'occlusion: how hiding each part changes the probability of {names[target]} (Zeiler & '
      'Fergus, Figure 7; red: lower, blue: higher)'))
  gradient = visualization.saliency_gradient(
      lambda x: checkpoint.logits(checkpoint.params, x), image, target)
  written.append((picture(os.path.join(out, 'saliency.png'), visualization.saliency_map(gradient),
                          f'saliency of {names[target]}: max |d score / d pixel|', cmap='hot'),
                  f'saliency: gradient of the {names[target]} score (Simonyan et al., 2014)'))
  write_page(out, config, workdir, checkpoint.step, written)
  return written


def write_page(out: str, config, workdir: str, step: int, written) -> None:
  figures = '\n'.join(
      f'<figure><img src="{html.escape(os.path.basename(path))}" alt="{html.escape(caption)}">'
      f'<figcaption>{html.escape(caption)}</figcaption></figure>' for path, caption in written)
  with open(os.path.join(out, 'index.html'), 'w', encoding='utf-8') as f:
    f.write('<!doctype html><html><head><meta charset="utf-8">'
            f'<title>{html.escape(config.model)}</title>'
            '<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;'
            'vertical-align:top;margin:1em}img{max-width:600px}</style></head><body>'
            f'<h1>{html.escape(config.model)}, checkpoint step {step} of '
            f'{html.escape(workdir)}</h1>\n{figures}\n</body></html>\n')


def main(argv):
  cli.start(argv, required=('out',))
  written = cli.run_reporting_errors(visualize, cli.FLAGS.config, cli.FLAGS.workdir,
                                     cli.FLAGS.out)
  for path, _ in written:
    print(path)
  print(os.path.join(cli.FLAGS.out, 'index.html'))
  sys.exit(0)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)

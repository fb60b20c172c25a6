"""Input pipelines: host-local numpy batches from TFDS (tf.data) or from a synthetic source.

A data source is one file that registers the datasets it reads (`base.register`) and checks the
config fields it reads; `create_source` looks `config.dataset` up. SOURCE_FILES says which file
registers which names, so that only the file asked for is imported: TensorFlow is imported only
when a dataset that needs it is asked for, and `synthetic` runs where it is absent.

The tf.data sources are one class built from parts (sharded.py): a records part (TFDS splits,
tfds_source.py; an image folder's files, image_folder.py) and an examples part (photographs.py's
`Photographs` for imagenet2012 and image_folder; decoded small images as they are).
"""

import dataclasses
import importlib
import os
import sys
import tempfile

import numpy as np

from input_pipeline import base
from input_pipeline.base import (DENSE_MULTIPLE, Batch, DataError, DatasetSpec, EvalView, Source,
                                 eval_resize_size, host_memory, in_bytes, num_eval_steps)


@dataclasses.dataclass(frozen=True)
class SourceFile:
  """What is known of a dataset's source without importing its file (which may import
  TensorFlow): the module that registers it, whether that needs TensorFlow, and the config fields
  that only this source reads, which a run on any other dataset leaves out of the config it
  records (`unused_config_fields`). Fields several sources read (the photographs' crops, read by
  imagenet2012 and image_folder) are not declared: the records of runs would change."""
  module: str
  uses_tensorflow: bool
  config_fields: tuple[str, ...] = ()


# Dataset name -> its source's file.
SOURCE_FILES = {
    'synthetic': SourceFile('input_pipeline.synthetic', False,
                            ('synthetic_train_examples', 'synthetic_eval_examples')),
    'mnist': SourceFile('input_pipeline.tfds_source', True),
    'fashion_mnist': SourceFile('input_pipeline.tfds_source', True),
    'cifar10': SourceFile('input_pipeline.tfds_source', True),
    'imagenet2012': SourceFile('input_pipeline.imagenet', True),
    'image_folder': SourceFile('input_pipeline.image_folder', True),
}

# `config.input_convention`: how RGB pixels (0-255) are standardised on the device, as per-channel
# (mean, std). 'dataset' uses the dataset's own statistics; the others are the conventions of
# published models (cnns/published/): Keras' "caffe" mode (VGG, ResNet: mean subtraction, no
# scaling; their BGR channel order is folded into the first convolution at import), Keras' "tf"
# mode (Inception-ResNet-v2: [-1, 1]) and torchvision's ImageNet mean and standard deviation;
# 'lecun98' is the 1998 LeNet-5's grey levels: background (0) at -0.1, ink (255) at 1.175.
INPUT_CONVENTIONS = {
    'caffe': ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0)),
    'tf': ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    'torch': ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    'lecun98': ((20.0,), (200.0,)),
}


def available_datasets() -> list[str]:
  return sorted(SOURCE_FILES)


def _source_file(name: str) -> SourceFile:
  if name not in SOURCE_FILES:
    raise DataError(f'unknown dataset {name!r}; known datasets: {", ".join(available_datasets())}')
  return SOURCE_FILES[name]


def source_class(name: str) -> type[Source]:
  """The registered source of dataset `name` (its module imported on first use)."""
  file = _source_file(name)
  if file.uses_tensorflow:
    import_tensorflow_quietly()
  importlib.import_module(file.module)
  if base.registered(name) is None:
    raise AssertionError(f'{file.module} registers no source named {name!r} (SOURCE_FILES)')
  return base.registered(name)


def unused_config_fields(config) -> set[str]:
  """The config fields that only the sources of other datasets than `config.dataset` read: what
  the config a run records leaves out, so that they neither show in it nor refuse a resume.
  Imports nothing (SOURCE_FILES)."""
  own = set(_source_file(config.dataset).config_fields)
  return {field for name, file in SOURCE_FILES.items() if name != config.dataset
          for field in file.config_fields} - own


def num_data_shards(config, process_count: int) -> int:
  """`config.data_shards`, or one shard per process when it is -1."""
  return config.data_shards if config.data_shards > 0 else process_count


def normalization(config, spec: DatasetSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) per channel that `config.input_convention` gives images of `spec`."""
  if config.input_convention == 'dataset':
    return spec.mean, spec.std
  mean, std = INPUT_CONVENTIONS[config.input_convention]
  if spec.image_shape[-1] != len(mean):
    kind = 'RGB' if len(mean) == 3 else 'grey-level'
    raise DataError(f'input_convention={config.input_convention!r} is for {kind} images; '
                    f'{config.dataset} has {spec.image_shape[-1]} channel(s)')
  return mean, std


def read_image(path: str, channels: int):
  """The pixels of any image file Pillow reads (JPEG, PNG, GIF, BMP, WebP, TIFF, ...), uint8
  [H, W, channels]; 16-bit and float grey levels are scaled to 8 bits (Pillow's own conversion
  clips them). A file that is not a whole image raises OSError."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(path) as image:
      image.load()
      if image.mode.startswith('I') or image.mode == 'F':  # 16- or 32-bit grey levels.
        levels = np.asarray(image, np.float64)
        image = Image.fromarray(np.round(
            levels / (257.0 if image.mode.startswith('I') else 1.0)).clip(0, 255).astype(np.uint8))
      pixels = np.asarray(image.convert('RGB' if channels == 3 else 'L'))
  except OSError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (Pillow's decoders raise many types)
    raise OSError(f'not a readable image ({type(e).__name__}: {e})') from e
  return pixels if pixels.ndim == 3 else pixels[..., None]


def prediction_image(config, image):
  """A decoded image (uint8 [H, W, C], any size) as the model's input, prepared as the evaluation
  split is: for photographs (ImageNet, image folders), the centre crop (`eval_resize`,
  `eval_antialias`, `eval_crop`); for the other datasets, centred padding up to `image_size` (a
  larger image is first resized to shorter side `image_size` and centre-cropped)."""
  import_tensorflow_quietly()
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from input_pipeline import preprocessing  # pylint: disable=import-outside-toplevel
  size = config.image_size
  image = tf.constant(image, tf.uint8)
  if source_class(config.dataset).PHOTOGRAPHS:
    resize = base.eval_resize_size(size, config.eval_resize)
    return preprocessing.center_crop_image(image, size, resize, config.eval_antialias,
                                           config.eval_crop).numpy()
  if min(image.shape[:2]) > size:
    image = preprocessing.center_crop_image(image, size, size)
  return tf.image.resize_with_crop_or_pad(image, size, size).numpy()


def import_tensorflow_quietly() -> None:
  """Imports TensorFlow with its C++ start-up notices kept off the console.

  TensorFlow 2.21 logs them through absl before logging is set up ("All log messages before
  absl::InitializeLog() ...", oneDNN's "custom operations are on"), past TF_CPP_MIN_LOG_LEVEL, so
  the process's stderr goes to a temporary file for the import alone; if the import fails, what
  TensorFlow wrote is replayed before the error. Without a usable stderr, nothing is redirected.
  """
  if 'tensorflow' in sys.modules:
    return
  try:
    saved = os.dup(2)
  except OSError:
    saved = None
  with tempfile.TemporaryFile() as captured:
    if saved is not None:
      os.dup2(captured.fileno(), 2)
    try:
      import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except BaseException:
      if saved is not None:
        os.dup2(saved, 2)
        captured.seek(0)
        os.write(2, captured.read())
      raise
    finally:
      if saved is not None:
        os.dup2(saved, 2)
        os.close(saved)


def create_source(config, *, process_index: int, process_count: int) -> Source:
  """The source that `config.dataset` names, reading this process's slice of each split."""
  num_shards = num_data_shards(config, process_count)
  if config.batch_size % num_shards:
    raise DataError(f'batch_size={config.batch_size} must be a multiple of '
                    f'data_shards={num_shards}')
  source = source_class(config.dataset).from_config(
      config.dataset, config, seed=config.seed, process_index=process_index,
      process_count=process_count, num_shards=num_shards)
  if source.num_eval_examples < process_count:  # A process with nothing would wait forever.
    raise DataError(f'{config.dataset} has {source.num_eval_examples} evaluation images, fewer '
                    f'than the {process_count} processes')
  return source


__all__ = ['DENSE_MULTIPLE', 'Batch', 'DataError', 'DatasetSpec', 'EvalView', 'INPUT_CONVENTIONS',
           'Source', 'available_datasets', 'create_source', 'eval_resize_size', 'host_memory',
           'in_bytes', 'normalization', 'num_data_shards', 'num_eval_steps', 'prediction_image',
           'read_image', 'source_class', 'unused_config_fields']

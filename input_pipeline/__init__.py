"""Input pipelines: host-local numpy batches from TFDS (tf.data) or from a synthetic source.

TensorFlow is imported only when a TFDS dataset is asked for, so `synthetic` runs where it is absent.
"""

import os
import sys
import tempfile

import numpy as np

from input_pipeline.base import Batch, DataError, DatasetSpec, Source, num_eval_steps

TFDS_DATASETS = ('cifar10', 'fashion_mnist', 'mnist')
IMAGENET = 'imagenet2012'

# `config.input_convention`: how RGB pixels (0-255) are standardised on the device, as per-channel
# (mean, std). 'dataset' uses the dataset's own statistics; the others are the conventions of
# published models (cnns/published/): Keras' "caffe" mode (VGG, ResNet: mean subtraction, no
# scaling; their BGR channel order is folded into the first convolution at import), Keras' "tf"
# mode (Inception-ResNet-v2: [-1, 1]) and torchvision's ImageNet mean and standard deviation.
INPUT_CONVENTIONS = {
    'caffe': ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0)),
    'tf': ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    'torch': ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}


def available_datasets() -> list[str]:
  return sorted([*TFDS_DATASETS, IMAGENET, 'synthetic'])


def num_data_shards(config, process_count: int) -> int:
  """`config.data_shards`, or one shard per process when it is -1."""
  return config.data_shards if config.data_shards > 0 else process_count


def normalization(config, spec: DatasetSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) per channel that `config.input_convention` gives images of `spec`."""
  if config.input_convention == 'dataset':
    return spec.mean, spec.std
  if spec.image_shape[-1] != 3:
    raise DataError(f'input_convention={config.input_convention!r} is for RGB images; '
                    f'{config.dataset} has {spec.image_shape[-1]} channel(s)')
  return INPUT_CONVENTIONS[config.input_convention]


def dataset_spec(config) -> DatasetSpec:
  """The facts of `config.dataset` that need no data (predict.py's normalisation)."""
  if config.dataset == 'synthetic':
    from input_pipeline import synthetic  # pylint: disable=import-outside-toplevel
    return synthetic.spec(config.image_size, config.in_channels, config.num_classes)
  import_tensorflow_quietly()
  if config.dataset == IMAGENET:
    from input_pipeline import imagenet  # pylint: disable=import-outside-toplevel
    return imagenet.SPEC
  if config.dataset in TFDS_DATASETS:
    from input_pipeline import tfds_source  # pylint: disable=import-outside-toplevel
    return tfds_source.SPECS[config.dataset]
  raise DataError(f'unknown dataset {config.dataset!r}; known datasets: '
                  f'{", ".join(available_datasets())}')


def class_names(config) -> list[str]:
  """Human-readable class names of `config.dataset`, by label index (ImageNet: the synset words
  in input_pipeline/imagenet_classes.txt, as torchvision and Keras' `decode_predictions` name
  them)."""
  if config.dataset == IMAGENET:
    path = os.path.join(os.path.dirname(__file__), 'imagenet_classes.txt')
    with open(path, encoding='utf-8') as f:
      return [line.rstrip('\n').split('\t')[1] for line in f]
  if config.dataset in TFDS_DATASETS:
    import_tensorflow_quietly()
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    return tfds.builder_cls(config.dataset)().info.features['label'].names
  return [f'class {i}' for i in range(max(config.num_classes, 0))]


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
  split is: ImageNet's centre crop (`eval_resize`, `eval_antialias`); for the other datasets,
  centred padding up to `image_size` (a larger image is first resized to shorter side
  `image_size` and centre-cropped, as MNIST-sized images need no resizing)."""
  import_tensorflow_quietly()
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from input_pipeline import preprocessing  # pylint: disable=import-outside-toplevel
  size = config.image_size
  image = tf.constant(image, tf.uint8)
  if config.dataset == IMAGENET:
    from input_pipeline import imagenet  # pylint: disable=import-outside-toplevel
    resize = imagenet.eval_resize_size(size, config.eval_resize)
    return preprocessing.center_crop_image(image, size, resize, config.eval_antialias).numpy()
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


def create_source(config, *, process_index: int, process_count: int,
                  eval_crops: int = 1) -> Source:
  """The source that `config.dataset` names, reading this process's slice of each split.

  `eval_crops` = 10 evaluates ImageNet on AlexNet's ten crops (image batches [B, 10, H, W, C]).
  """
  num_shards = num_data_shards(config, process_count)
  if config.batch_size % num_shards:
    raise DataError(f'batch_size={config.batch_size} must be a multiple of '
                    f'data_shards={num_shards}')
  shard = dict(process_index=process_index, process_count=process_count, num_shards=num_shards)
  if eval_crops != 1 and config.dataset != IMAGENET:
    raise DataError(f'{eval_crops}-crop evaluation needs {IMAGENET}, not {config.dataset}')
  if config.dataset == 'synthetic':
    from input_pipeline import synthetic
    num_classes = config.num_classes if config.num_classes > 0 else synthetic.SPEC.num_classes
    channels = config.in_channels if config.in_channels > 0 else synthetic.SPEC.image_shape[-1]
    return synthetic.SyntheticSource(
        image_size=config.image_size, channels=channels,
        num_classes=num_classes, num_train=config.synthetic_train_examples,
        num_eval=config.synthetic_eval_examples, seed=config.seed, **shard)
  if config.dataset in (*TFDS_DATASETS, IMAGENET):
    import_tensorflow_quietly()
  if config.dataset in TFDS_DATASETS:
    from input_pipeline import tfds_source
    return tfds_source.SmallImageSource(
        config.dataset, data_dir=config.data_dir, image_size=config.image_size,
        shuffle_buffer_size=config.shuffle_buffer_size, seed=config.seed, **shard)
  if config.dataset == IMAGENET:
    from input_pipeline import imagenet
    return imagenet.ImageNetSource(
        data_dir=config.data_dir, image_size=config.image_size,
        shuffle_buffer_size=config.shuffle_buffer_size, train_crop=config.train_crop,
        crop_area_range=config.crop_area_range, train_scale_range=config.train_scale_range,
        pca_lighting=config.pca_lighting, eval_resize=config.eval_resize,
        eval_antialias=config.eval_antialias, eval_crops=eval_crops, seed=config.seed, **shard)
  raise DataError(f'unknown dataset {config.dataset!r}; known datasets: '
                  f'{", ".join(available_datasets())}')


__all__ = ['Batch', 'DataError', 'DatasetSpec', 'INPUT_CONVENTIONS', 'Source',
           'available_datasets', 'class_names', 'create_source', 'dataset_spec', 'normalization',
           'num_data_shards', 'num_eval_steps', 'prediction_image', 'read_image']

"""ImageNet preprocessing ops, in TensorFlow so that tf.data runs them in parallel on the CPU.

Each training op takes a stateless seed (a [2] int64 tensor): the augmentation of an example is a
function of (seed, epoch, position in the epoch), so a resumed run and a one-process run redo
exactly the same crops. Training crops are decided from the JPEG header alone
(`tf.image.extract_jpeg_shape`) and only that window is decoded (`decode_and_crop_jpeg`), which
skips the inverse DCT and colour conversion of every pixel outside it; an image folder's PNG, GIF
or BMP files are decoded whole.

Images leave as uint8; per-channel normalisation happens on the accelerator. AlexNet's PCA colour
noise adds one RGB offset to every pixel of an image, so it also travels as that offset
(`lighting`, 3 floats) and is added on the device, exactly rather than rounded into uint8.
"""

import tensorflow as tf

# AlexNet's colour augmentation: eigenvalues and eigenvectors (columns) of the covariance of
# ImageNet's RGB pixel values on the 0-1 scale (the values fb.resnet.torch and torchvision use).
PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)
PCA_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009),
                    (-0.5808, -0.0045, -0.8140),
                    (-0.5836, -0.6948, 0.4203))


def eval_resize_size(image_size: int, eval_resize: int) -> int:
  """`eval_resize`, or -1 for the common ratio 224/256 = 0.875 (256 for 224, 342 for 299)."""
  return eval_resize if eval_resize > 0 else round(image_size / 0.875)


def split_seed(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
  """`num` independent stateless seeds derived from one."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def resize(image: tf.Tensor, height, width, antialias: bool = False) -> tf.Tensor:
  """Bilinear, back to uint8. Without antialiasing by default, as the TensorFlow pipelines that
  trained the Inception models (TF-slim) and ResNet on TPUs: crops of ImageNet photographs shrink
  by at most about 2x, and antialiasing (PIL's and torchvision's filter) halved the throughput of
  the whole training preprocessing on a 2-core x86 VM (benchmarks/input_pipeline.py, 2026-11-26)."""
  image = tf.image.resize(image, tf.stack([height, width]), method='bilinear', antialias=antialias)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def inception_window(shape: tf.Tensor, seed: tf.Tensor, area_range=(0.08, 1.0),
                     aspect_ratio_range=(3 / 4, 4 / 3)) -> tf.Tensor:
  """GoogLeNet's "random-resized" crop window (Szegedy et al., 2015, section 6) in an image of
  `shape`: 8-100% of its area, aspect ratio 3/4-4/3; the whole image after 10 misses.
  Returns [offset_y, offset_x, height, width]."""
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, tf.zeros([0, 0, 4], tf.float32), seed=seed, min_object_covered=0.0,
      aspect_ratio_range=aspect_ratio_range, area_range=area_range, max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  return tf.concat([begin[:2], crop_size[:2]], axis=0)


def scaled_crop_window(shape: tf.Tensor, seed: tf.Tensor, size: int, scale_range) -> tf.Tensor:
  """AlexNet's and VGG's crop window: rescale the image so that its shorter side is S, S uniform
  in `scale_range` (VGG's scale jitter is [256, 512]; AlexNet's S = 256), then take a random
  size x size crop; returned in original pixels, [offset_y, offset_x, height, width]."""
  scale_seed, y_seed, x_seed = split_seed(seed, 3)
  shorter = tf.random.stateless_uniform([], scale_seed, scale_range[0], scale_range[1] + 1,
                                        dtype=tf.int32)
  image_shorter = tf.reduce_min(shape[:2])
  # The size x size crop of the rescaled image covers `side` original pixels each way.
  side = tf.cast(tf.round(size * tf.cast(image_shorter, tf.float32)
                          / tf.cast(shorter, tf.float32)), tf.int32)
  side = tf.clip_by_value(side, 1, image_shorter)
  offset_y = tf.random.stateless_uniform([], y_seed, 0, shape[0] - side + 1, dtype=tf.int32)
  offset_x = tf.random.stateless_uniform([], x_seed, 0, shape[1] - side + 1, dtype=tf.int32)
  return tf.stack([offset_y, offset_x, side, side])


def decode(encoded: tf.Tensor) -> tf.Tensor:
  """A whole image of any format TensorFlow reads (the first frame of an animation), as RGB."""
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def decode_window(encoded: tf.Tensor, window_of, size: int, antialias: bool = False) -> tf.Tensor:
  """Decodes the window `window_of(shape)` chooses in an image of [height, width, channels]
  `shape`, as RGB (grayscale too), resized to size x size. A JPEG's shape comes from its header
  and only the window is decoded; other formats (an image folder's PNG, GIF or BMP files) are
  decoded once, whole."""

  def jpeg():
    window = window_of(tf.image.extract_jpeg_shape(encoded))
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

  def other():
    image = decode(encoded)
    y, x, height, width = tf.unstack(window_of(tf.shape(image)))
    return image[y:y + height, x:x + width]

  return resize(tf.cond(tf.io.is_jpeg(encoded), jpeg, other), size, size, antialias)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Mirrors left-right with probability 1/2."""
  return tf.image.stateless_random_flip_left_right(image, seed)


def pca_lighting(seed: tf.Tensor, stddev: float) -> tf.Tensor:
  """AlexNet's colour noise (Krizhevsky et al., 2012, section 4.1) as the RGB offset, on the 0-255
  scale, to add to every pixel of one image: eigenvectors @ (alpha * eigenvalues), alpha drawn
  from N(0, stddev) per image (the paper's 0.1)."""
  alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
  offset = tf.linalg.matvec(tf.constant(PCA_EIGENVECTORS), alpha * tf.constant(PCA_EIGENVALUES))
  return 255.0 * offset


def central_window(shape: tf.Tensor, fraction: float) -> tf.Tensor:
  """The centred square whose side is `fraction` of the image's shorter side, as a window."""
  side = tf.cast(tf.round(fraction * tf.cast(tf.reduce_min(shape[:2]), tf.float32)), tf.int32)
  side = tf.maximum(side, 1)
  return tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])


def center_crop(encoded: tf.Tensor, size: int, resize_size: int,
                antialias: bool = False) -> tf.Tensor:
  """Single-crop evaluation: the centre size x size of the image rescaled to shorter side
  `resize_size` (224 of 256: the common protocol), decoded from that window only. The window is
  cut first and then resized, which is the rescale-then-crop of the protocol up to the resize
  filter's reach across the crop's border (with `antialias`, PIL's and torchvision's filter)."""
  return decode_window(encoded, lambda shape: central_window(shape, size / resize_size), size,
                       antialias)


def center_crop_image(image: tf.Tensor, size: int, resize_size: int,
                      antialias: bool = False) -> tf.Tensor:
  """`center_crop` of an image already decoded (any format: predict.py's files), [H, W, C]."""
  y, x, height, width = tf.unstack(central_window(tf.shape(image), size / resize_size))
  return resize(image[y:y + height, x:x + width], size, size, antialias)


def ten_crops(encoded: tf.Tensor, size: int, resize_size: int,
              antialias: bool = False) -> tf.Tensor:
  """AlexNet's test-time crops (section 4.1): the four corner and the centre size x size patches
  of the central resize_size x resize_size square of the image rescaled to shorter side
  `resize_size`, and their mirror images. Returns [10, size, size, 3]: the five, then mirrors."""
  square = decode_window(encoded, lambda shape: central_window(shape, 1.0), resize_size,
                         antialias)
  far, middle = resize_size - size, (resize_size - size) // 2
  corners = [(0, 0), (0, far), (far, 0), (far, far), (middle, middle)]
  five = tf.stack([square[y:y + size, x:x + size] for y, x in corners])
  return tf.concat([five, tf.reverse(five, axis=[2])], axis=0)


def train_example(encoded: tf.Tensor, seed: tf.Tensor, *, crop: str, size: int, area_range,
                  scale_range, lighting: float) -> dict[str, tf.Tensor]:
  """One training example: `crop` ('inception' or 'scaled') + flip, and AlexNet's colour noise
  as a `lighting` offset when its standard deviation is positive."""
  crop_seed, flip_seed, lighting_seed = split_seed(seed, 3)

  def window_of(shape):
    if crop == 'inception':
      return inception_window(shape, crop_seed, area_range)
    return scaled_crop_window(shape, crop_seed, size, scale_range)

  example = {'image': random_flip(decode_window(encoded, window_of, size), flip_seed)}
  if lighting > 0:
    example['lighting'] = pca_lighting(lighting_seed, lighting)
  return example

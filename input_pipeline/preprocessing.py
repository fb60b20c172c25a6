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
GoogLeNet's random interpolation and photometric distortions, and Inception's colour distortion,
change the pixels themselves and are optional (`train_example`).
"""

import functools

import tensorflow as tf

# AlexNet's colour augmentation: eigenvalues and eigenvectors (columns) of the covariance of
# ImageNet's RGB pixel values on the 0-1 scale (the values fb.resnet.torch and torchvision use).
PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)
PCA_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009),
                    (-0.5808, -0.0045, -0.8140),
                    (-0.5836, -0.6948, 0.4203))
# Pillow's resampling of 8-bit images (libImaging/Resample.c) in fixed point: weights scaled by
# 2**22, 32-bit sums.
PIL_PRECISION_BITS = 22
# GoogLeNet's training interpolation methods (section 6), drawn with equal probability.
RESIZE_METHODS = ('bilinear', 'area', 'nearest', 'bicubic')
# TF-slim's four orderings of Inception's colour distortion (`distort_color`, fast_mode=False).
INCEPTION_COLOR_ORDERINGS = (('brightness', 'saturation', 'hue', 'contrast'),
                             ('saturation', 'brightness', 'contrast', 'hue'),
                             ('contrast', 'hue', 'brightness', 'saturation'),
                             ('hue', 'saturation', 'contrast', 'brightness'))


def split_seed(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
  """`num` independent stateless seeds derived from one."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  """A float image on the 0-255 scale, rounded and clipped to uint8."""
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def resize(image: tf.Tensor, height, width, antialias: bool = False,
           method: str = 'bilinear') -> tf.Tensor:
  """Bilinear (or another of `RESIZE_METHODS`), back to uint8. Without antialiasing by default,
  as the TensorFlow pipelines that trained the Inception models (TF-slim) and ResNet on TPUs:
  crops of ImageNet photographs shrink by at most about 2x, and antialiasing (PIL's and
  torchvision's filter) halved the throughput of the whole training preprocessing on a 2-core x86
  VM (benchmarks/input_pipeline.py, 2026-11-26)."""
  image = tf.image.resize(image, tf.stack([height, width]), method=method, antialias=antialias)
  return to_uint8(tf.cast(image, tf.float32))  # Nearest neighbour keeps the input's uint8.


def random_resize(image: tf.Tensor, height, width, seed: tf.Tensor) -> tf.Tensor:
  """GoogLeNet's "random interpolation methods (bilinear, area, nearest neighbor and cubic, with
  equal probability)" (Szegedy et al., 2015, section 6), as TF-slim's `num_resize_cases=4`."""
  choice = tf.random.stateless_uniform([], seed, 0, len(RESIZE_METHODS), dtype=tf.int32)
  return tf.switch_case(choice, [functools.partial(resize, image, height, width, method=method)
                                 for method in RESIZE_METHODS])


def inception_window(shape: tf.Tensor, seed: tf.Tensor, area_range=(0.08, 1.0),
                     aspect_ratio_range=(3 / 4, 4 / 3), min_object_covered: float = 0.0,
                     max_attempts: int = 10) -> tf.Tensor:
  """GoogLeNet's "random-resized" crop window (Szegedy et al., 2015, section 6) in an image of
  `shape`: 8-100% of its area, aspect ratio 3/4-4/3; the whole image after 10 misses. Drawn by
  TensorFlow's sampler, whose box only has to cover `min_object_covered` of the whole image.
  Returns [offset_y, offset_x, height, width]."""
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, tf.zeros([0, 0, 4], tf.float32), seed=seed, min_object_covered=min_object_covered,
      aspect_ratio_range=aspect_ratio_range, area_range=area_range, max_attempts=max_attempts,
      use_image_if_no_bounding_boxes=True)
  return tf.concat([begin[:2], crop_size[:2]], axis=0)


def slim_window(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """TF-slim's Inception training crop (`distorted_bounding_box_crop` in research/slim/
  preprocessing/inception_preprocessing.py, which trained the Inception-ResNet-v2 weights): the
  same sampler with its own ranges, 5-100% of the area, aspect ratio 0.75-1.33, covering at least
  10% of the image (slim passes the whole image as the object's box), the whole image after 100
  misses. Its areas then start at 10%: other boxes than `inception_window`'s."""
  return inception_window(shape, seed, area_range=(0.05, 1.0), aspect_ratio_range=(0.75, 1.33),
                          min_object_covered=0.1, max_attempts=100)


def torchvision_window(shape: tf.Tensor, seed: tf.Tensor, area_range=(0.08, 1.0),
                       aspect_ratio_range=(3 / 4, 4 / 3)) -> tf.Tensor:
  """torchvision's `RandomResizedCrop.get_params` (the crop of its classification recipe) step by
  step, with stateless random numbers: 10 attempts of an area uniform in `area_range` times the
  image's and a ratio whose logarithm is uniform, sides w = round(sqrt(area * ratio)) and
  h = round(sqrt(area / ratio)); the first attempt that fits is placed uniformly; after 10
  misses, the centred box of the whole image, its ratio clamped to `aspect_ratio_range`. torch's
  float32 draws are widened to float64 as its `.item()` does; Python's round and TensorFlow's
  both round half to even. TensorFlow's sampler (`inception_window`) draws the ratio, not its
  logarithm, and then the box's height, not its area, uniformly: other boxes (on ImageNet's
  sizes, a Kolmogorov-Smirnov distance of 0.13 in area; benchmarks/crop_distributions.py).
  Returns [offset_y, offset_x, height, width]."""
  area_seed, ratio_seed, y_seed, x_seed = split_seed(seed, 4)
  attempts = 10
  height, width = shape[0], shape[1]
  area = tf.cast(height * width, tf.float64)
  target_area = area * tf.cast(tf.random.stateless_uniform([attempts], area_seed, *area_range),
                               tf.float64)
  log_ratio = tf.math.log(tf.constant(aspect_ratio_range, tf.float32))
  ratio = tf.cast(tf.exp(tf.random.stateless_uniform([attempts], ratio_seed, log_ratio[0],
                                                     log_ratio[1])), tf.float64)
  w = tf.cast(tf.round(tf.sqrt(target_area * ratio)), tf.int32)
  h = tf.cast(tf.round(tf.sqrt(target_area / ratio)), tf.int32)
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = tf.reduce_min(tf.where(fits, tf.range(attempts), attempts))
  # The fallback: the whole image, narrowed to the nearest ratio in range.
  low, high = min(aspect_ratio_range), max(aspect_ratio_range)
  image_ratio = tf.cast(width, tf.float64) / tf.cast(height, tf.float64)
  fallback_w = tf.where(image_ratio > high, tf.cast(tf.round(tf.cast(height, tf.float64) * high),
                                                    tf.int32), width)
  fallback_h = tf.where(image_ratio < low, tf.cast(tf.round(tf.cast(width, tf.float64) / low),
                                                   tf.int32), height)

  def placed():
    box_h, box_w = h[first], w[first]
    return tf.stack([
        tf.random.stateless_uniform([], y_seed, 0, height - box_h + 1, dtype=tf.int32),
        tf.random.stateless_uniform([], x_seed, 0, width - box_w + 1, dtype=tf.int32),
        box_h, box_w])

  def centred():
    return tf.stack([(height - fallback_h) // 2, (width - fallback_w) // 2, fallback_h,
                     fallback_w])

  return tf.cond(first < attempts, placed, centred)


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


def decode_window(encoded: tf.Tensor, window_of, size: int, antialias: bool = False,
                  resize_seed: tf.Tensor | None = None) -> tf.Tensor:
  """Decodes the window `window_of(shape)` chooses in an image of [height, width, channels]
  `shape`, as RGB (grayscale too), resized to size x size (bilinear; with `resize_seed`, by
  `random_resize`). A JPEG's shape comes from its header and only the window is decoded; other
  formats (an image folder's PNG, GIF or BMP files) are decoded once, whole."""

  def jpeg():
    window = window_of(tf.image.extract_jpeg_shape(encoded))
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

  def other():
    image = decode(encoded)
    y, x, height, width = tf.unstack(window_of(tf.shape(image)))
    return image[y:y + height, x:x + width]

  window = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  if resize_seed is not None:
    return random_resize(window, size, size, resize_seed)
  return resize(window, size, size, antialias)


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


def luma(image: tf.Tensor) -> tf.Tensor:
  """PIL's "L" (ITU-R 601-2 luma) of a float RGB image: 0.299 R + 0.587 G + 0.114 B, [H, W, 1]."""
  return tf.tensordot(image, tf.constant([0.299, 0.587, 0.114]), axes=1)[..., None]


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor) -> tf.Tensor:
  """PIL's `Image.blend(degenerate, image, factor)` (what ImageEnhance's `enhance` does) on the
  0-255 scale, clipped as PIL's uint8 result (which PIL truncates where this keeps the float)."""
  return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def enhance_brightness(image: tf.Tensor, factor) -> tf.Tensor:
  """PIL's `ImageEnhance.Brightness`: a blend with black."""
  return _blend(tf.zeros_like(image), image, factor)


def enhance_contrast(image: tf.Tensor, factor) -> tf.Tensor:
  """PIL's `ImageEnhance.Contrast`: a blend with the mean grey level of the image's luma."""
  return _blend(tf.reduce_mean(luma(image)), image, factor)


def enhance_color(image: tf.Tensor, factor) -> tf.Tensor:
  """PIL's `ImageEnhance.Color` (saturation): a blend with the image's luma, as grey RGB."""
  return _blend(luma(image), image, factor)


def howard_distortion(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """GoogLeNet's photometric distortions (Szegedy et al., 2015, section 6, citing Howard, 2013,
  "Some improvements on deep convolutional neural network based image classification", section
  2.1): contrast, brightness and colour each enhanced as PIL's ImageEnhance does (Pillow's
  src/PIL/ImageEnhance.py: a blend with black, the mean luma, the luma image) by a factor drawn
  uniformly in [0.5, 1.5] (1 leaves the image unchanged), in a random order. Each step clips to
  0-255 as PIL's uint8 images; the result is rounded once, to uint8."""
  factor_seed, order_seed = split_seed(seed, 2)
  factors = tf.random.stateless_uniform([3], factor_seed, 0.5, 1.5)
  order = tf.argsort(tf.random.stateless_uniform([3], order_seed))  # A uniform permutation.
  enhancements = (enhance_contrast, enhance_brightness, enhance_color)
  image = tf.cast(image, tf.float32)
  for step in range(3):
    image = tf.switch_case(order[step], [functools.partial(enhance, image, factors[k])
                                         for k, enhance in enumerate(enhancements)])
  return to_uint8(image)


def inception_distortion(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Inception's colour distortion, as the authors' TF-slim `distort_color` (research/slim/
  preprocessing/inception_preprocessing.py) with fast_mode=False: brightness delta uniform in
  +-32/255, saturation and contrast factors in [0.5, 1.5], hue delta in +-0.2, applied in one of
  `INCEPTION_COLOR_ORDERINGS` drawn per image (`apply_with_random_selector`, num_cases=4) on the
  0-1 scale without clamping between ops, then clipped to [0, 1]; TensorFlow's stateless ops
  here. Slim's `train_image_classifier.py` leaves `fast_mode` at its default True, which instead
  applies only brightness and saturation (in that order for one case of 4, else reversed) and
  resizes bilinearly only; the Inception (v3) release (research/inception) used all four ops in
  2 orderings and the 4 resize methods, both chosen by preprocessing thread."""
  ordering_seed, brightness_seed, saturation_seed, hue_seed, contrast_seed = split_seed(seed, 5)
  ops = {
      'brightness': lambda x: tf.image.stateless_random_brightness(x, 32 / 255, brightness_seed),
      'saturation': lambda x: tf.image.stateless_random_saturation(x, 0.5, 1.5, saturation_seed),
      'hue': lambda x: tf.image.stateless_random_hue(x, 0.2, hue_seed),
      'contrast': lambda x: tf.image.stateless_random_contrast(x, 0.5, 1.5, contrast_seed)}
  image = tf.cast(image, tf.float32) / 255

  def ordered(names):
    return lambda: functools.reduce(lambda x, name: ops[name](x), names, image)

  ordering = tf.random.stateless_uniform([], ordering_seed, 0, len(INCEPTION_COLOR_ORDERINGS),
                                         dtype=tf.int32)
  image = tf.switch_case(ordering, [ordered(names) for names in INCEPTION_COLOR_ORDERINGS])
  return to_uint8(255 * tf.clip_by_value(image, 0.0, 1.0))


COLOR_DISTORTIONS = {'howard': howard_distortion, 'inception': inception_distortion}


def central_window(shape: tf.Tensor, fraction: float) -> tf.Tensor:
  """The centred square whose side is `fraction` of the image's shorter side, as a window."""
  side = tf.cast(tf.round(fraction * tf.cast(tf.reduce_min(shape[:2]), tf.float32)), tf.int32)
  side = tf.maximum(side, 1)
  return tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])


def decode_as_pil(encoded: tf.Tensor) -> tf.Tensor:
  """A whole image decoded as Pillow decodes it, as RGB: JPEGs with libjpeg's accurate integer
  DCT (Pillow's; TensorFlow's default fast one is up to about 20 grey levels off), other formats
  as `decode`."""
  return tf.cond(tf.io.is_jpeg(encoded),
                 lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method='INTEGER_ACCURATE'),
                 lambda: decode(encoded))


def pil_bilinear_taps(in_size, out_size, first, count: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Pillow's bilinear resampling of `in_size` pixels to `out_size`, for the output pixels
  `first` to `first + count`, as Resample.c's `precompute_coeffs` and `normalize_coeffs_8bpc`
  compute it, in float64: each output pixel's input pixels lie within max(1, in / out) of its
  centre (the reduction widens the triangle: the antialiasing), weigh the triangle's value there,
  normalised to sum 1, and are then rounded to fixed point (`PIL_PRECISION_BITS`). Returns
  ([count, taps] input indices, [count, taps] int32 weights); taps past the edge weigh 0."""
  in_size = tf.convert_to_tensor(in_size, tf.int32)
  scale = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
  support = tf.maximum(scale, 1.0)  # The triangle's half-width, in input pixels.
  taps = tf.cast(tf.math.ceil(support), tf.int32) * 2 + 1
  center = (tf.cast(tf.range(first, first + count), tf.float64) + 0.5) * scale
  # C's (int) casts truncate towards zero, as tf.cast.
  low = tf.maximum(tf.cast(center - support + 0.5, tf.int32), 0)
  valid = tf.minimum(tf.cast(center + support + 0.5, tf.int32), in_size) - low
  tap = tf.range(taps)[None]
  index = tap + low[:, None]
  distance = (tf.cast(index, tf.float64) - center[:, None] + 0.5) * (1.0 / support)
  weight = tf.where(tap < valid[:, None], tf.maximum(1.0 - tf.abs(distance), 0.0), 0.0)
  weight /= tf.reduce_sum(weight, axis=1, keepdims=True)
  fixed = tf.cast(0.5 + weight * 2.0 ** PIL_PRECISION_BITS, tf.int32)
  return tf.minimum(index, in_size - 1), fixed


def pil_resample(image: tf.Tensor, axis: int, taps: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
  """One of Pillow's separable passes over int32 `image` [H, W, C] along `axis` (0: rows, 1:
  columns), with `pil_bilinear_taps`: 32-bit sums of pixels times weights, rounded and clipped to
  0-255 as Pillow's uint8 result."""
  index, weight = taps
  gathered = tf.gather(image, index, axis=axis)  # [count, taps, W, C] or [H, count, taps, C].
  weight = weight[:, :, None, None] if axis == 0 else weight[None, :, :, None]
  total = tf.reduce_sum(gathered * weight, axis=axis + 1) + 2 ** (PIL_PRECISION_BITS - 1)
  return tf.clip_by_value(tf.bitwise.right_shift(total, PIL_PRECISION_BITS), 0, 255)


def torchvision_center_geometry(height, width, size: int, resize_size: int) -> list[tf.Tensor]:
  """torchvision's `Resize(resize_size)` of a height x width image and its `CenterCrop(size)`:
  [resized height, resized width, top, left]. The shorter side becomes `resize_size`, the longer
  one `int(resize_size * long / short)` (truncated); the offsets are rounded half to even
  (Python's round, as TensorFlow's)."""
  shorter = tf.minimum(height, width)
  out_height = tf.where(width <= height, resize_size * height // shorter, resize_size)
  out_width = tf.where(width <= height, resize_size, resize_size * width // shorter)
  return [out_height, out_width,
          *(tf.cast(tf.round(tf.cast(out - size, tf.float64) / 2), tf.int32)
            for out in (out_height, out_width))]


def torchvision_center_crop_image(image: tf.Tensor, size: int, resize_size: int) -> tf.Tensor:
  """torchvision's `Resize(resize_size) + CenterCrop(size)` of a PIL image of `image` [H, W, 3]
  (its classification recipe's evaluation), pixel for pixel: the whole image resized
  (`torchvision_center_geometry`) by Pillow's bilinear filter in separable passes, columns first
  with uint8 pixels in between (Pillow 9.4, Debian's; Pillow 13 passes over the rows first, which
  moves some pixels by one grey level), then the centred size x size. Only the crop's pixels, and
  the rows they reach, are computed."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  out_height, out_width, top, left = torchvision_center_geometry(height, width, size, resize_size)
  row_taps = pil_bilinear_taps(height, out_height, top, size)
  first_row, last_row = tf.reduce_min(row_taps[0]), tf.reduce_max(row_taps[0])
  rows = tf.cast(image[first_row:last_row + 1], tf.int32)
  columns = pil_resample(rows, 1, pil_bilinear_taps(width, out_width, left, size))
  crop = pil_resample(columns, 0, (row_taps[0] - first_row, row_taps[1]))
  return tf.cast(crop, tf.uint8)


def center_crop(encoded: tf.Tensor, size: int, resize_size: int, antialias: bool = False,
                crop: str = 'window') -> tf.Tensor:
  """Single-crop evaluation: the centre size x size of the image rescaled to shorter side
  `resize_size` (224 of 256: the common protocol). `crop` 'window' decodes that window only, cut
  first and then resized, which is the rescale-then-crop of the protocol up to the resize
  filter's reach across the crop's border and TensorFlow's fast DCT and filter (with `antialias`,
  close to PIL's); 'torchvision' is torchvision's own pixels (`torchvision_center_crop_image` of
  the image decoded as Pillow does), at a fifth to a third of the speed (the whole image decoded
  accurately and resampled in integers; benchmarks/eval_pixels.py)."""
  if crop == 'torchvision':
    return torchvision_center_crop_image(decode_as_pil(encoded), size, resize_size)
  return decode_window(encoded, lambda shape: central_window(shape, size / resize_size), size,
                       antialias)


def center_crop_image(image: tf.Tensor, size: int, resize_size: int, antialias: bool = False,
                      crop: str = 'window') -> tf.Tensor:
  """`center_crop` of an image already decoded (any format: predict.py's files), [H, W, C]."""
  if crop == 'torchvision':
    return torchvision_center_crop_image(image, size, resize_size)
  y, x, height, width = tf.unstack(central_window(tf.shape(image), size / resize_size))
  return resize(image[y:y + height, x:x + width], size, size, antialias)


def corners_and_centre(image: tf.Tensor, size: int) -> tf.Tensor:
  """The four corner (top-left, top-right, bottom-left, bottom-right) and the centre size x size
  crops of `image`, [5, size, size, C]."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  bottom, right = height - size, width - size
  offsets = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
  return tf.stack([image[y:y + size, x:x + size] for y, x in offsets])


def rescale(image: tf.Tensor, shorter: int, multiple: int = 1,
            antialias: bool = False) -> tf.Tensor:
  """`image` [H, W, C] resized so that its shorter side is `shorter`, the aspect ratio kept: the
  longer side is rounded to a multiple of `multiple` pixels (at least `shorter`)."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  longer = tf.round(tf.reduce_max(shape) * shorter / tf.reduce_min(shape) / multiple) * multiple
  longer = tf.maximum(tf.cast(longer, tf.int32), shorter)
  portrait = shape[0] > shape[1]
  return resize(image, tf.where(portrait, longer, shorter), tf.where(portrait, shorter, longer),
                antialias)


def train_example(encoded: tf.Tensor, seed: tf.Tensor, *, crop: str, size: int, area_range,
                  scale_range, lighting: float, interpolation: str = 'bilinear',
                  color_distortion: str = 'none') -> dict[str, tf.Tensor]:
  """One training example: `crop` ('inception', 'slim', 'torchvision' or 'scaled': the windows
  above) resized by `interpolation` ('bilinear', or 'random': `random_resize`), a
  `color_distortion` ('none', or 'howard' or 'inception': `COLOR_DISTORTIONS`), a flip, and
  AlexNet's colour noise as a `lighting` offset when its standard deviation is positive."""
  crop_seed, flip_seed, lighting_seed = split_seed(seed, 3)
  # The later additions draw from a seed of their own: the three above, and so the crops, flips
  # and noise of earlier runs, stay as they were.
  resize_seed, color_seed = split_seed(tf.random.fold_in(seed, 1), 2)

  window_of = {
      'inception': lambda shape: inception_window(shape, crop_seed, area_range),
      'slim': lambda shape: slim_window(shape, crop_seed),
      'torchvision': lambda shape: torchvision_window(shape, crop_seed, area_range),
      'scaled': lambda shape: scaled_crop_window(shape, crop_seed, size, scale_range)}[crop]
  image = decode_window(encoded, window_of, size,
                        resize_seed=resize_seed if interpolation == 'random' else None)
  if color_distortion != 'none':
    image = COLOR_DISTORTIONS[color_distortion](image, color_seed)
  example = {'image': random_flip(image, flip_seed)}
  if lighting > 0:
    example['lighting'] = pca_lighting(lighting_seed, lighting)
  return example

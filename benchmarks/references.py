"""The references' own outputs, from their own code, for the benchmarks and the tests that compare
this project's preprocessing with them: torchvision's training boxes and evaluation crops (scripts
for Debian's system Python, which has PyTorch and torchvision; the virtual environment has
neither) and TF-slim's training boxes (TensorFlow's sampler with slim's arguments). No flags: the
tests import this module (they run the scripts with tests/system_python.py).
"""

import os
import subprocess
import tempfile

import numpy as np
import tensorflow as tf

SYSTEM_PYTHON = '/usr/bin/python3'  # Debian's, with python3-torchvision.

# torchvision's `RandomResizedCrop.get_params` (args: JSON [[height, width], ...], draws, seed):
# boxes [offset_y, offset_x, height, width] in boxes.npy, draw k on size k modulo their number.
# The image is a broadcast view of its size: get_params reads only its shape.
TORCHVISION_BOXES = '''
import json, sys
import numpy as np, torch, torchvision
sizes, draws, seed = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(seed)
crop = torchvision.transforms.RandomResizedCrop(224)  # The recipe's: scale and ratio defaults.
images = [torch.zeros(1, 1, 1).expand(3, h, w) for h, w in sizes]
np.save('boxes.npy', np.array([crop.get_params(images[k % len(images)], crop.scale, crop.ratio)
                               for k in range(draws)]))
'''

# torchvision's classification evaluation, `Resize(resize) + CenterCrop(size)` of each file
# opened by PIL and converted to RGB as its ImageFolder loader does (args: size, resize, the
# files): crops.npy, [files, size, size, 3] uint8.
TORCHVISION_CROPS = '''
import sys
import numpy as np, torchvision.transforms as T
from PIL import Image
size, resize, paths = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
crop = T.Compose([T.Resize(resize), T.CenterCrop(size)])  # Bilinear: PIL's antialiased filter.
np.save('crops.npy', np.stack([np.asarray(crop(Image.open(path).convert('RGB')))
                               for path in paths]))
'''


def run_system_python(script: str, *args: str, output: str) -> np.ndarray:
  """The array `script` saves as `output` in the folder it runs in, run by the system Python."""
  with tempfile.TemporaryDirectory() as folder:
    subprocess.run([SYSTEM_PYTHON, '-c', script, *args], cwd=folder, check=True)
    return np.load(os.path.join(folder, output))


def slim_boxes(shapes: np.ndarray, seed: int) -> np.ndarray:
  """TF-slim's `distorted_bounding_box_crop` boxes (research/slim/preprocessing/
  inception_preprocessing.py), [offset_y, offset_x, height, width], one in an image of each of
  `shapes` [N, 3]: TensorFlow's stateful sampler with slim's arguments, the whole image as the
  object's box."""
  tf.random.set_seed(seed)  # With the op's seed 1: fixed draws (0 and 0 would be unseeded).
  whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])

  def box(shape):
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=whole, seed=1, min_object_covered=0.1,
        aspect_ratio_range=(0.75, 1.33), area_range=(0.05, 1.0), max_attempts=100,
        use_image_if_no_bounding_boxes=True)
    return tf.concat([begin[:2], size[:2]], axis=0)

  boxes = tf.data.Dataset.from_tensor_slices(shapes).map(box).batch(8192)
  return np.concatenate(list(boxes.as_numpy_iterator()))

"""A miniature ILSVRC2012 in the exact layout of the official tars, for TFDS's real builder.

`ILSVRC2012_img_train.tar` holds one tar per synset (`n01440764.tar`), each holding that synset's
JPEGs (`n01440764_10026.JPEG`); `ILSVRC2012_img_val.tar` holds `ILSVRC2012_val_00000001.JPEG` ...
flat, labelled by TFDS from its copy of the official validation ground truth, in name order.
As in the real archives, some images are grayscale, sizes are odd, one training JPEG is CMYK and
one (n02105855_2933.JPEG) is really a PNG: TFDS's builder repairs those two by name.
"""

import io
import os
import tarfile

import numpy as np
from PIL import Image

CMYK_FILE = 'n01739381_1309.JPEG'  # On TFDS's list of the CMYK JPEGs of the real train tar.
PNG_FILE = 'n02105855_2933.JPEG'  # The one PNG of the real train tar.
# Training images per synset: (file name, height, width, mode).
TRAIN = {
    'n01440764': [('n01440764_10026.JPEG', 375, 500, 'RGB'),
                  ('n01440764_10027.JPEG', 333, 500, 'L'),
                  ('n01440764_1003.JPEG', 500, 375, 'RGB'),
                  ('n01440764_10040.JPEG', 41, 97, 'RGB')],
    'n01739381': [(CMYK_FILE, 300, 400, 'CMYK'),
                  ('n01739381_1030.JPEG', 256, 256, 'RGB'),
                  ('n01739381_1046.JPEG', 500, 331, 'L'),
                  ('n01739381_105.JPEG', 123, 457, 'RGB')],
    'n02105855': [(PNG_FILE, 227, 300, 'PNG'),
                  ('n02105855_10008.JPEG', 480, 640, 'RGB'),
                  ('n02105855_10017.JPEG', 77, 77, 'L'),
                  ('n02105855_1004.JPEG', 360, 479, 'RGB')],
}
# Validation images: sizes and modes of ILSVRC2012_val_00000001.JPEG, ..._00000013.JPEG.
VAL = [(375, 500, 'RGB'), (500, 333, 'RGB'), (333, 500, 'L'), (500, 375, 'RGB'), (99, 131, 'RGB'),
       (256, 256, 'L'), (480, 640, 'RGB'), (375, 500, 'RGB'), (211, 307, 'RGB'), (500, 500, 'RGB'),
       (64, 300, 'L'), (375, 500, 'RGB'), (301, 299, 'RGB')]


def photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """Smooth colour gradients plus a little noise: compresses and decodes like a photograph."""
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  a, b, c = rng.uniform(0, 255, (3, 3))
  image = a + b * x[..., None] + c * y[..., None] + rng.normal(0, 8, (height, width, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def encode(rng: np.random.Generator, height: int, width: int, mode: str) -> bytes:
  image = Image.fromarray(photo_like(rng, height, width))
  out = io.BytesIO()
  if mode == 'PNG':
    image.save(out, 'PNG')
  else:
    image.convert(mode).save(out, 'JPEG', quality=90)
  return out.getvalue()


def add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  archive.addfile(info, io.BytesIO(data))


def val_name(index: int) -> str:
  return f'ILSVRC2012_val_{index:08d}.JPEG'


def write_tars(manual_dir: str, seed: int = 0) -> None:
  """Writes both tars into `manual_dir` (TFDS's <data_dir>/downloads/manual)."""
  rng = np.random.default_rng(seed)
  os.makedirs(manual_dir, exist_ok=True)
  with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_train.tar'), 'w') as train:
    for synset, images in TRAIN.items():
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode='w') as synset_tar:
        for name, height, width, mode in images:
          add_file(synset_tar, name, encode(rng, height, width, mode))
      add_file(train, f'{synset}.tar', inner.getvalue())
  with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_val.tar'), 'w') as val:
    for index, (height, width, mode) in enumerate(VAL, start=1):
      add_file(val, val_name(index), encode(rng, height, width, mode))

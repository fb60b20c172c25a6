"""What a network learnt, as arrays to draw (visualize.py draws them).

- `filter_grid`: a convolution's filters side by side, each scaled to [0, 1] on its own (as
  AlexNet's Figure 3); colour where the layer sees RGB, grey otherwise (a deeper layer's filters
  are averaged over their input channels).
- `tile_grid`: a layer's activation maps, one tile per channel (at most `cap`, evenly chosen).
- `occlusion_map`: Zeiler & Fergus' Figure 7: a grey square slid over the image, the probability
  of one class at each position.
- `saliency_map`: Simonyan, Vedaldi & Zisserman (2014): the gradient of the class score with
  respect to the input pixels, its largest absolute value over the channels.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def _grid(tiles: np.ndarray, pad: int = 1) -> np.ndarray:
  """[N, h, w, C] tiles in a near-square grid separated by `pad` pixels of 1.0 (white)."""
  n, h, w, c = tiles.shape
  columns = math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
  for i, tile in enumerate(tiles):
    y, x = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
    grid[y:y + h, x:x + w] = tile
  return grid


def _unit(tiles: np.ndarray) -> np.ndarray:
  """Each tile scaled to [0, 1] on its own (a constant tile becomes 0.5)."""
  axes = tuple(range(1, tiles.ndim))
  low, high = tiles.min(axes, keepdims=True), tiles.max(axes, keepdims=True)
  return np.where(high > low, (tiles - low) / np.where(high > low, high - low, 1), 0.5)


def filter_tiles(kernel: np.ndarray) -> np.ndarray:
  """A convolution's [h, w, in, out] kernel as [out, h, w, 3 or 1] tiles in [0, 1]."""
  kernel = np.asarray(kernel, np.float32)
  tiles = kernel.transpose(3, 0, 1, 2)
  if kernel.shape[2] != 3:
    tiles = tiles.mean(-1, keepdims=True)
  return _unit(tiles)


def filter_grid(kernel: np.ndarray) -> np.ndarray:
  return _grid(filter_tiles(kernel))


def evenly_chosen(count: int, cap: int) -> list[int]:
  """All of range(count), or `cap` >= 1 of them evenly spread (a large layer stays readable)."""
  if count <= cap:
    return list(range(count))
  if cap == 1:
    return [count // 2]
  return sorted({round(i * (count - 1) / (cap - 1)) for i in range(cap)})


def tile_grid(maps: np.ndarray, channels: list[int]) -> np.ndarray:
  """One image's [H, W, C] activation maps, the `channels` as grey tiles of a grid."""
  maps = np.asarray(maps, np.float32)
  return _grid(_unit(maps[..., channels].transpose(2, 0, 1)[..., None]))


def occlusion_map(probability, image: np.ndarray, label: int, *, size: int, stride: int,
                  fill: float, batch: int = 64) -> np.ndarray:
  """The probability of class `label` with a `size` x `size` square of value `fill` at each
  position (`stride` apart) of the [H, W, C] image, as a [rows, columns] map.
  `probability(images)` maps a batch of images to class probabilities."""
  height, width = image.shape[:2]
  corners = [(y, x) for y in range(0, height - size + 1, stride)
             for x in range(0, width - size + 1, stride)]
  result = []
  for start in range(0, len(corners), batch):
    occluded = np.repeat(image[None].astype(np.float32), len(corners[start:start + batch]), 0)
    for i, (y, x) in enumerate(corners[start:start + batch]):
      occluded[i, y:y + size, x:x + size] = fill
    result.append(np.asarray(probability(occluded))[:, label])
  rows = len(range(0, height - size + 1, stride))
  return np.concatenate(result).reshape(rows, -1)


def saliency_gradient(score, image: np.ndarray, label: int) -> np.ndarray:
  """d score(image)[label] / d image, with the image's [H, W, C] shape; `score(images)` maps a
  batch of float images to class scores."""
  gradient = jax.grad(lambda x: score(x[None])[0, label])(jnp.asarray(image, jnp.float32))
  return np.asarray(gradient)


def saliency_map(gradient: np.ndarray) -> np.ndarray:
  """The paper's map: the largest absolute gradient over the channels, [H, W]."""
  return np.abs(gradient).max(-1)

"""The registry of evaluation views (this package's view files register their kinds)."""

import dataclasses
from collections.abc import Callable

# The kind that shows the whole image (fully-convolutional testing): asked for with --dense, its
# batches hold images of one shape each, and the model runs its `dense` form on them.
DENSE = 'dense'


@dataclasses.dataclass(frozen=True)
class ViewKind:
  """One kind of `base.EvalView`.

  `prepare(encoded, size, shorter, antialias, crop)` makes one image's views from its encoded
  bytes, for `size`-pixel crops at shorter side `shorter`, resized with or without antialiasing,
  the centre crop cut as `crop` says (the config's `eval_crop`; the other kinds have their papers'
  geometry): [size, size, 3] for one view, [per_image, size, size, 3] for several (uint8; mirror
  images are added on the device, app/evaluation.py).
  `crops` is the `--crops` value that asks for it, mirrors included (None: not a --crops choice),
  `mirrors` whether those crops include their mirror images (else only with --flip), and
  `paper_scales` the shorter sides of the paper's protocol for 224-pixel crops, used in
  proportion for other crop sizes (empty: --scales or the config's eval_resize).
  """
  name: str
  prepare: Callable
  description: str
  crops: int | None
  per_image: int
  mirrors: bool = False
  paper: str = ''  # Whose protocol, for messages.
  paper_scales: tuple[int, ...] = ()


_KINDS: dict[str, ViewKind] = {}


def register(name: str, **facts):
  """Decorator of a view file's op: registers the kind `name` with `facts` (ViewKind's fields)."""

  def wrap(prepare):
    if name in _KINDS:
      raise ValueError(f'evaluation view {name!r} registered twice')
    kind = ViewKind(name=name, prepare=prepare, **facts)
    if kind.crops is not None and kind.crops in by_crops():
      raise ValueError(f'--crops={kind.crops} registered twice')
    _KINDS[name] = kind
    return prepare

  return wrap


def get(name: str) -> ViewKind:
  return _KINDS[name]


def names() -> tuple[str, ...]:
  return tuple(_KINDS)


def by_crops() -> dict[int, ViewKind]:
  """The kinds `--crops=N` asks for, by N, in increasing order."""
  return dict(sorted((kind.crops, kind) for kind in _KINDS.values() if kind.crops is not None))

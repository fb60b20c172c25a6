"""Name -> constructor registry (timm's `create_model`), so configs name models by string.

One idiom, timm's: each registered model is a module-level function of its family file named as
the model and decorated with `@register`, which registers it under that name, so searching for
`def resnet50` finds where `resnet50` is defined. `cnns/__init__.py` imports the family files so
that importing `cnns` fills the registry.
"""

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

_MODELS: dict[str, Callable[..., nnx.Module]] = {}


class UnknownModelError(ValueError):
  """A model name that no family registered."""


def register(constructor: Callable[..., nnx.Module]) -> Callable[..., nnx.Module]:
  """Registers the model function `constructor` under its own name."""
  name = constructor.__name__
  if name in _MODELS:
    raise ValueError(f'model {name!r} registered twice')
  _MODELS[name] = constructor
  return constructor


def available_models() -> list[str]:
  return sorted(_MODELS)


def family(name: str) -> str:
  """The family file that registers model `name` ('resnet' for resnet50)."""
  return _MODELS[name].__module__.rsplit('.', 1)[-1]


def create_model(name: str, **kwargs) -> nnx.Module:
  """Builds model `name`; kwargs are the constructor's (num_classes, dtype, rngs, ...).

  The layers keep float32 weights for any computation dtype; a float64 model (JAX's 64-bit mode:
  the reference precision of benchmarks/reference_check.py) holds its weights and statistics in
  float64 too, so that its optimizer steps are float64 steps."""
  if name not in _MODELS:
    raise UnknownModelError(
        f'unknown model {name!r}; known models: {", ".join(available_models())}')
  model = _MODELS[name](**kwargs)
  if kwargs.get('dtype') == jnp.float64:
    nnx.update(model, jax.tree.map(
        lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x,
        nnx.state(model)))
  return model


def trace(name: str, *, image_size: int, in_channels: int, **kwargs):
  """Builds model `name` abstractly (no weights) and runs one image through it in evaluation mode.

  Cheap for any size of network, and raises every `GeometryError` a real run would, so callers
  check a config before building weights or touching files. Returns (abstract model, output).
  """
  abstract = nnx.eval_shape(lambda: create_model(name, image_size=image_size,
                                                 in_channels=in_channels, rngs=nnx.Rngs(0),
                                                 **kwargs))
  graphdef, state = nnx.split(abstract)

  def forward(state, images):
    model = nnx.merge(graphdef, state)
    model.eval()
    return model(images)

  image = jax.ShapeDtypeStruct((1, image_size, image_size, in_channels), jnp.float32)
  return abstract, jax.eval_shape(forward, state, image)

"""Name -> constructor registry (timm's `create_model`), so configs name models by string.

Each family file registers its constructors with `@register`; `cnns/__init__.py` imports the family
files so that importing `cnns` fills the registry.
"""

from typing import Callable

from flax import nnx

_MODELS: dict[str, Callable[..., nnx.Module]] = {}


class UnknownModelError(ValueError):
  """A model name that no family registered."""


def register(name: str):
  """Class or function decorator adding a model constructor under `name`."""

  def wrap(constructor):
    if name in _MODELS:
      raise ValueError(f'model {name!r} registered twice')
    _MODELS[name] = constructor
    return constructor

  return wrap


def available_models() -> list[str]:
  return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nnx.Module:
  """Builds model `name`; kwargs are the constructor's (num_classes, dtype, rngs, ...)."""
  if name not in _MODELS:
    raise UnknownModelError(
        f'unknown model {name!r}; known models: {", ".join(available_models())}')
  return _MODELS[name](**kwargs)

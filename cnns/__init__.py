"""Flax NNX models of the classic CNNs, one family per file, created by name.

Importing this package imports no data or training code (and no TensorFlow). Every module here
that is not one of the shared ones below is a family file, imported so that its `@register`s run:
a new network is one new file (and its config), with no list to extend.
"""

import importlib
import pkgutil

# Imported first for its side effect, tracing in linear time (cnns/tracing.py): families may trace
# on import.
from cnns import tracing  # noqa: F401
from cnns.layers import GeometryError
from cnns.registry import UnknownModelError, available_models, create_model, family, trace

SHARED_MODULES = ('layers', 'published', 'registry', 'summary', 'tracing', 'visualization')
for _family in pkgutil.iter_modules(__path__):
  if _family.name not in SHARED_MODULES:
    importlib.import_module(f'{__name__}.{_family.name}')

__all__ = ['GeometryError', 'UnknownModelError', 'available_models', 'create_model', 'family',
           'trace']

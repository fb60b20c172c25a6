"""Evaluation views: how one pass of a protocol shows each image to the model, one file per kind.

A view file registers its kind (`@register`): the TensorFlow op that turns an encoded photograph
into the pass's input, how many views of an image it makes, the `--crops` value that asks for it
and what evaluate.py prints. evaluate.py's protocols (app/evaluation.py), the photograph sources'
passes (input_pipeline/photographs.py) and their checks all read this registry, so a new test-time
protocol is one new file here, with no list to extend. Every module of this package except
`registry` is a view file, imported here so that its `@register` runs; the ops import TensorFlow
only when a pass runs them, so a run on a dataset without TensorFlow imports none.
"""

import importlib
import pkgutil

from input_pipeline.views.registry import DENSE, ViewKind, by_crops, get, names, register

for _view in pkgutil.iter_modules(__path__):
  if _view.name != 'registry':
    importlib.import_module(f'{__name__}.{_view.name}')

__all__ = ['DENSE', 'ViewKind', 'by_crops', 'get', 'names', 'register']

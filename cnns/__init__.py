"""Flax NNX models of the classic CNNs, one family per file, created by name.

Importing this package imports no data or training code (and no TensorFlow).
"""

from cnns import alexnet, lenet, vgg  # noqa: F401  (registers their models)
from cnns.registry import UnknownModelError, available_models, create_model

__all__ = ['UnknownModelError', 'available_models', 'create_model']

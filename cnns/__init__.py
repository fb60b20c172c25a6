"""Flax NNX models of the classic CNNs, one family per file, created by name.

Importing this package imports no data or training code (and no TensorFlow).
"""

# Imported for their side effects: tracing in linear time (cnns/tracing.py), then each family file
# registers its models.
from cnns import tracing  # noqa: F401  (first: families may trace on import)
from cnns import (alexnet, alphago, googlenet, inception_resnet, lenet, lenet1998,  # noqa: F401
                  pattern, resnet, vgg)
from cnns.layers import GeometryError
from cnns.registry import UnknownModelError, available_models, create_model, trace

__all__ = ['GeometryError', 'UnknownModelError', 'available_models', 'create_model', 'trace']

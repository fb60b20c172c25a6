"""Linear-time tracing of NNX models: a narrow fix for a quadratic cost in this JAX and Flax.

`variable[...] = value` (how NNX counts RNG draws while building a model, and how BatchNorm writes
its running statistics) reaches `Variable.set_value`, which probes `value.sharding`. On a tracer that
attribute raises an AttributeError whose message JAX builds by walking every equation traced so far
(jax-ml/jax#40041), so tracing a model costs time quadratic in its layers: building
Inception-ResNet-v2 abstractly took 9.1 s on a 2-core CPU, 1.9 s with this fix.

The fix: a whole-array assignment of a traced value of the variable's own shape and dtype replaces
the value directly, which is what `set_value` ends up doing for it; every other assignment is
Flax's own. Installed on import of `cnns`.
"""

import jax
from flax import nnx

_flax_setitem = nnx.Variable.__setitem__


def _setitem(self, key, value):
  if key is Ellipsis and isinstance(value, jax.core.Tracer):
    # Read defensively: a Flax without these internals simply keeps its own path.
    current = getattr(self, 'get_raw_value', lambda: None)()
    hooks = getattr(self, '_var_metadata', {'on_set_value': None})
    if (isinstance(current, jax.Array) and 'on_set_value' not in hooks
        and value.shape == current.shape and value.dtype == current.dtype):
      self.set_value(value)  # No index: replaces the value, no `.sharding` probe.
      return
  _flax_setitem(self, key, value)


nnx.Variable.__setitem__ = _setitem

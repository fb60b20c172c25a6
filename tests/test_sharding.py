"""Data parallelism computes what one device computes: the train and eval steps on 1 and 8 devices.

What is defined on every CPU, and so what is asserted (measurements: README, "Reproducibility"):
- In float64 the sharded steps are the one-device steps: losses, parameters, BatchNorm running
  statistics and a masked evaluation after several SGD steps agree to a few float64 roundings
  (measured 5e-16 relative; asserted 1e-12).
- float32 (train.py's own runs on 1 and 8 devices, tests/test_cli.py) compares only the first
  forward pass. Later steps are not: a float32 rounding difference (another summation order on
  another device count or another CPU's vector width) can flip the sign of a ReLU input that lies
  within 1e-6 of zero, and ReLU's gradient jumps there. One such flip among 131,072 activations
  changed ResNet-18's whole gradient by 3e-3. That test also shows per-device BatchNorm normalising
  each device's shard by its own statistics.
"""

import numpy as np

from tests.conftest import run_program

DEVICES = 8


def test_eight_devices_compute_what_one_device_computes(tmp_path):
  """One run of tests/sharded_steps.py in a process with eight fake devices, its results compared
  in float64 (one test: they are one computation's outputs)."""
  path = tmp_path / 'steps.npz'
  done = run_program('-m tests.sharded_steps', str(path), num_devices=DEVICES, timeout=900)
  assert done.returncode == 0, done.stderr
  results = dict(np.load(path))
  assert int(results['devices']) == DEVICES
  for key in ('losses', 'params', 'batch_stats', 'eval'):  # float64: the steps are the same.
    one, eight = results[f'one_float64/{key}'], results[f'all_float64/{key}']
    assert one.dtype == np.float64 and np.isfinite(one).all(), key
    np.testing.assert_allclose(eight, one, rtol=1e-12, atol=1e-12 * np.abs(one).max(),
                               err_msg=key)
  # The masked padding is not counted.
  assert results['one_float64/eval'][2] == results['all_float64/eval'][2] == 32 - 5

"""The benchmarks run (on tiny inputs: their timings mean nothing here, only that they work)."""

import numpy as np

from tests import ilsvrc_fixture
from tests.conftest import run_program


def test_input_pipeline_benchmark_on_a_directory_of_jpegs(tmp_path):
  rng = np.random.default_rng(0)
  for k in range(6):
    (tmp_path / f'photo_{k}.jpg').write_bytes(ilsvrc_fixture.encode(rng, 120 + k, 160, 'RGB'))
  # A new process: the benchmark forks one per core, which the test process, running JAX's
  # threads, must not.
  result = run_program('-m benchmarks.input_pipeline', f'--images={tmp_path}', '--num_images=40',
                       '--repeats=1')
  assert result.returncode == 0, result.stderr
  rows = result.stdout.splitlines()[-4:]
  assert [row.split('  ')[0] for row in rows] == [
      'PIL, process per core (baseline)', 'tf.data, decode whole then crop',
      'tf.data, crop only, antialiased resize', 'tf.data, crop only (this project)']
  assert rows[0].endswith('1.00x')

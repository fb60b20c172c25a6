r"""The training step's most expensive XLA operations, from a `profile_steps` trace.

  python train.py --config=... --workdir=DIR --config.profile_steps='(10,15)'
  python -m benchmarks.top_ops DIR [--top=15] [--module=jit_train_step]

Reads the newest `*.trace.json.gz` under DIR (or the file given): the trace that TensorBoard's
profile plugin and Perfetto (ui.perfetto.dev opens it directly) show. Sums the time of each XLA
operation of `--module` on the device (GPU or TPU streams; on the CPU backend, XLA's host threads)
and prints the largest with their share: where a step's time goes, by fusion.
"""

import collections
import glob
import gzip
import json
import os

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer('top', 15, 'Operations to list.', lower_bound=1)
flags.DEFINE_string('module', 'jit_train_step', 'The jitted function (HLO module) to break down.')


def newest_trace(path: str) -> str:
  if os.path.isfile(path):
    return path
  traces = glob.glob(os.path.join(path, '**', '*.trace.json.gz'), recursive=True)
  if not traces:
    raise SystemExit(f'error: no *.trace.json.gz under {path}: was the run given '
                     '--config.profile_steps?')
  return max(traces, key=os.path.getmtime)


def op_times(trace: dict, module: str) -> tuple[dict[str, float], str]:
  """Microseconds per XLA operation of `module`, on the device lanes if the trace has any."""
  names = {e['pid']: e['args']['name'] for e in trace['traceEvents']
           if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  ops = [e for e in trace['traceEvents'] if e.get('ph') == 'X'
         and e.get('args', {}).get('hlo_module', '').startswith(module) and 'hlo_op' in e['args']]
  device = [e for e in ops if names.get(e['pid'], '').startswith('/device:')]
  lanes = 'device' if device else 'host (CPU backend)'
  times = collections.Counter()
  for event in device or ops:
    times[event['args']['hlo_op']] += event['dur']
  return times, lanes


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('usage: python -m benchmarks.top_ops WORKDIR_OR_TRACE_FILE')
  path = newest_trace(argv[1])
  try:
    with gzip.open(path, 'rt', encoding='utf-8') as f:
      trace = json.load(f)
  except (OSError, EOFError, ValueError) as e:
    raise SystemExit(f'error: cannot read {path}: {e}') from None
  times, lanes = op_times(trace, FLAGS.module)
  if not times:
    raise SystemExit(f'error: no operations of {FLAGS.module} in {path}')
  total = sum(times.values())
  print(f'{path}: {FLAGS.module}, {len(times)} operations, {total / 1e3:.1f} ms on the {lanes}')
  print(f'{"operation":<48}{"ms":>10}{"share":>8}')
  for name, us in times.most_common(FLAGS.top):
    print(f'{name[:47]:<48}{us / 1e3:>10.2f}{us / total:>8.1%}')


if __name__ == '__main__':
  app.run(main)

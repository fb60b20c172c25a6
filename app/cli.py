"""What the entry points share on the command line: the config, workdir and cluster flags, `start`,
and the ways a run ends early, each reported as one line with its exit status (training/errors.py):
user and environment errors (2), divergence (3), a stop by a signal after saving (75), a job that
lost one of its processes (69). Anything else is a bug: a traceback."""

import contextlib
import os
import signal
import sys
import warnings

import jax
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

import cnns
import input_pipeline
from cnns import published
from app import stops
from app.assembly import config_fields
from training import distributed
from training.errors import ConfigError, RunEnded, Stopped

FLAGS = flags.FLAGS
DEFAULT_CACHE_DIR = os.path.join(os.environ.get('XDG_CACHE_HOME') or '~/.cache', 'cnns', 'jax')
PER_PROCESS_FLAGS = ('process_id', 'coordinator_address', 'num_processes', 'compilation_cache_dir',
                     'join_timeout_seconds')
USER_ERRORS = (ConfigError, input_pipeline.DataError, cnns.UnknownModelError, cnns.GeometryError,
               published.WeightsError)


def run_reporting_errors(fn, *args, **kwargs):
  """Calls `fn(*args, **kwargs)`; a user or environment error, or a run ended early, becomes one
  line on stderr and the documented exit status."""
  try:
    return fn(*args, **kwargs)
  except USER_ERRORS as e:
    fail(e)
  except RunEnded as e:
    fail(e, prefix='stopped' if e.status == Stopped.status else 'error', status=e.status)
  except OSError as e:  # Full disk, read-only or vanished files outside the checkpoints.
    fail(f'{e.strerror or e}' + (f': {e.filename}' if e.filename else ''))
  except MemoryError as e:
    fail(f'out of memory ({str(e) or type(e).__name__}); use a smaller batch_size or image_size')
  except jax.errors.JaxRuntimeError as e:
    if distributed.lost_a_process(e):
      distributed.abandon(
          'error: this job lost one of its processes (XLA: '
          + ' '.join(str(e).split())[-160:] + '): see the other processes\' logs; start the '
          'whole job again with the same command to resume from its newest checkpoint')
    # A config whose largest activation fits (app/assembly.py) can still need more than the
    # machine has once compiled; what was saved before is intact.
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    fail(f'out of memory ({str(e).splitlines()[0]}); use a smaller batch_size or image_size')


def define_flags() -> None:
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/<model>.py).',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
  flags.DEFINE_string(
      'compilation_cache_dir', os.environ.get('JAX_COMPILATION_CACHE_DIR', DEFAULT_CACHE_DIR),
      'JAX\'s persistent compilation cache: a restarted run loads what it compiled before '
      'instead of compiling it again. Empty: off. Default: $JAX_COMPILATION_CACHE_DIR if set.')
  flags.DEFINE_string('coordinator_address', None,
                      'HOST:PORT of process 0, where JAX\'s coordinator service listens.')
  flags.DEFINE_integer('num_processes', None, 'Processes in the job (with --coordinator_address).')
  flags.DEFINE_integer('process_id', None, 'This process\'s index, 0 .. num_processes - 1.')
  flags.DEFINE_integer('join_timeout_seconds', 300,
                       'How long the processes of a job wait for all of them to start.')
  flags.mark_flags_as_required(['config', 'workdir'])


def start(argv: list[str], *, arguments: str | None = None, required: tuple[str, ...] = ()) -> None:
  """What every entry point does first: refuse stray (or missing: `arguments` names them)
  positional arguments and missing `required` flags, quiet absl's logging, set up JAX."""
  if arguments is None and len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if arguments is not None and len(argv) < 2:
    raise app.UsageError(f'name {arguments} after the flags')
  for flag in required:
    if not FLAGS[flag].value:
      fail(f'--{flag} is required')
  absl_logging.set_verbosity(absl_logging.WARNING)
  run_reporting_errors(set_up_jax)


def fail(message, *, prefix: str = 'error', status: int = ConfigError.status) -> None:
  """Ends the command with one line on stderr, if there still is one, and `status`.

  After a stop, what is left to do is exit, so a second signal (a repeated Ctrl-C, a scheduler
  that signals twice) is ignored from here rather than turning the saved stop's 75 into a kill. A
  process of a multi-process job ends at once: JAX's exit handler would wait at a shutdown barrier
  for the other processes, which a lost one never reaches, and then abort."""
  if status == Stopped.status:
    for signum in stops.SIGNALS:
      signal.signal(signum, signal.SIG_IGN)
  line = f'{prefix}: ' + ' '.join(str(message).split())
  if jax.distributed.is_initialized():
    distributed.abandon(line, status)
  with contextlib.suppress(OSError):  # No console any more (a closed terminal or pipe).
    print(line, file=sys.stderr, flush=True)
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with config-file and override mistakes turned into one line, not a traceback.

  ml_collections loads the config file and applies `--config.<field>` overrides while parsing and
  reports a missing file only when the config is first read, so both happen here.
  """
  for arg in argv[1:]:
    if arg.startswith('--config='):
      path = arg.split('=', 1)[1].split(':', 1)[0]
      if not os.path.isfile(path):
        fail(f'config file {path} does not exist')
  try:
    remaining = FLAGS(argv)
    FLAGS.config  # pylint: disable=pointless-statement  (forces the deferred load)
  except flags.Error as e:
    fail(e)
  except AttributeError as e:  # ml_collections' message for a field the locked config lacks.
    fail('unknown config field ' + str(e).encode().decode('unicode_escape'))
  except (KeyError, TypeError, ValueError, OSError) as e:
    fail(f'bad --config value: {e}')
  except (SyntaxError, NameError, ImportError) as e:  # The config file's own mistakes.
    fail(f'the config file does not load: {type(e).__name__}: {e}')
  return remaining


def enable_compilation_cache(directory: str | None) -> None:
  """Turns JAX's persistent compilation cache on in `directory` (off when empty), for every
  program however quickly it compiles, so that a restart compiles nothing it compiled before.

  The cache only saves time, so it never stops a run: a directory that cannot be created or
  written turns it off with one note, and an unreadable entry (a run killed while JAX wrote it:
  JAX writes entries in place) is a miss, compiled again, without JAX's warning each time.
  """
  jax.config.update('jax_compilation_cache_dir', None)
  if not directory:
    return
  directory = os.path.expanduser(directory)
  try:
    if directory.startswith('~'):
      raise OSError(f'no home directory to expand {directory}')
    os.makedirs(directory, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
      raise PermissionError(f'cannot write in {directory}')
  except OSError as e:
    print(f'note: compilation cache off ({e}); set --compilation_cache_dir to a writable '
          'directory, or to nothing', file=sys.stderr)
    return
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  warnings.filterwarnings('ignore', message='Error reading persistent compilation cache entry')


def set_up_jax() -> None:
  """What train.py and evaluate.py do before anything compiles: the compilation cache, then
  joining the job's other processes, if any, and checking that they were all started alike
  (training/distributed.py)."""
  enable_compilation_cache(FLAGS.compilation_cache_dir)
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                         FLAGS.join_timeout_seconds)
  if jax.process_count() > 1:
    distributed.check_agreement(job_description())


def job_description() -> dict[str, dict]:
  """What every process of a job must share: the code, the config's fields and the flags given
  (those that name the process or its cache aside)."""
  config = {}
  if 'config' in FLAGS and FLAGS.config is not None:
    config = {field: repr(value) for field, value in config_fields(FLAGS.config.to_dict())}
  flags_given = {name: str(FLAGS[name].value) for name in FLAGS
                 if FLAGS[name].present and not name.startswith('config')
                 and name not in PER_PROCESS_FLAGS}
  return {'code': distributed.code_version(), 'config': config, 'flags': flags_given}

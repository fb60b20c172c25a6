"""The entry points run inside the test process, as `python <script> ARGS` would run them.

`run_cli('train.py', '--config=...', ...)` executes the script as `__main__` (runpy), so the
script's own `app.run(main, flags_parser=...)` line parses the flags and calls `main`, as in a
new process: absl usage errors exit 1 with their message, `cli.run_reporting_errors` its one
`error:` line and status, and a bug a traceback with status 1. It returns what
`subprocess.run(..., capture_output=True, text=True)` returns: `.returncode`, `.stdout`, `.stderr`
(Python's `sys.stdout`/`sys.stderr` and absl's log handler; output written to the file
descriptors by C++ code is not captured). It saves the imports (TensorFlow, JAX: 5 to 10 s a
process) and reuses what JAX compiled; it runs on the test process's devices (one CPU device),
without a compilation cache unless a flag names one.

What a new process would not inherit is put back after each run: absl's flags (each run starts
with only the libraries' flags, as the script defines its own on start), the warning filters
(Python's defaults during the run, warnings printed to its stderr), the environment, `sys.argv`,
the working directory, the SIGINT/SIGTERM/SIGHUP handlers, the root logger (absl's handler, to the
run's stderr during the run, as app.run installs it) and the process name absl's first `app.run`
sets.

    python -m tests.cli_runner '[["train.py", ARG, ...], ...]'

runs several commands in one new process, for another number of fake devices than the test
process's (XLA_FLAGS is read at start: conftest.py's `run_in_one_process`), and prints their
results as a JSON list.
"""

import contextlib
import io
import json
import logging
import os
import runpy
import signal
import subprocess
import sys
import traceback
import warnings

from absl import command_name, flags
from absl import logging as absl_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
# Modules whose flags belong to an entry point: the repository's (app/cli.py, scripts imported by
# tests, a run's script). Libraries' flags (absl, TensorFlow, Orbax) stay registered.
_OWN_MODULES = {name.removesuffix('.py') for name in os.listdir(ROOT) if name[0] != '.'}
# As tests/conftest.py's subprocess_env: the session's compilation cache, never the user's.
ENVIRONMENT = {'JAX_COMPILATION_CACHE_DIR': os.environ.get('CNNS_TEST_COMPILATION_CACHE', '')}


def run_cli(script: str, *args: str) -> subprocess.CompletedProcess:
  """Runs `script` (a file relative to the repository, 'train.py', or a module run with -m,
  'cnns.summary') with `args` in this process; returns its exit status and output."""
  argv = [script, *args]
  stdout, stderr = io.StringIO(), io.StringIO()
  with _as_a_new_process(argv, stderr), contextlib.redirect_stdout(stdout), \
      contextlib.redirect_stderr(stderr):
    try:
      if script.endswith('.py'):
        runpy.run_path(os.path.join(ROOT, script), run_name='__main__')
      else:  # Run again if the tests imported it: not news, as it would be in a new process.
        warnings.filterwarnings('ignore', '.* found in sys.modules', RuntimeWarning)
        runpy.run_module(script, run_name='__main__', alter_sys=True)
      returncode = 0
    except SystemExit as e:
      returncode = _exit_status(e.code)
    except Exception:  # pylint: disable=broad-except  (a bug: the traceback Python would print)
      traceback.print_exc()
      returncode = 1
  return subprocess.CompletedProcess(argv, returncode, stdout.getvalue(), stderr.getvalue())


def _exit_status(code) -> int:
  """The status `sys.exit(code)` gives a process; a message is printed, as Python does."""
  if code is None or isinstance(code, int):
    return code or 0
  print(code, file=sys.stderr)
  return 1


@contextlib.contextmanager
def _as_a_new_process(argv: list[str], stderr: io.StringIO):
  saved_environ, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
  handlers = {signum: signal.getsignal(signum)
              for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
  log_handlers, log_level = logging.root.handlers[:], logging.root.level
  log_stream = absl_logging.get_absl_handler().python_handler.setStream(stderr)
  absl_logging.use_absl_handler()  # As app.run's first call does (not again in this process).
  name = _process_name()
  os.environ.update(ENVIRONMENT)
  sys.argv = list(argv)
  os.chdir(ROOT)
  try:
    with _flags_of_a_new_process(), _warnings_of_a_new_process():
      yield
  finally:
    for key in set(os.environ) - set(saved_environ):
      del os.environ[key]
    for key, value in saved_environ.items():
      if os.environ.get(key) != value:  # Only what changed: threads may be reading the rest.
        os.environ[key] = value
    sys.argv = saved_argv
    os.chdir(saved_cwd)
    for signum, handler in handlers.items():
      signal.signal(signum, handler)
    absl_logging.get_absl_handler().python_handler.setStream(log_stream)
    logging.root.handlers[:] = log_handlers
    logging.root.setLevel(log_level)
    if name:
      command_name.set_kernel_process_name(name)


@contextlib.contextmanager
def _warnings_of_a_new_process():
  """Python's default warning filters (not pytest's), and warnings printed to `sys.stderr`."""
  with warnings.catch_warnings():
    warnings.resetwarnings()
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning,
                     DeprecationWarning):
      warnings.filterwarnings('ignore', category=category)
    warnings.filterwarnings('default', category=DeprecationWarning, module='__main__')
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: (
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line)))
    yield


def _process_name() -> str | None:
  try:
    with open('/proc/self/comm', encoding='utf-8') as f:
      return f.read().strip()
  except OSError:
    return None


def _own_flags() -> dict:
  """The entry points' flags now registered, by name, with the `--config.<field>` overrides
  that ml_collections registers while parsing."""
  own = {id(flag) for module, defined in FLAGS.flags_by_module_dict().items()
         if _is_own(module) for flag in defined}
  names = {name for name in FLAGS if id(FLAGS[name]) in own}
  return {name: FLAGS[name] for name in FLAGS if name.split('.')[0] in names}


def _is_own(module: str) -> bool:
  """Whether the module that defined a flag is an entry point. absl names a run's `__main__` by
  its `sys.argv[0]`, the script's path."""
  return module.split('.')[0] in _OWN_MODULES or module.startswith(ROOT + os.sep)


@contextlib.contextmanager
def _flags_of_a_new_process():
  """absl's registry without the entry points' flags while the script runs (it defines its own,
  as in a new process); afterwards the run's are removed and those registered before put back,
  with the values and parsed state of the flags that stayed."""
  saved = _own_flags()
  saved_ids = {id(flag) for flag in saved.values()}
  modules = [{key: [flag for flag in defined if id(flag) in saved_ids]
              for key, defined in by_module.items()} for by_module in _module_dicts()]
  was_parsed = FLAGS.is_parsed()
  values = {name: (flag.value, flag.using_default_value, flag.present)
            for name, flag in ((n, FLAGS[n]) for n in FLAGS) if name not in saved}
  for name in saved:
    delattr(FLAGS, name)
  try:
    yield
  finally:
    for name in _own_flags():
      delattr(FLAGS, name)
    for name, flag in saved.items():
      FLAGS[name] = flag
    for by_module, register in zip(modules, (FLAGS.register_flag_by_module,
                                             FLAGS.register_flag_by_module_id,
                                             FLAGS.register_key_flag_for_module)):
      for key, defined in by_module.items():
        for flag in defined:
          register(key, flag)
    if was_parsed:
      for name, (value, default, present) in values.items():
        if name in FLAGS:
          FLAGS[name].value, FLAGS[name].using_default_value, FLAGS[name].present = (
              value, default, present)
    else:
      FLAGS.unparse_flags()


def _module_dicts() -> tuple[dict, dict, dict]:
  return (FLAGS.flags_by_module_dict(), FLAGS.flags_by_module_id_dict(),
          FLAGS.key_flags_by_module_dict())


if __name__ == '__main__':
  print(json.dumps([vars(run_cli(*command)) for command in json.loads(sys.argv[1])]))

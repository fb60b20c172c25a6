"""Debian's system Python with torchvision (python3-torchvision; the virtual environment has no
PyTorch), which writes the PyTorch files and reference outputs the tests read.

One child process per test process imports torch once and runs each script sent to it, as
`python3 -c SCRIPT ARGS` would in the given folder (a fresh `__main__` namespace each time).
"""

import json
import subprocess

PYTHON = '/usr/bin/python3'
_SERVE = r'''
import contextlib, json, os, sys, traceback
import torch, torchvision  # Once: the scripts below reuse them.
print('ready', flush=True)
for line in sys.stdin:
  job = json.loads(line)
  try:
    os.chdir(job['cwd'])
    sys.argv = ['-c', *job['args']]
    with contextlib.redirect_stdout(sys.stderr):  # Stdout carries the replies.
      exec(compile(job['script'], '<script>', 'exec'), {'__name__': '__main__'})
    error = None
  except BaseException:
    error = traceback.format_exc()
  print(json.dumps(error), flush=True)
'''
_child: subprocess.Popen | None = None


def start() -> bool:
  """Starts the child if it is not running; whether it runs (False: no torchvision)."""
  global _child
  if _child is None or _child.poll() is not None:
    try:
      _child = subprocess.Popen([PYTHON, '-c', _SERVE], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    except OSError:
      return False
    if _child.stdout.readline() != 'ready\n':  # Its traceback went to stderr.
      _child.wait()
      return False
  return True


def run(script: str, *args: str, cwd) -> None:
  """Runs `script` with `args` in the folder `cwd`; its traceback if it fails."""
  assert start(), f'{PYTHON} cannot import torchvision'
  _child.stdin.write(json.dumps({'script': script, 'args': args, 'cwd': str(cwd)}) + '\n')
  _child.stdin.flush()
  error = json.loads(_child.stdout.readline() or '"the process ended"')
  assert error is None, f'{PYTHON} -c SCRIPT {" ".join(args)} in {cwd}:\n{error}'


def stop() -> None:
  global _child
  if _child is not None:
    _child.stdin.close()
    _child.wait()
    _child = None

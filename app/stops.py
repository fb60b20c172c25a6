"""Stop requests: SIGTERM, SIGINT and SIGHUP (a closed terminal or ssh connection), in one process
or several.

A stop is always a save (README, "When things go wrong"): the loop asks `requested` after each
step, saves and raises `Stopped`. Before training starts there is nothing new to save, so a signal
then stops set-up where it is. With several processes JAX's own SIGTERM handler feeds the
checkpointer's `reached_preemption` (every process must save the same step, which JAX's
preemption sync picks), which the loop reports here with `request`; SIGINT and SIGHUP are turned
into a SIGTERM to this process, so that they take the same way.
"""

import os
import signal

import jax

from training.errors import Stopped

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopRequests:
  """Installs the handlers on construction; `close` restores the previous ones."""

  def __init__(self):
    self.reason: str | None = None  # What asked to stop: 'SIGTERM', 'a preemption notice', ...
    self._training = False
    self._previous = {}
    single = jax.process_count() == 1
    for signum in SIGNALS if single else (signal.SIGINT, signal.SIGHUP):
      self._previous[signum] = signal.signal(
          signum, self._on_signal if single else self._as_sigterm)

  @property
  def requested(self) -> bool:
    return self.reason is not None

  def training_started(self) -> None:
    """From here on a signal is answered after the current step, by a save."""
    self._training = True

  def request(self, reason: str) -> None:
    if self.reason is None:  # A second request while saving changes nothing.
      self.reason = reason

  def _on_signal(self, signum, frame) -> None:
    del frame
    if self.reason:
      return
    self.request(signal.Signals(signum).name)
    if not self._training:  # Set-up has nothing to save: stop it where it is.
      raise Stopped(f'stopped by {self.reason} before training started; rerun the same command '
                    'to start')

  @staticmethod
  def _as_sigterm(signum, frame) -> None:
    """Several processes: JAX's preemption notice, which only SIGTERM gives."""
    del signum, frame
    os.kill(os.getpid(), signal.SIGTERM)

  def close(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

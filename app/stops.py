"""Stop requests: SIGTERM, SIGINT and SIGHUP (a closed terminal or ssh connection) in a single
process, JAX's preemption notice in several.

A stop is always a save (README, "When things go wrong"): the loop asks `requested` after each
step, saves and raises `Stopped`. Before training starts there is nothing new to save, so a signal
then stops set-up where it is. With several processes JAX's own SIGTERM handler feeds the
checkpointer's `reached_preemption`, which the loop reports here with `request`.
"""

import signal

import jax

from training.errors import Stopped

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopRequests:
  """Installs the handlers on construction (single process); `close` restores the previous
  ones."""

  def __init__(self):
    self.reason: str | None = None  # What asked to stop: 'SIGTERM', 'a preemption notice', ...
    self._training = False
    self._previous = {}
    if jax.process_count() == 1:
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._on_signal)

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

  def close(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

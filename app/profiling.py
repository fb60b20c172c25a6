"""`profile_steps` = (start, stop): a jax.profiler trace of steps start .. stop - 1.

Process 0 only (one trace per job). A trace that cannot be written costs the run nothing but a
note.
"""

import jax


class StepProfiler:

  def __init__(self, steps: tuple, directory: str, note):
    self._steps = tuple(steps) if jax.process_index() == 0 else ()
    self._directory = directory
    self._note = note
    self._active = False

  def before_step(self, step: int, state) -> None:
    """Starts the trace before step `start`, stops it before step `stop`."""
    if not self._steps:
      return
    start, stop = self._steps
    if step == start and not self._active:
      try:
        jax.profiler.start_trace(self._directory)
        self._active = True
      except Exception as error:  # pylint: disable=broad-except
        self._failed(error)
    elif step == stop and self._active:
      self.stop(state, step)

  def stop(self, state, step: int) -> None:
    """Ends a trace still running (training ended inside the profiled steps) at `step`."""
    if not self._active:
      return
    self._active = False
    try:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
    except Exception as error:  # pylint: disable=broad-except
      self._failed(error)
      return
    self._note(f'profile of steps {self._steps[0]} to {step - 1} written to {self._directory}')

  def _failed(self, error: Exception) -> None:
    self._note(f'note: no profile written to {self._directory}: ' + ' '.join(str(error).split()))

"""The ways a run ends early, each with its exit status (README, "When things go wrong").

  2   ConfigError: a config value, the workdir or the environment cannot work (one `error:` line;
      nothing in the workdir was changed, or, for a failed save, the newest checkpoint is intact).
  3   Diverged: the loss or the parameters became non-finite; nothing non-finite was saved.
  69  A job of several processes lost one (killed, its host gone): the others end at once with one
      line; the newest checkpoint is intact, and starting the job again resumes from it
      (training/distributed.py; 69 is sysexits' EX_UNAVAILABLE).
  75  Stopped: SIGTERM, SIGINT or SIGHUP (or JAX's preemption notice); the current step was saved,
      and running the same command again resumes (75 is sysexits' EX_TEMPFAIL: "try again
      later").
"""


class ConfigError(ValueError):
  """A config value, workdir or environment that cannot work; the message says what to change."""
  status = 2


class NonFiniteError(ArithmeticError):
  """A state with NaN or infinite numbers was about to be saved."""

  def __init__(self, step: int):
    super().__init__(f'non-finite state at step {step}')
    self.step = step


class RunEnded(Exception):
  """Training stopped before its last step, for a reason the message gives in one line."""
  status = 1


class Diverged(RunEnded):
  status = 3


class Stopped(RunEnded):
  status = 75

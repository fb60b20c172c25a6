"""The error a user can cause through the config or the workdir."""


class ConfigError(ValueError):
  """A config value or a workdir that cannot work; the message says what to change."""

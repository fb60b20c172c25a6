"""Orbax checkpoints of the train state plus the position in the data order.

The data order is a pure function of (seed, epoch, data shards) and the global batch size, so the
restored step fixes the position in it: epoch = step // steps_per_epoch, then skip
step % steps_per_epoch batches. Those three are saved beside the state and checked on restore, so
that a restarted run trains on exactly the batches an uninterrupted one would have.
"""

import jax
import orbax.checkpoint as ocp

from training.errors import ConfigError


class Checkpointer:
  """Saves every `every_steps` steps (and when forced), keeps the last `keep`, restores the latest."""

  def __init__(self, directory: str, *, every_steps: int, keep: int, create: bool = True):
    self._every_steps = every_steps
    self._manager = ocp.CheckpointManager(
        directory, item_names=('state', 'data'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore_latest(self, state, data_position: dict | None = None):
    """(state, position) from the latest checkpoint, or None when there is none.

    `state` (arrays or ShapeDtypeStructs) gives the tree, shapes, dtypes and shardings;
    `data_position` the expected seed, global batch size and data shards, which must match the
    saved ones for training to resume in the same order (None: not checked, for evaluation).
    """
    step = self._manager.latest_step()
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax raises many types for a foreign or damaged checkpoint.
      raise ConfigError(f'cannot restore checkpoint {self._manager.directory / str(step)} '
                        f'({type(e).__name__}); it was written by another model or config, or is '
                        'damaged: use another --workdir') from e
    saved = restored['data']
    for key in data_position or {}:
      if saved.get(key) != data_position[key]:
        raise ConfigError(f'checkpoint at step {step} was written with {key}={saved.get(key)}, '
                          f'this run has {data_position[key]}; resume with the same value or use '
                          'another --workdir')
    return restored['state'], saved

  def maybe_save(self, step: int, state, data_position: dict, *, force: bool = False) -> None:
    if (force or step % self._every_steps == 0) and step != self._manager.latest_step():
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_position)), force=True)

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

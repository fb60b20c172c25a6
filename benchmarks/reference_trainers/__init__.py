"""The reference trainers that benchmarks/reference_check.py runs beside a config's train step:
one module each, named as `--reference` names it, so that another reference is one more file.

A reference runs its own code in a process of its own, `PYTHON -c SCRIPT DIRECTORY`: it reads
`args.json` (what `arguments` returns) and the batches from `batches.npz` in DIRECTORY, writes
its initial weights, announces its versions as a JSON line on stdout, and after each step writes
its state and announces `{"loss": ..., "rate": ...}` (the cross-entropy and the learning rate of
that step), going on when a line comes on stdin; after each dtype's training, once its model is
freed, it announces `{"trained": dtype}`. A module defines:

- PYTHON, SCRIPT: the interpreter and the program;
- NEEDS, INSTALL: what that interpreter must import, and how a user gets it;
- `arguments(config, steps_count, steps_per_epoch, dtypes) -> dict`: the reference's options for
  the config's recipe, or ConfigError where the reference cannot run that recipe;
- `initial(trainer) -> (params, batch_stats)`: the reference's initial weights, and
  `after(trainer, step) -> TrainState`: its state after `step` steps, both read from DIRECTORY
  (`trainer.directory`) into the config's model (`trainer.abstract`, `trainer.state`);
- `parts(config) -> ((name, state -> tree), ...)`: what of a TrainState is compared, by name,
  besides the parameters and BatchNorm statistics (optimizer state, averages).
"""

import importlib
import pkgutil

NAMES = tuple(sorted(module.name for module in pkgutil.iter_modules(__path__)))


def load(name: str):
  return importlib.import_module(f'{__name__}.{name}')

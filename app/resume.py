"""What a resume keeps: the config and data a checkpoint records, and the rules for resuming it.

A checkpoint's record holds the config that made it (with what -1 stood for resolved) and the
dataset's statistics, class names and fingerprint. A resume that would change what the saved state
or the position in the data order means is refused, naming the fields; other changes are allowed
and printed.
"""

import json

import jax

import input_pipeline
from training.errors import ConfigError

# Fields that fix what a checkpoint's state and position in the data order mean: a resume must
# keep them. Any other change (learning rate, epochs, cadence, ...) is allowed and printed.
MEANING_FIELDS = ('model', 'model_kwargs', 'dataset', 'image_size', 'num_classes', 'in_channels',
                  'input_convention', 'optimizer', 'ema_decay', 'ema_batch_stats', 'batch_size',
                  'seed', 'data_shards', 'shuffle_buffer_size', 'synthetic_train_examples')


def dataset_record(source: input_pipeline.Source) -> dict:
  """What predict.py needs of the dataset, saved with each checkpoint so that it needs no data:
  its channel statistics and class names."""
  return {'mean': list(source.spec.mean), 'std': list(source.spec.std),
          'class_names': list(source.class_names), 'fingerprint': source.fingerprint}


def resolved_config(config, architecture: dict) -> dict:
  """The config as a checkpoint records it: JSON types (tuples as lists, so that a comparison
  after the round trip is fair), the values that -1 stands for (classes, channels, data shards),
  and no field that only another dataset's source reads."""
  unused = input_pipeline.unused_config_fields(config)
  resolved = {**{k: v for k, v in config.to_dict().items() if k not in unused},
              'num_classes': architecture['num_classes'],
              'in_channels': architecture['in_channels'],
              'data_shards': input_pipeline.num_data_shards(config, jax.process_count())}
  return json.loads(json.dumps(resolved))


def check_resume(saved: dict, record: dict, step: int, data_changes) -> str:
  """Refuses a resume that changes a MEANING_FIELDS value, switches to or from the plateau
  schedule (whose state starts with the run), or reads other data than the checkpoint's (what
  `data_changes(its recorded fingerprint)` describes: `Source.data_changes`) unless the config's
  `accept_changed_data` is set; returns the other changes, printable.

  Checkpoints older than the saved config hold only the data position; those older than
  `input_convention` standardised with the dataset's statistics, those older than `ema_decay`
  averaged nothing, those older than `ema_batch_stats` no BatchNorm statistics.
  """
  config = record['config']
  before = ({'input_convention': 'dataset', 'ema_decay': 0.0, 'ema_batch_stats': False,
             **saved['config']}
            if saved.get('config') else
            {'seed': saved.get('seed'), 'data_shards': saved.get('data_shards'),
             'batch_size': saved.get('global_batch_size')})
  changed = {k: (before[k], config[k]) for k in before if k in config and before[k] != config[k]}
  refused = [k for k in MEANING_FIELDS if k in changed]
  if 'plateau' in changed.get('lr_schedule', ()):  # Its state starts with the run: no switch.
    refused.append('lr_schedule')
  data = data_changes(saved.get('dataset', {}).get('fingerprint'))
  if data and not config.get('accept_changed_data'):
    raise ConfigError(f'checkpoint at step {step} was trained on other files of '
                      f'{config["dataset"]}: {data}; that changes the data order and statistics: '
                      'restore the files, or add --config.accept_changed_data=True to resume on '
                      'these, or use another --workdir')
  if refused:
    raise ConfigError(
        f'checkpoint at step {step} was written with '
        + ', '.join(f'{k}={changed[k][0]}' for k in refused) + '; this run has '
        + ', '.join(f'{k}={changed[k][1]}' for k in refused)
        + ': that changes what the saved state or the data order means; resume with the same '
        'values or use another --workdir')
  return ', '.join([f'{k}: {a} -> {b}' for k, (a, b) in changed.items()]
                   + ([f'data: {data}'] if data else []))

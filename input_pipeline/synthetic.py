"""Random but learnable images that need neither files nor TensorFlow (benchmarks, GPU machines).

Each class has a fixed random template; an example is its class's template plus noise, so a model
can learn the task and training curves mean something, while shapes match the real dataset.
"""

from collections.abc import Iterator

import numpy as np

from input_pipeline import base

SPEC = base.DatasetSpec(num_classes=10, image_shape=(32, 32, 3), train_split='train',
                        eval_split='test', mean=(127.5,) * 3, std=(64.0,) * 3)


@base.register('synthetic')
class SyntheticSource(base.Source):

  @classmethod
  def from_config(cls, name, config, **kwargs):
    del name
    size, num_train, num_eval = (config.image_size, config.synthetic_train_examples,
                                 config.synthetic_eval_examples)
    channels = config.in_channels if config.in_channels > 0 else SPEC.image_shape[-1]
    num_classes = config.num_classes if config.num_classes > 0 else SPEC.num_classes
    # Every template and example is made at start.
    base.check_host_memory('synthetic', num_classes + num_train + num_eval, (size, size, channels))
    return cls(image_size=size, channels=channels, num_classes=num_classes, num_train=num_train,
               num_eval=num_eval, **kwargs)

  @classmethod
  def known_record(cls, name, config):
    channels = config.in_channels if config.in_channels > 0 else SPEC.image_shape[-1]
    classes = config.num_classes if config.num_classes > 0 else SPEC.num_classes
    return {'mean': SPEC.mean[:1] * channels, 'std': SPEC.std[:1] * channels,
            'class_names': [f'class {i}' for i in range(classes)]}

  def __init__(self, *, image_size: int, channels: int, num_classes: int, num_train: int,
               num_eval: int, seed: int, process_index: int, process_count: int,
               num_shards: int):
    self.spec = base.DatasetSpec(num_classes, (image_size, image_size, channels), 'train', 'test',
                                 SPEC.mean[:1] * channels, SPEC.std[:1] * channels)
    self.class_names = [f'class {i}' for i in range(num_classes)]  # As `known_record`'s.
    self.image_shape = self.spec.image_shape
    self.num_train_examples, self.num_eval_examples = num_train, num_eval
    self._seed = seed
    rng = np.random.default_rng(seed)
    # Templates in [32, 224) plus noise in [-32, 32): uint8 arithmetic that cannot wrap, fast
    # enough for ImageNet-sized sets.
    templates = rng.integers(32, 224, (num_classes, *self.image_shape), dtype=np.uint8)
    train_images, train_labels = self._examples(rng, templates, num_train)
    self._shards = {s: (train_images[part], train_labels[part])
                    for s in base.process_shards(num_shards, process_index, process_count)
                    for part in [base.process_slice(num_train, s, num_shards)]}
    eval_images, eval_labels = self._examples(rng, templates, num_eval)
    part = base.process_slice(num_eval, process_index, process_count)
    self._eval = eval_images[part], eval_labels[part]

  @staticmethod
  def _examples(rng, templates, n):
    labels = rng.integers(0, len(templates), n).astype(np.int32)
    images = templates[labels]
    # Noise images drawn from a pool of 256: drawing fresh random bytes for every pixel took
    # most of the set-up time at ImageNet sizes.
    pool = rng.integers(0, 64, (min(n, 256), *images.shape[1:]), dtype=np.uint8)
    images -= 32
    images += pool[rng.integers(0, len(pool), n)]
    return images, labels

  def train_batches(self, epoch, first_step, local_batch, steps_per_epoch) -> Iterator[base.Batch]:
    per_shard = local_batch // len(self._shards)
    orders = {s: np.random.default_rng(base.epoch_seed(self._seed, epoch, s)).permutation(
        len(labels)) for s, (_, labels) in self._shards.items()}
    for step in range(first_step, steps_per_epoch):
      parts = [(images[idx], labels[idx]) for s, (images, labels) in self._shards.items()
               for idx in [orders[s][step * per_shard:(step + 1) * per_shard]]]
      yield {'image': np.concatenate([p[0] for p in parts]),
             'label': np.concatenate([p[1] for p in parts])}

  def eval_batches(self, local_batch, num_steps, view=base.CENTRE) -> Iterator[base.Batch]:
    del view  # Only the centre view (EVAL_VIEWS), of images already image_size.
    images, labels = self._eval
    batches = ({'image': images[i:i + local_batch], 'label': labels[i:i + local_batch],
                'index': np.arange(i, min(i + local_batch, len(labels)))}
               for i in range(0, len(labels), local_batch))
    return base.pad_eval_batches(batches, local_batch, num_steps)

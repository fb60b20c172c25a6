"""Saved checkpoints evaluated with the papers' protocols: crops, scales, dense testing, mirrors.

A `Protocol` is a list of passes over the validation split, each one kind of view of every image at
one scale (`input_pipeline.EvalView`, with or without mirror images); a pass scores an image with
the softmax outputs averaged over its views and over the models of an ensemble, and the image's
prediction is the average over the passes, combined on the host by the image's index. So a
multi-scale protocol averages its scales, and VGG's multi-crop + dense combination its two
methods, as the papers do.

Each process evaluates its own slice of the split on its own devices, with no collective: dense
testing's batches hold whole images of one shape, which differ between processes. The counts and
sums of the processes are added at the end, so every image counts exactly once on any number of
processes.
"""

import dataclasses
import math

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

import cnns
import input_pipeline
from input_pipeline import EvalView
from training import steps, weights
from training.errors import ConfigError
from training.setup import set_up

# `--crops`: the views per image at each scale, and their mirrors (added on the device).
CROPS = {
    1: ('centre', 'the centre crop'),
    10: ('five', "AlexNet's 10 crops (4 corners and centre, and mirrors)"),
    50: ('grid', "VGG's 50 crops (a 5 x 5 grid, and mirrors)"),
    144: ('googlenet', "GoogLeNet's 144 crops (3 squares x 6 crops x 4 scales, and mirrors)"),
}
# GoogLeNet's four scales (shorter sides) for its 224-pixel crops; in proportion for other sizes.
GOOGLENET_SCALES = (256, 288, 320, 352)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """An evaluation protocol: `crops` per image at each scale (0: none, with `dense`), the
  `scales` (shorter sides; empty: the config's `eval_resize`), `dense` fully-convolutional
  testing of the whole image, and `flip`, the mirror image of the centre crop or whole image."""
  crops: int = 1
  scales: tuple[int, ...] = ()
  dense: bool = False
  flip: bool = False

  @classmethod
  def of_paper(cls, config) -> 'Protocol':
    """The protocol behind `config.paper`'s numbers."""
    paper = config.paper
    return cls(crops=paper.crops, scales=tuple(paper.scales), dense=paper.dense,
               flip=paper.flip)

  def check(self) -> None:
    """Combinations that mean nothing: one line each."""
    if self.crops not in (0, *CROPS):
      raise ConfigError(f'--crops={self.crops}: known crops per image are '
                        f'{", ".join(map(str, CROPS))} (0 with --dense: the whole image only)')
    if not self.crops and not self.dense:
      raise ConfigError('--crops=0 evaluates nothing without --dense')
    if self.flip and self.crops > 1 and not self.dense:
      raise ConfigError(f'--flip: {self.crops} crops include their mirror images already')
    if self.crops == 144 and self.dense:
      raise ConfigError("--crops=144 is GoogLeNet's protocol at its own four scales: it does not "
                        'combine with --dense')
    if self.crops == 144 and self.scales:
      raise ConfigError("--crops=144 is GoogLeNet's protocol at its own four scales "
                        f'{", ".join(map(str, GOOGLENET_SCALES))}: drop --scales')
    if any(s <= 0 for s in self.scales) or len(set(self.scales)) != len(self.scales):
      raise ConfigError(f'--scales={",".join(map(str, self.scales))} must be distinct positive '
                        'shorter sides')

  def resolved_scales(self, config) -> tuple[int, ...]:
    """The shorter sides the images are rescaled to (GoogLeNet's for its 144 crops)."""
    if self.crops == 144:
      return tuple(round(s * config.image_size / 224) for s in GOOGLENET_SCALES)
    if self.scales:
      return self.scales
    default = input_pipeline.eval_resize_size(config.image_size, config.eval_resize)
    return (default,)

  def passes(self, config) -> list[tuple[EvalView, bool]]:
    """(view, with mirror images) of each pass over the data."""
    out = []
    for scale in self.resolved_scales(config):
      if self.dense:
        out.append((EvalView('dense', scale), self.flip))
      if self.crops == 1:
        out.append((EvalView('centre', scale), self.flip))
      elif self.crops > 1:
        out.append((EvalView(CROPS[self.crops][0], scale), True))
    return out

  def describe(self, config) -> str:
    """One line: what is averaged, at which shorter sides."""
    parts = []
    if self.dense:
      parts.append('dense' + (' with the mirror image' if self.flip else ''))
    if self.crops:
      parts.append(CROPS[self.crops][1] + (' and its mirror' if self.crops == 1 and self.flip
                                           else ''))
    scales = self.resolved_scales(config)
    return (' + '.join(parts) + ', shorter side' + ('s ' if len(scales) > 1 else ' ')
            + ', '.join(map(str, scales)))

  def views(self, config) -> int:
    """Forward passes per image and model."""
    per_view = {'centre': 1, 'dense': 1, 'five': 5, 'grid': 25, 'googlenet': 18}
    return sum(per_view[view.crops] * (2 if mirror else 1) for view, mirror in self.passes(config))


@dataclasses.dataclass
class CheckpointResult:
  metrics: dict  # top1_acc, top5_acc, num_examples; loss (of the finite outputs; None if none).
  checkpoint_steps: list[int]  # One per workdir, in order.
  ema: bool  # Whether the models were the averaged weights.


def evaluate_checkpoints(config, workdirs: list[str], protocol: Protocol, *, ema: bool = True,
                         chunk: int | None = None) -> CheckpointResult:
  """Evaluates the ensemble of the latest checkpoints in `workdirs` with `protocol`; the weights'
  running average where the checkpoints have one, unless `ema` is False. `chunk` views of each
  image are evaluated together (all if None)."""
  protocol.check()
  passes = protocol.passes(config)
  source_class = input_pipeline.source_class(config.dataset)
  if ({view.crops for view, _ in passes} - set(source_class.EVAL_VIEWS)
      or (protocol.scales and not source_class.PHOTOGRAPHS)):
    raise ConfigError(f'{config.dataset} is evaluated on its images as they are (--crops=1, '
                      'optionally --flip): they are not photographs to crop or rescale')
  small = [view.scale for view, _ in passes if view.scale < config.image_size]
  if small:
    raise ConfigError(f'--scales: shorter side {small[0]} is smaller than the '
                      f'{config.image_size}-pixel crops')
  config = weights.checkpoint_config(config, workdirs, note=print if jax.process_index() == 0
                                     else lambda _: None)
  setup = set_up(config, workdirs, local=True)
  source = setup.source
  if protocol.dense:
    _check_dense(config, setup, [view.scale for view, _ in passes if view.crops == 'dense'])
  graphdef, states, checkpoint_steps, used_ema = _restore(config, workdirs, setup, ema)
  # A dense batch: `chunk` whole images per device, each about as large as many crops.
  dense_batch = setup.local_eval_batch if chunk is None else min(
      setup.local_eval_batch, chunk * jax.local_device_count())
  predict_steps = {}
  num_local = math.ceil(source.num_eval_examples / jax.process_count())
  totals = np.zeros((num_local, setup.architecture['num_classes']))
  labels = np.zeros(num_local, np.int64)
  seen = np.zeros(num_local, np.int64)

  def add(batch, probabilities):
    real = batch['mask']
    index = batch['index'][real]
    totals[index] += np.asarray(probabilities)[real]  # Waits for the batch's results.
    labels[index] = batch['label'][real]
    seen[index] += 1

  for number, (view, mirror) in enumerate(passes, start=1):
    if jax.process_index() == 0 and len(passes) > 1:
      print(f'pass {number} of {len(passes)}: {view.crops} at shorter side {view.scale}'
            + (', and mirrors' if mirror else ''), flush=True)
    dense = view.crops == 'dense'
    if (dense, mirror) not in predict_steps:
      predict_steps[dense, mirror] = steps.make_predict_step(
          graphdef, dense=dense, mirror=mirror, chunk=chunk,
          out_sharding=setup.data_sharding, **setup.normalization)
    predict = predict_steps[dense, mirror]

    previous = None  # Added one batch late, so the device already has the next one queued.
    for batch in source.eval_batches(dense_batch if dense else setup.local_eval_batch, 0, view):
      current = batch, predict(states, jax.device_put(batch['image'], setup.data_sharding))
      if previous:
        add(*previous)
      previous = current
    if previous:
      add(*previous)
  counted = seen > 0
  if not np.all(seen[counted] == len(passes)):
    raise AssertionError(f'a pass saw an image {seen[counted].min()} to {seen[counted].max()} '
                         f'times, not once each in {len(passes)} passes')
  sums = ranks_and_loss(totals[counted] / len(passes), labels[counted])
  if jax.process_count() > 1:
    sums = multihost_utils.process_allgather(sums).sum(axis=0)
  count, top1, top5, loss, nonfinite = (float(v) for v in sums)
  if count != source.num_eval_examples:
    raise AssertionError(f'{count:.0f} of the {source.num_eval_examples} images were evaluated')
  if nonfinite and jax.process_index() == 0:
    print(f'note: the models\' outputs overflowed on {nonfinite:.0f} images: counted as wrong, '
          'left out of the loss')
  return CheckpointResult(
      metrics={'loss': loss / (count - nonfinite) if count > nonfinite else None,
               'top1_acc': top1 / count, 'top5_acc': top5 / count, 'num_examples': int(count)},
      checkpoint_steps=checkpoint_steps, ema=used_ema)


def ranks_and_loss(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """[images, top-1 correct, top-5 correct, summed cross-entropy, images with a non-finite
  output] of averaged `probabilities`; a tie ranks the lower class first, as
  `steps.top_k_correct`."""
  truth = probabilities[np.arange(len(labels)), labels]
  classes = np.arange(probabilities.shape[1])
  rank = ((probabilities > truth[:, None])
          | ((probabilities == truth[:, None]) & (classes < labels[:, None]))).sum(axis=1)
  finite = np.isfinite(probabilities).all(axis=1)
  return np.array([len(labels), (rank < 1)[finite].sum(), (rank < 5)[finite].sum(),
                   -np.log(np.maximum(truth[finite], np.finfo(np.float64).tiny)).sum(),
                   (~finite).sum()])


def _check_dense(config, setup, scales: list[int]) -> None:
  """Refuses, before any data is read, a dense test of a model without a fully-convolutional
  form or at a scale whose whole images its windows cannot tile (VGG's pools: multiples of 32)."""
  if not hasattr(setup.abstract_model, 'dense'):
    raise ConfigError(f'--dense: {config.model} has no fully-convolutional form (VGG and '
                      'ResNet have)')
  graphdef, state = nnx.split(setup.abstract_model)
  channels = setup.architecture['in_channels']

  def dense(state, images):
    model = nnx.merge(graphdef, state)
    model.eval()
    return model.dense(images)

  for scale in scales:
    longer = -(-scale // input_pipeline.DENSE_MULTIPLE) * input_pipeline.DENSE_MULTIPLE
    try:
      jax.eval_shape(dense, state, jax.ShapeDtypeStruct((1, scale, longer, channels),
                                                         setup.dtype))
    except cnns.GeometryError as e:
      raise ConfigError(f'--scales: {config.model} cannot test whole images densely at shorter '
                        f'side {scale} ({e})') from e


def _restore(config, workdirs, setup, ema: bool):
  """(graphdef, the models' states, their steps, whether they are the averaged weights), restored
  onto `setup`'s devices without building real weights first. Each state has the shapes its own
  training gave it (optimizer state, a running average or none); an ensemble is averaged only
  where every model has the average."""
  graphdef, restored = None, []
  for workdir in workdirs:
    recorded = weights.recorded_config(workdir)
    graphdef, abstract_state = weights.abstract_train_state(
        ml_collections.ConfigDict(recorded) if recorded else config, setup.abstract_model,
        setup.replicated)
    restored.append(weights.restore(workdir, abstract_state))
  averaged = ema and all(state.ema_params is not None for state, _ in restored)
  if ema and not averaged and any(state.ema_params is not None for state, _ in restored):
    print('note: not every model of the ensemble kept a running average of its weights: all are '
          'evaluated with their raw weights')
  states = tuple(state.replace(params=state.ema_params) if averaged else state
                 for state, _ in restored)
  return graphdef, states, [step for _, step in restored], averaged

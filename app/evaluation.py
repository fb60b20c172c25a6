"""The one evaluation: train-time evaluation and evaluate.py's protocols (crops, scales, dense
testing, mirrors) run the same `Evaluator`, whose metrics are `training.metrics`'.

A `Protocol` is a list of passes over the validation split, each one kind of view of every image at
one scale (`input_pipeline.EvalView`, with or without mirror images); a pass scores an image with
the softmax outputs averaged over its views and over the models of an ensemble, and the image's
prediction is the average over the passes, combined on the host by the image's index. So a
multi-scale protocol averages its scales, and VGG's multi-crop + dense combination its two
methods, as the papers do.

A protocol of one pass (training's centre crop, most papers' numbers) sums the metrics on the
device batch by batch, and the host fetches four numbers at the end. Several passes combine each
image's softmax outputs on the host by its index first.

During training the mesh spans every process, and every process takes the same number of padded
steps. evaluate.py evaluates on each process's own devices with no collective (dense testing's
batches hold whole images of one shape, which differ between processes); the processes' sums are
added at the end. Either way every image counts exactly once on any number of processes.
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
from input_pipeline import views
from app import weights
from app.assembly import Assembly, assemble
from input_pipeline import EvalView
from input_pipeline.base import name_groups
from training import mesh as mesh_lib
from training import metrics, steps
from training.errors import ConfigError

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

  @property
  def kind(self) -> views.ViewKind | None:
    """The registered view that `crops` asks for (input_pipeline/views/); None for 0."""
    return views.by_crops().get(self.crops)

  def check(self) -> None:
    """Combinations that mean nothing: one line each."""
    kind = self.kind
    if self.crops and kind is None:
      raise ConfigError(f'--crops={self.crops}: known crops per image are '
                        f'{", ".join(map(str, views.by_crops()))} (0 with --dense: the whole '
                        'image only)')
    if not self.crops and not self.dense:
      raise ConfigError('--crops=0 evaluates nothing without --dense')
    if self.flip and kind and kind.mirrors and not self.dense:
      raise ConfigError(f'--flip: {self.crops} crops include their mirror images already')
    if kind and kind.paper_scales and (self.dense or self.scales):
      own = (f"--crops={self.crops} is {kind.paper}'s protocol at its own scales "
             f'{", ".join(map(str, kind.paper_scales))}')
      raise ConfigError(f'{own}: it does not combine with --dense' if self.dense
                        else f'{own}: drop --scales')
    if any(s <= 0 for s in self.scales) or len(set(self.scales)) != len(self.scales):
      raise ConfigError(f'--scales={",".join(map(str, self.scales))} must be distinct positive '
                        'shorter sides')

  def resolved_scales(self, config) -> tuple[int, ...]:
    """The shorter sides the images are rescaled to (the paper's own for GoogLeNet's crops, in
    proportion to the crop size)."""
    if self.kind and self.kind.paper_scales:
      return tuple(round(s * config.image_size / 224) for s in self.kind.paper_scales)
    if self.scales:
      return self.scales
    default = input_pipeline.eval_resize_size(config.image_size, config.eval_resize)
    return (default,)

  def passes(self, config) -> list[tuple[EvalView, bool]]:
    """(view, with mirror images) of each pass over the data."""
    out = []
    for scale in self.resolved_scales(config):
      if self.dense:
        out.append((EvalView(views.DENSE, scale), self.flip))
      if self.kind:
        out.append((EvalView(self.kind.name, scale), self.kind.mirrors or self.flip))
    return out

  def describe(self, config) -> str:
    """One line: what is averaged, at which shorter sides."""
    parts = []
    if self.dense:
      parts.append('dense' + (' with the mirror image' if self.flip else ''))
    if self.kind:
      parts.append(self.kind.description + (' and its mirror' if self.flip and not
                                            self.kind.mirrors else ''))
    scales = self.resolved_scales(config)
    return (' + '.join(parts) + ', shorter side' + ('s ' if len(scales) > 1 else ' ')
            + ', '.join(map(str, scales)))

  def views_per_image(self, config) -> int:
    """Forward passes per image and model."""
    return sum(views.get(view.crops).per_image * (2 if mirror else 1)
               for view, mirror in self.passes(config))


class Evaluator:
  """Scores models on the eval split of `assembly`'s source with `protocol`: loss, top-1 and
  top-5 accuracy and the number of examples, each example counted exactly once.

  `states` are one model or an ensemble of `graphdef`'s architecture, whose softmax outputs are
  averaged. `chunk` views of each image are evaluated together (all if None). A call returns None
  as soon as `interrupted()` (a stop requested in a single process). `note` hears (on process 0)
  how many images had non-finite outputs, counted as wrong and left out of the loss.
  """

  def __init__(self, assembly: Assembly, graphdef: nnx.GraphDef, protocol: 'Protocol' = None, *,
               chunk: int | None = None, note=print):
    self._assembly = assembly
    self._note = note if jax.process_index() == 0 else lambda _: None
    self._graphdef = graphdef
    self._passes = (protocol or Protocol()).passes(assembly.config)
    self._chunk = chunk
    self._compiled = {}
    source = assembly.source
    # On a mesh of every process, every process takes the same number of (padded) steps.
    self._num_steps = 0 if assembly.local else input_pipeline.num_eval_steps(
        source.num_eval_examples, assembly.eval_batch_size, jax.process_count())

  def __call__(self, states: tuple, interrupted=lambda: False) -> dict | None:
    if len(self._passes) == 1:
      sums = self._one_pass(states, *self._passes[0], interrupted)
    else:
      sums = self._combined_passes(states, interrupted)
    if sums is None:
      return None
    sums = {k: float(v) for k, v in sums.items()}
    if self._assembly.local and jax.process_count() > 1:  # Each process summed its own slice.
      names = sorted(sums)
      added = multihost_utils.process_allgather(np.array([sums[k] for k in names])).sum(axis=0)
      sums = dict(zip(names, map(float, added)))
    expected = self._assembly.source.num_eval_examples
    if sums['count'] != expected:
      raise AssertionError(f'{sums["count"]:.0f} of the {expected} images were evaluated')
    if sums['nonfinite']:
      self._note(f'note: the models\' outputs overflowed on {sums["nonfinite"]:.0f} images: '
                 'counted as wrong, left out of the loss')
    return metrics.evaluation_result(sums)

  def _batches(self, view: EvalView, dense: bool):
    """This process's batches of `view`, padded, with `mask` and `index`."""
    local_batch = self._assembly.local_eval_batch
    if dense and self._chunk is not None:  # `chunk` whole images per device.
      local_batch = min(local_batch, self._chunk * jax.local_device_count())
    return self._assembly.source.eval_batches(local_batch, self._num_steps, view)

  def _place(self, arrays):
    """Host arrays onto the mesh, split along its 'data' axis."""
    a = self._assembly
    return (jax.device_put(arrays, a.data_sharding) if a.local
            else mesh_lib.to_global(arrays, a.data_sharding))

  def _step(self, kind: str, dense: bool, mirror: bool):
    key = kind, dense, mirror
    if key not in self._compiled:
      a = self._assembly
      make, sharding = ((steps.make_eval_step, a.replicated) if kind == 'sums'
                        else (steps.make_predict_step, a.data_sharding))
      self._compiled[key] = make(self._graphdef, dense=dense, mirror=mirror, chunk=self._chunk,
                                 out_sharding=sharding, **a.normalization)
    return self._compiled[key]

  def _one_pass(self, states, view: EvalView, mirror: bool, interrupted) -> dict | None:
    """The sums of one pass, added on the device."""
    dense = view.crops == views.DENSE
    eval_step = self._step('sums', dense, mirror)
    sums = jax.device_put(metrics.zero_metrics(*metrics.EVAL_SUMS), self._assembly.replicated)
    for batch in self._batches(view, dense):
      if interrupted():
        return None
      sums = eval_step(states, sums, self._place({k: batch[k] for k in ('image', 'label', 'mask')}))
    return jax.device_get(sums)

  def _combined_passes(self, states, interrupted) -> dict | None:
    """The sums of each image's softmax outputs averaged over the passes, combined on the host
    by the image's index, in float64 and as logarithms (as the device averages one pass's views),
    so that one pass or several rank and score alike. Only on a local mesh (evaluate.py's)."""
    a = self._assembly
    num_local = math.ceil(a.source.num_eval_examples / jax.process_count())
    log_totals = np.full((num_local, a.architecture['num_classes']), -np.inf)
    labels = np.zeros(num_local, np.int64)
    seen = np.zeros(num_local, np.int64)

    def add(batch, log_probs):
      real = batch['mask']
      index = batch['index'][real]
      log_totals[index] = np.logaddexp(log_totals[index],  # Waits for the batch's results.
                                       np.asarray(log_probs, np.float64)[real])
      labels[index] = batch['label'][real]
      seen[index] += 1

    for number, (view, mirror) in enumerate(self._passes, start=1):
      if jax.process_index() == 0:
        print(f'pass {number} of {len(self._passes)}: {view.crops} at shorter side {view.scale}'
              + (', and mirrors' if mirror else ''), flush=True)
      dense = view.crops == views.DENSE
      predict = self._step('log_probs', dense, mirror)
      previous = None  # Added one batch late, so the device already has the next one queued.
      for batch in self._batches(view, dense):
        if interrupted():
          return None
        current = batch, predict(states, self._place(batch['image']))
        if previous:
          add(*previous)
        previous = current
      if previous:
        add(*previous)
    counted = seen > 0
    if not np.all(seen[counted] == len(self._passes)):
      raise AssertionError(f'a pass saw an image {seen[counted].min()} to {seen[counted].max()} '
                           f'times, not once each in {len(self._passes)} passes')
    log_probs = log_totals[counted] - np.log(len(self._passes))
    return metrics.classification_sums(log_probs, labels[counted], np.ones(counted.sum(), bool))


@dataclasses.dataclass
class CheckpointResult:
  metrics: dict  # top1_acc, top5_acc, num_examples, nonfinite; loss (of the finite outputs).
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
  assembly = assemble(config, workdirs, local=True)
  check_classes(config, workdirs, assembly.source.class_names)
  if protocol.dense:
    _check_dense(assembly, [view.scale for view, _ in passes if view.crops == views.DENSE])
  graphdef, states, checkpoint_steps, used_ema = _restore(assembly, workdirs, ema)
  result = Evaluator(assembly, graphdef, protocol, chunk=chunk)(states)
  return CheckpointResult(metrics=result, checkpoint_steps=checkpoint_steps, ema=used_ema)


def check_classes(config, workdirs: list[str], class_names: list[str]) -> None:
  """Refuses, before any weights are read, a checkpoint trained on other classes than the data's
  `class_names` (each label would mean another class); checkpoints from before class names were
  recorded are compared by their number of classes, with a note."""
  data = config.data_dir or config.dataset
  for workdir in workdirs:
    saved = weights.record(workdir)
    trained = (saved.get('dataset') or {}).get('class_names')
    if trained is None:
      number = (saved.get('config') or {}).get('num_classes')
      if jax.process_index() == 0:
        print(f'note: {workdir} predates recorded class names: only their number is compared')
      if number is not None and number != len(class_names):
        raise ConfigError(f'{workdir} was trained on {number} classes; {data} has '
                          f'{len(class_names)}: evaluate it on data of its classes')
    elif trained != class_names:
      differ = name_groups([('only in the checkpoint', sorted(set(trained) - set(class_names))),
                            ('only in the data', sorted(set(class_names) - set(trained)))])
      raise ConfigError(f'{workdir} was trained on other classes than {data} has: '
                        f'{differ or "the same ones in another order"}; evaluate it on data of '
                        'its classes')


def _check_dense(assembly: Assembly, scales: list[int]) -> None:
  """Refuses, before any data is read, a dense test of a model without a fully-convolutional
  form or at a scale whose whole images its windows cannot tile (VGG's pools: multiples of 32)."""
  model_name = assembly.config.model
  if not hasattr(assembly.abstract_model, 'dense'):
    raise ConfigError(f'--dense: {model_name} has no fully-convolutional form (VGG and '
                      'ResNet have)')
  graphdef, state = nnx.split(assembly.abstract_model)
  channels = assembly.architecture['in_channels']

  def dense(state, images):
    model = nnx.merge(graphdef, state)
    model.eval()
    return model.dense(images)

  for scale in scales:
    longer = -(-scale // input_pipeline.DENSE_MULTIPLE) * input_pipeline.DENSE_MULTIPLE
    try:
      jax.eval_shape(dense, state, jax.ShapeDtypeStruct((1, scale, longer, channels),
                                                         assembly.dtype))
    except cnns.GeometryError as e:
      raise ConfigError(f'--scales: {model_name} cannot test whole images densely at shorter '
                        f'side {scale} ({e})') from e


def _restore(assembly: Assembly, workdirs, ema: bool):
  """(graphdef, the models' states, their steps, whether they are the averaged weights), restored
  onto the assembly's devices without building real weights first. Each state has the shapes its
  own training gave it (optimizer state, a running average or none); an ensemble is averaged only
  where every model has the average."""
  graphdef, restored = None, []
  for workdir in workdirs:
    recorded = weights.recorded_config(workdir)
    graphdef, abstract_state = assembly.abstract_state(
        ml_collections.ConfigDict(recorded) if recorded else assembly.config)
    restored.append(weights.restore(workdir, abstract_state))
  averaged = ema and all(state.ema_params is not None for state, _ in restored)
  if ema and not averaged and any(state.ema_params is not None for state, _ in restored):
    print('note: not every model of the ensemble kept a running average of its weights: all are '
          'evaluated with their raw weights')
  states = tuple(state.averaged() if averaged else state for state, _ in restored)
  return graphdef, states, [step for _, step in restored], averaged

"""Shared base of every config: each field a user may override with `--config.<field>=value`.

An architecture's file calls `get_base_config()`, sets its paper's recipe and returns the config
locked, so that a misspelt override is an error rather than a silent new field.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # Model: a name from `cnns.available_models()`.
  config.model = 'lenet5'
  config.num_classes = -1  # -1: the dataset's number of classes (ImageNet's 1000 in summaries).
  config.in_channels = -1  # -1: the dataset's image channels (3 in summaries); else must match.
  # Computation dtype: 'float32' or 'bfloat16', parameters float32; or 'float64', parameters too
  # (JAX's 64-bit mode, JAX_ENABLE_X64=1: the precision of benchmarks/reference_check.py).
  config.dtype = 'float32'
  # The family's own constructor options (ResNet's `stride_on_3x3`, ...), set by its config.
  config.model_kwargs = ml_collections.ConfigDict()
  config.aux_loss_weight = 0.3  # Models with auxiliary classifiers (GoogLeNet's 0.3); else unused.
  # BatchNorm training statistics: 'global' (the whole batch, synchronised over devices) or
  # 'per_device' (each device's own shard: no all-reduce per layer, as the original ResNet).
  config.batchnorm = 'global'
  # BatchNorm's running variance: the moving average of the 'biased' variance that normalised the
  # batch (Flax's) or of the 'unbiased' one, n / (n - 1) times it for a channel's n values
  # (Bessel's correction: PyTorch's BatchNorm and TensorFlow's fused one).
  config.batchnorm_running_var = 'biased'

  # Data: a name from `input_pipeline.available_datasets()`: a TFDS dataset, 'image_folder'
  # (data_dir: ROOT/train/<class>/<image>, ROOT/val/...) or 'synthetic'.
  config.dataset = 'fashion_mnist'
  config.data_dir = ml_collections.config_dict.placeholder(str)  # None: TFDS's default.
  config.image_size = 32  # Smaller images are zero-padded (centred) to this size.
  config.shuffle_buffer_size = 60_000
  # Shards of the training order (input_pipeline/base.py); -1: one per process. Runs with equal
  # values train on identical batches on any number of processes.
  config.data_shards = -1
  # ImageNet only (input_pipeline/preprocessing.py): the training crop, 'inception' (random-
  # resized, by TensorFlow's sampler: GoogLeNet, Inception), 'torchvision' (random-resized as
  # torchvision's RandomResizedCrop draws it: ResNet), 'slim' (TF-slim's Inception crop, its own
  # ranges) or 'scaled' (random crop of the image rescaled to a shorter side S drawn from
  # train_scale_range: AlexNet, VGG), flips, and AlexNet's PCA noise.
  config.train_crop = 'inception'
  config.crop_area_range = (0.08, 1.0)  # 'inception', 'torchvision': fraction of the area.
  config.train_scale_range = (256, 256)  # 'scaled': [min, max] of S; VGG's scale jitter (256, 512).
  config.pca_lighting = 0.0  # Standard deviation of AlexNet's colour noise (the paper's 0.1).
  config.train_interpolation = 'bilinear'  # Or 'random': GoogLeNet's 4 methods, one per crop.
  config.color_distortion = 'none'  # Or 'howard' (GoogLeNet's) or 'inception' (TF-slim's).
  config.eval_resize = -1  # Shorter side before the evaluation crop(s); -1: image_size / 0.875.
  config.eval_antialias = False  # Antialiased evaluation resize (PIL's and torchvision's).
  # The single centre crop (evaluate.py's --crops=1, train-time evaluations, predict.py): 'window'
  # (the centre window decoded alone and resized by TensorFlow) or 'torchvision' (torchvision's
  # Resize + CenterCrop of a PIL image, pixel for pixel, at a fifth to a third of the speed). The
  # other protocols keep their papers' geometry and TensorFlow's resize.
  config.eval_crop = 'window'
  # Pixel standardisation: 'dataset' (its mean and std) or a published model's convention,
  # 'caffe', 'tf' or 'torch' (input_pipeline.INPUT_CONVENTIONS); import_weights.py sets it.
  config.input_convention = 'dataset'
  # image_folder only: per-channel RGB mean and std (0-255); () computes them once from the
  # training images (input_pipeline/image_folder.py).
  config.dataset_mean = ()
  config.dataset_std = ()
  # Resume a run on other files than its checkpoint's (an image folder's images added, removed or
  # changed, which a resume otherwise refuses): the data order and the statistics change.
  config.accept_changed_data = False
  config.synthetic_train_examples = 1024  # Only for dataset='synthetic'.
  config.synthetic_eval_examples = 256

  # Optimisation.
  config.batch_size = 128  # Global: split over every device of every process.
  config.eval_batch_size = -1  # -1: same as batch_size.
  config.num_epochs = 10
  config.seed = 0
  config.optimizer = 'sgd'  # 'sgd', 'adam', 'adamw', 'rmsprop' or 'sdlm' (LeNet-5 1998's).
  config.momentum = 0.9  # SGD's and RMSProp's momentum; Adam's b1.
  config.rmsprop_decay = 0.9  # RMSProp's moving average of squared gradients.
  config.rmsprop_epsilon = 1.0  # Inception-v4 paper's 1.0 (TensorFlow's RMSProp: inside the root).
  # 'sdlm' (training/sdlm.py): each rate divided by sdlm_mu + the Hessian's diagonal, estimated
  # on sdlm_samples training examples before each epoch (LeCun et al. 1998: 0.02 and 500).
  config.sdlm_mu = 0.02
  config.sdlm_samples = 500
  config.sdlm_every_examples = -1  # Re-estimate this often; -1: before each epoch (the paper).
  config.nesterov = False
  config.learning_rate = 0.1  # Peak learning rate.
  # 'constant', 'step', 'exponential' (staircase), 'cosine' or 'plateau' (divide by
  # lr_decay_factor when the train-time evaluation's top-1 error stops improving).
  config.lr_schedule = 'constant'
  config.lr_decay_epochs = ()  # 'step': divide the rate by lr_decay_factor at these epochs.
  config.lr_decay_factor = 10.0
  config.lr_decay_factors = ()  # 'step': one factor per lr_decay_epochs entry instead.
  config.lr_decay_every_epochs = 0.0  # 'exponential': divide by lr_decay_factor this often.
  config.plateau_patience = 5  # 'plateau': evaluations without a new best before a decay.
  config.plateau_max_decays = 3  # 'plateau': decays at most (AlexNet's and VGG's three).
  config.warmup_epochs = 0.0  # Linear warm-up from 0, for any schedule.
  config.weight_decay = 0.0  # L2 on weight_decay_params (decoupled for 'adamw').
  # 'kernels' (convolution and dense kernels: the papers' convention), 'kernels_and_biases'
  # (their biases too: TF-slim's arg scopes) or 'all' (BatchNorm's scale and bias too:
  # torchvision's classic reference).
  config.weight_decay_params = 'kernels'
  config.label_smoothing = 0.0
  # Polyak averaging: > 0 keeps an exponential moving average of the params with this decay
  # (TensorFlow's, warmed up over the first steps: training/steps.py), which train-time
  # evaluations use. BatchNorm statistics are running averages already and are averaged only
  # with ema_batch_stats (TF-slim's train_image_classifier.py averages every model variable,
  # the statistics among them), which evaluations then use too.
  config.ema_decay = 0.0
  config.ema_batch_stats = False
  # The warm-up's step count n in TensorFlow's decay min(ema_decay, (1 + n) / (10 + n)): the steps
  # done 'before_step' (before this one) or 'after_step' (this one included: TensorFlow's global
  # step once apply_gradients has counted it, as TF-slim's script applies the average after it).
  config.ema_num_updates = 'before_step'
  # Fine-tuning: a workdir (a run, or import_weights.py's) whose latest weights start this run;
  # every layer whose name and shape match is copied, the others start fresh. '' for none.
  config.init_from = ''

  # Cadence, in training steps (epochs for evaluation).
  config.log_every_steps = 100
  config.eval_every_epochs = 1
  config.checkpoint_every_steps = 1000  # Also saved at the end of training.
  config.keep_checkpoints = 3

  # Speed (README, "Speed"): batches placed on the devices this many steps ahead (0: when
  # needed), and (start, stop) steps to trace with jax.profiler into <workdir>/profile
  # (TensorBoard's profile plugin or Perfetto); () traces nothing.
  config.prefetch_to_device = 2
  config.profile_steps = ()

  # The paper's reported ImageNet validation error (%), for comparison; None where not applicable.
  config.paper = ml_collections.ConfigDict({
      'top1_error': ml_collections.config_dict.placeholder(float),
      'top5_error': ml_collections.config_dict.placeholder(float),
      'protocol': '',  # How the paper evaluated: crops, scales, single net or ensemble.
      # That protocol, as evaluate.py runs it by default (--protocol=paper; README, "Evaluation
      # protocols"): crops per image at each scale (1, 10, 50, 144; 0 for dense only), the
      # shorter sides of the test scales (() for eval_resize), dense (fully-convolutional)
      # testing of the whole image, and its mirror or the centre crop's.
      'crops': 1,
      'scales': (),
      'dense': False,
      'flip': False,
  })
  return config


def get_imagenet_config(model: str, *, image_size: int, batch_size: int, learning_rate: float,
                        num_epochs: int, weight_decay: float, top1_error: float | None,
                        top5_error: float | None, protocol: str, crops: int = 1,
                        scales: tuple[int, ...] = (), dense: bool = False, flip: bool = False,
                        lr_decay_epochs: tuple[int, ...] = (),
                        **recipe) -> ml_collections.ConfigDict:
  """An ImageNet recipe: by default SGD, momentum 0.9, step decay by 10x at `lr_decay_epochs`;
  `recipe` sets any other field (optimizer, lr_schedule, model_kwargs, ...).

  Data: TFDS's imagenet2012 (README, "ImageNet"); `--config.dataset=synthetic` gives ImageNet-
  shaped random images, for trying a config without the data.
  """
  config = get_base_config()
  config.model = model
  config.dataset = 'imagenet2012'
  config.shuffle_buffer_size = 10_000  # JPEG bytes: about 1.1 GB of host memory.
  config.num_classes = 1000
  config.in_channels = 3
  config.image_size = image_size
  config.batch_size = batch_size
  config.num_epochs = num_epochs
  config.optimizer = 'sgd'
  config.momentum = 0.9
  config.learning_rate = learning_rate
  config.lr_schedule = 'step'
  config.lr_decay_epochs = lr_decay_epochs
  config.weight_decay = weight_decay
  config.paper.top1_error = top1_error
  config.paper.top5_error = top5_error
  config.paper.protocol = protocol
  config.paper.update({'crops': crops, 'scales': scales, 'dense': dense, 'flip': flip})
  config.update(recipe)
  config.lock()
  return config


def get_vgg_config(model: str, *, top1_error: float,
                   top5_error: float) -> ml_collections.ConfigDict:
  """VGG's recipe (Simonyan & Zisserman, 2015, section 3.1) with one configuration's numbers.

  Batch 256, SGD momentum 0.9, weight decay 5e-4, dropout 0.5 on fc6 and fc7, learning rate 0.01
  divided by 10 when validation accuracy stopped improving (three times in 74 epochs), 224x224
  crops of images rescaled to a shorter side S = 256 (or jittered in [256, 512]: add
  `--config.train_scale_range=(256,512)`), flips and AlexNet's RGB colour shift. That decay is
  `lr_schedule='plateau'` on each epoch's validation top-1 error, at most 3 decays; the paper gives
  no patience: 5 epochs without a new best is this project's choice, long enough that the error's
  epoch-to-epoch noise at a high rate does not trigger a decay, short enough that three decays
  fit in 74 epochs with most epochs spent training, not waiting. The errors are the paper's
  Table 3: single net, single test scale Q = S = 256, dense evaluation of the image and its mirror
  (evaluate.py's default for these configs); `--dense --flip --scales=224,256,288` is Table 4's
  multi-scale testing, `--crops=50 --scales=224,256,288` Table 5's multi-crop and
  `--crops=50 --dense --flip --scales=224,256,288` their combination. The paper started
  nets B-E from a trained net A (section 3.1):

    python train.py --config=configs/vgg11.py --workdir=runs/vgg11
    python train.py --config=configs/vgg16.py --config.init_from=runs/vgg11 --workdir=runs/vgg16

  copies every layer of net A whose name and shape match (README, "Published weights"): all
  eight of A's convolutional layers (conv1_1, conv2_1, conv3_1, conv3_2, ...) and fc6-fc8, where
  the paper copied the first four convolutional and the three fully connected layers and left
  the rest random. The paper adds that Glorot & Bengio's random initialisation makes the
  pre-training unnecessary (this project's layers start from Flax's LeCun normal).
  """
  return get_imagenet_config(
      model, image_size=224, batch_size=256, learning_rate=0.01, lr_schedule='plateau',
      plateau_patience=5, plateau_max_decays=3, num_epochs=74, weight_decay=5e-4,
      top1_error=top1_error, top5_error=top5_error,
      protocol='single net, dense with the mirror image, shorter side Q = S = 256 (Table 3)',
      crops=0, dense=True, flip=True, scales=(256,), train_crop='scaled',
      train_scale_range=(256, 256), pca_lighting=0.1, eval_resize=256)


def get_resnet_config(depth: int, *, top1_error: float | None, top5_error: float | None,
                      protocol: str) -> ml_collections.ConfigDict:
  """ResNet's recipe (He et al., 2016, section 3.4) for one depth.

  Batch 256, SGD momentum 0.9, weight decay 1e-4, no dropout, learning rate 0.1 divided by 10
  when the error plateaus. The paper trains for 60e4 iterations (120 epochs) without decay epochs
  on 224x224 crops of images rescaled to a shorter side in [256, 480] with AlexNet's colour noise
  (`--config.train_crop=scaled --config.train_scale_range=(256,480) --config.pca_lighting=0.1`);
  this follows torchvision's reference: random-resized crops drawn as its RandomResizedCrop draws
  them (`train_crop='torchvision'`; benchmarks/crop_distributions.py) with flips, dividing the
  rate by 10 at epochs 30 and 60 of 90 (`--config.lr_schedule=plateau` divides it when the
  validation error plateaus instead, as the paper). Evaluated on 10 crops as the paper's Table 3
  (evaluate.py's default); `--dense --scales=224,256,384,480,640` is its multi-scale
  fully-convolutional testing (Tables 4 and 5).
  `model_kwargs.stride_on_3x3=True` gives "ResNet v1.5",
  `model_kwargs.zero_init_residual=True` starts every block as the identity, and
  `model_kwargs.padding='symmetric'` pads as Caffe and torchvision (see cnns/resnet.py).
  """
  return get_imagenet_config(
      f'resnet{depth}', image_size=224, batch_size=256, learning_rate=0.1,
      lr_decay_epochs=(30, 60), num_epochs=90, weight_decay=1e-4, top1_error=top1_error,
      top5_error=top5_error, protocol=protocol, crops=10, train_crop='torchvision',
      model_kwargs={'stride_on_3x3': False, 'zero_init_residual': False, 'padding': 'same'})


def get_torchvision_config(model: str, *, learning_rate: float, top1_error: float,
                           top5_error: float, **recipe) -> ml_collections.ConfigDict:
  """The recipe behind torchvision's classic published ImageNet weights (IMAGENET1K_V1):
  references/classification/train.py with its defaults, `torchrun --nproc_per_node=8 train.py
  --model MODEL [--lr LR]`, 8 GPUs x 32 images.

  SGD with momentum 0.9, PyTorch's (the weight decay added to the gradient, the rate applied after
  the momentum); weight decay 1e-4 on every parameter, BatchNorm's scale and bias and the biases
  included; the rate divided by 10 every 30 epochs, StepLR(30, 0.1) stepped once per epoch (the
  staircase 'exponential' schedule); 90 epochs; cross-entropy without label smoothing;
  BatchNorm's running variance with Bessel's correction, as PyTorch's. Training crops are drawn
  as RandomResizedCrop(224) draws them (`train_crop='torchvision'`: 8-100% of the area, aspect
  ratios 3/4 to 4/3 log-uniform, ten attempts then the centre; bilinear) with flips; the
  published accuracy is that of one 224x224 centre crop of the image resized to 256,
  antialiased, which `eval_crop='torchvision'` cuts pixel for pixel as torchvision does
  (benchmarks/eval_pixels.py). The errors are 100 minus torchvision's published accuracies.
  """
  return get_imagenet_config(
      model, image_size=224, batch_size=256, learning_rate=learning_rate, num_epochs=90,
      weight_decay=1e-4, top1_error=top1_error, top5_error=top5_error,
      protocol='1 crop, the 224x224 centre of the image resized to 256 (torchvision\'s)',
      lr_schedule='exponential', lr_decay_every_epochs=30.0, lr_decay_factor=10.0,
      weight_decay_params='all', batchnorm_running_var='unbiased', train_crop='torchvision',
      eval_resize=256, eval_antialias=True, eval_crop='torchvision', **recipe)

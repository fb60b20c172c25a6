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
  config.dtype = 'float32'  # Computation dtype: 'float32' or 'bfloat16'; parameters stay float32.

  # Data: a TFDS name (see `input_pipeline.available_datasets()`) or 'synthetic'.
  config.dataset = 'fashion_mnist'
  config.data_dir = ml_collections.config_dict.placeholder(str)  # None: TFDS's default.
  config.image_size = 32  # Smaller images are zero-padded (centred) to this size.
  config.shuffle_buffer_size = 60_000
  config.synthetic_train_examples = 1024  # Only for dataset='synthetic'.
  config.synthetic_eval_examples = 256

  # Optimisation.
  config.batch_size = 128  # Global: split over every device of every process.
  config.eval_batch_size = -1  # -1: same as batch_size.
  config.num_epochs = 10
  config.seed = 0
  config.optimizer = 'sgd'  # 'sgd', 'adam' or 'adamw'.
  config.momentum = 0.9  # SGD momentum; Adam's b1.
  config.nesterov = False
  config.learning_rate = 0.1  # Peak learning rate.
  config.lr_schedule = 'constant'  # 'constant', 'step' or 'cosine'.
  config.lr_decay_epochs = ()  # 'step': divide the rate by lr_decay_factor at these epochs.
  config.lr_decay_factor = 10.0
  config.warmup_epochs = 0.0  # Linear warm-up from 0, for any schedule.
  config.weight_decay = 0.0  # L2 on kernels only (papers' convention); decoupled for 'adamw'.
  config.label_smoothing = 0.0

  # Cadence, in training steps (epochs for evaluation).
  config.log_every_steps = 100
  config.eval_every_epochs = 1
  config.checkpoint_every_steps = 1000  # Also saved at the end of training.
  config.keep_checkpoints = 3

  # The paper's reported ImageNet validation error (%), for comparison; None where not applicable.
  config.paper = ml_collections.ConfigDict({
      'top1_error': ml_collections.config_dict.placeholder(float),
      'top5_error': ml_collections.config_dict.placeholder(float),
      'protocol': '',  # How the paper evaluated: crops, scales, single net or ensemble.
  })
  return config


def get_imagenet_config(model: str, *, image_size: int, batch_size: int, learning_rate: float,
                        lr_decay_epochs: tuple[int, ...], num_epochs: int, weight_decay: float,
                        top1_error: float, top5_error: float,
                        protocol: str) -> ml_collections.ConfigDict:
  """An ImageNet recipe of the AlexNet/VGG era: SGD, momentum 0.9, step decay by 10x.

  Until the ImageNet pipeline lands, `dataset` is 'synthetic' (ImageNet-shaped random images).
  """
  config = get_base_config()
  config.model = model
  config.dataset = 'synthetic'
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
  config.lock()
  return config


def get_vgg_config(model: str, *, top1_error: float,
                   top5_error: float) -> ml_collections.ConfigDict:
  """VGG's recipe (Simonyan & Zisserman, 2015, section 3.1) with one configuration's numbers.

  Batch 256, SGD momentum 0.9, weight decay 5e-4, dropout 0.5 on fc6 and fc7, learning rate 0.01
  divided by 10 when validation accuracy stopped improving (three times in 74 epochs), 224x224
  crops of images rescaled to a shorter side S = 256 (or jittered in [256, 512]). The paper gives
  no decay epochs; these follow the common reimplementation schedule (30, 60). The errors are the
  paper's Table 3: single net, single test scale Q = S = 256, dense evaluation.
  """
  return get_imagenet_config(
      model, image_size=224, batch_size=256, learning_rate=0.01, lr_decay_epochs=(30, 60),
      num_epochs=74, weight_decay=5e-4, top1_error=top1_error, top5_error=top5_error,
      protocol='single net, single scale (Q = S = 256), dense evaluation (Table 3)')

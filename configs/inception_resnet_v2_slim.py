r"""Inception-ResNet-v2 as TF-slim's train_image_classifier.py trains it, the script of the
release of slim's published weights, inception_resnet_v2_2016_08_30: 80.4% top-1 / 95.3% top-5
accuracy on one crop (research/slim/README.md).

  python train.py --config=configs/inception_resnet_v2_slim.py --workdir=runs/irv2_slim
  python evaluate.py --config=configs/inception_resnet_v2_slim.py --workdir=runs/irv2_slim
  python -m benchmarks.reference_check --config=configs/inception_resnet_v2_slim.py \
      --reference=slim --steps=10 --batch_size=1

Recipe: train_image_classifier.py's flags as slim's README runs it (only the model and data
named), which agree with the paper (section 4) where it gives them: batch 32, RMSProp with
decay 0.9, momentum 0.9 and epsilon 1.0 (TensorFlow's: epsilon inside the square root, the rate
inside the momentum), the rate decayed by 0.94 every 2 epochs as a staircase
(`exponential_decay(staircase=True)` on the global step), weight decay 4e-5 as slim's arg scope
applies it (an L2 loss, weight_decay * sum(w^2) / 2, on the weights and biases of convolutions
and the classifier, not on BatchNorm's: `weight_decay_params='kernels_and_biases'`), no label
smoothing (the script's default; the paper names none for this network; the authors' earlier
Inception-v3 release smoothed by 0.1: `--config.label_smoothing=0.1`). Two values are the
paper's, not the script's defaults: the learning rate 0.045 (the script's 0.01 is one default
for every model) and the running average of the parameters that evaluations use (the script's
`moving_average_decay` is off unless given; 0.9999, the authors' Inception release's
MOVING_AVERAGE_DECAY) applied as the script applies it: to every model variable, BatchNorm's
moving statistics too, which evaluations then use (`ema_batch_stats`), its warm-up counting the
step just taken (`ema_num_updates='after_step'`). The model is slim's: BatchNorm without scale
(`batchnorm_scale=False`), decay 0.9997, epsilon 0.001, dropout keeping 80%, pixels scaled to
[-1, 1] (`input_convention='tf'`), slim's training crop (`train_crop='slim'`). BatchNorm's
moving variance averages the variance that normalised the batch (`batchnorm_running_var=
'biased'`): slim's batch_norm of the release's time (the 2016 arg scope sets no `fused`, and
TensorFlow's non-fused path averages `nn.moments`' variance), as Keras'; the later arg scope's
`'fused': None` picks TensorFlow's fused kernel, whose moving variance has Bessel's correction
(`--config.batchnorm_running_var=unbiased`). 100 epochs is this project's choice, as the paper
config's (the script runs until stopped). configs/inception_resnet_v2.py is the paper's recipe.

Proven equal (benchmarks/reference_check.py --reference=slim --steps=10 --batch_size=1,
299x299, 2-core x86 CPU, 11 min beside other jobs): from the same weights on the same batches,
each of 10 steps of this config's train step, from the reference's state before it, gives the
reference's next state (train_image_classifier.py's loss, regularisers, RMSPropOptimizer,
exponential_decay multiplying the rate by 0.94 after step 5, ExponentialMovingAverage, on Keras'
InceptionResNetV2): in float64 parameters within 7.7e-14 relative, BatchNorm statistics
4.4e-15, RMSProp's ms 1.8e-14 and mom 7.7e-14, the averaged parameters 7.7e-14 and statistics
4.4e-15; the whole runs within 1.9e-13, the floor of two runs of this project started one
rounding apart (1.8e-13). In float32 one step parts parameters by up to 1.7e-1 relative (a
BatchNorm bias near 0) and statistics by 2.7e-6: float32's own floor here (with one block of
each kind, the same step started one float32 rounding away moves the parameters by 1.7e-2, the
reference's by 4.8e-3). Batch 8 in float64 needs more than this 23 GB machine (TensorFlow's
eager tape alone 12 GB). tests/test_reference.py holds the recipe with one block of each kind at
75x75, batch 8, 3 steps and label smoothing 0.1 to 1e-9 (measured: 1.1e-13).

Not the same, on purpose or not shown by that check:
- slim's network has an auxiliary classifier after the Inception-ResNet-B blocks, trained with
  weight 0.4; Keras' port and this project's model have none (the paper describes none).
- slim's ImageNet has 1001 classes (a background class first); here 1000.
- The published weights were "trained internally at Google" (slim's README), on replicas (the
  paper: 20, asynchronous); train_image_classifier.py's default is one clone: the recipe above,
  not necessarily the run behind the checkpoint.
- Data: the random order and augmentation draws. slim's crop boxes are drawn by TensorFlow's
  sampler with slim's arguments (`train_crop='slim'`, benchmarks/crop_distributions.py); slim's
  `fast_mode` colour distortion (the script's default: brightness and saturation only) is not
  available, and `color_distortion='inception'` applies all four of slim's operations.
  Evaluation: slim's eval_image_classifier.py crops the central 87.5% of each side and squeezes
  it to 299x299; here the central square of 87.5% of the shorter side (`eval_crop='window'`).
Measured by this project: not yet (no ImageNet run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_imagenet_config(
      'inception_resnet_v2', image_size=299, batch_size=32, learning_rate=0.045,
      num_epochs=100, weight_decay=4e-5, top1_error=19.6, top5_error=4.7,
      protocol="1 crop, the central 87.5% of the image resized to 299x299 (slim's README)",
      crops=1, optimizer='rmsprop', momentum=0.9, rmsprop_decay=0.9, rmsprop_epsilon=1.0,
      lr_schedule='exponential', lr_decay_every_epochs=2.0, lr_decay_factor=1 / 0.94,
      weight_decay_params='kernels_and_biases', label_smoothing=0.0, ema_decay=0.9999,
      ema_batch_stats=True, ema_num_updates='after_step', batchnorm_running_var='biased',
      input_convention='tf', train_crop='slim', color_distortion='inception',
      model_kwargs={'repeats': (10, 20, 10), 'batchnorm_scale': False})

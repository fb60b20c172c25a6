r"""ResNet-50 as torchvision trained its published weights, ResNet50_Weights.IMAGENET1K_V1
(`resnet50-0676ba61.pth`): 76.130% top-1 / 92.862% top-5 accuracy on one centre crop.

  python train.py --config=configs/resnet50_torchvision.py --workdir=runs/resnet50_tv
  python evaluate.py --config=configs/resnet50_torchvision.py --workdir=runs/resnet50_tv
  python -m benchmarks.reference_check --config=configs/resnet50_torchvision.py \
      --reference=torchvision --steps=10

Recipe: `default.get_torchvision_config` (train.py's defaults, learning rate 0.1) on torchvision's
model: the stride of a downsampling bottleneck on its 3x3 convolution ("v1.5"), Caffe's flooring
padding, BatchNorm momentum 0.1 (Flax's 0.9) and epsilon 1e-5, no zero-initialised residuals, and
its initialisation (`torchvision_init`: He-normal convolutions, as here, and PyTorch's uniform fc).
`configs/resnet50.py` is the paper's.

Proven equal (benchmarks/reference_check.py, 224x224, batch 8, 2-core CPU): from the same weights
on the same batches, each of 10 steps of this config's train step, from torchvision's state
before it, gives torchvision's next state (train.py's SGD, CrossEntropyLoss, StepLR dividing the
rate by 10 after step 5, model.train()): parameters, BatchNorm statistics and momentum buffers
within 5e-13, 1.2e-13 and 2.3e-12 relative in float64. Whole runs from the same weights part as
two runs of this project started one rounding apart do (about 1e-2 after 10 steps: the check
explains why). In float32 the first losses agree to 3e-7, and one step from torchvision's state
differs by up to 9e-2, 7e-5 and 0.2 (a BatchNorm bias near zero; summation order and the ReLU
and max-pool ties it flips), and whole runs end 1.4 apart where two of this project's own, one
rounding apart, end 1.5 apart (2026-12-05, 2-core AMD EPYC VM, 19 minutes for both dtypes).
tests/test_reference.py holds ResNet-18 under this recipe at 32x32 to 1e-9.

Not the same, on purpose or not shown by that check:
- BatchNorm's statistics: train.py's 8 GPUs each normalise their own 32 images (no SyncBatchNorm)
  and DistributedDataParallel keeps GPU 0's running averages; here `batchnorm='per_device'`
  normalises each device's share (on 8 devices, 32 images, as torchvision) and averages the
  devices' statistics; on one device the statistics are the whole batch's.
- train.py's epoch ends with a partial batch (5,005 steps); here the remainder is dropped (5,004).
- Data: the random order of the examples and which crop each image gets (input_pipeline/); the
  crops' distribution is RandomResizedCrop's (`train_crop='torchvision'`, two-sample KS distance
  0.0041 over 100,000 boxes, benchmarks/crop_distributions.py) and the evaluation pixels are
  torchvision's `Resize(256) + CenterCrop(224)` exactly on 1,000 ImageNet photographs
  (`eval_crop='torchvision'`, benchmarks/eval_pixels.py), but the augmented training pixels are
  resized by TensorFlow, not PIL.
Measured by this project: not yet (no ImageNet run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_torchvision_config(
      'resnet50', learning_rate=0.1, top1_error=23.870, top5_error=7.138,
      batchnorm='per_device',
      model_kwargs={'stride_on_3x3': True, 'zero_init_residual': False, 'padding': 'symmetric',
                    'torchvision_init': True})

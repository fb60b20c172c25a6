r"""VGG-16 (configuration D) as torchvision trained its published weights,
VGG16_Weights.IMAGENET1K_V1 (`vgg16-397923af.pth`): 71.592% top-1 / 90.382% top-5 accuracy on one
centre crop.

  python train.py --config=configs/vgg16_torchvision.py --workdir=runs/vgg16_tv
  python -m benchmarks.reference_check --config=configs/vgg16_torchvision.py \
      --reference=torchvision --steps=10

Recipe: `default.get_torchvision_config` with learning rate 0.01 (torchvision's README: the
default 0.1 is too high for AlexNet and VGG without BatchNorm): batch 256, SGD momentum 0.9,
weight decay 1e-4 on every parameter, StepLR(30, 0.1), 90 epochs, dropout 0.5 before fc7 and fc8,
random-resized crops, and torchvision's initialisation (`torchvision_init`: He-normal
convolutions, N(0, 0.01) fully connected layers).
`configs/vgg16.py` is the paper's (weight decay 5e-4, decay on plateaus, scale jittering, dense
multi-scale evaluation).

Proven equal (benchmarks/reference_check.py at 224x224, its only size: torchvision's adaptive
pool before fc6 makes other sizes another network; batch 2, 2-core CPU): from the same weights on
the same batches, dropout off on both sides (two frameworks cannot draw the same masks), each of
10 steps of this config's train step from torchvision's state before it gives torchvision's next
state, parameters and momentum buffers within 4.9e-15 and 1.4e-14 relative in float64, and the
whole runs end within 6.0e-15 and 1.0e-14.

Not the same, on purpose or not shown by that check:
- Dropout's masks (random on both sides; same rate, same inverted scaling).
- train.py's epoch ends with a partial batch (5,005 steps); here the remainder is dropped (5,004).
- Data: the random order of the examples, which crop each image gets and the resizing of the
  training crops (TensorFlow here); the crops' distribution and the evaluation pixels are
  torchvision's (as for configs/resnet50_torchvision.py).
Measured by this project: not yet (no ImageNet run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_torchvision_config('vgg16', learning_rate=0.01, top1_error=28.408,
                                        top5_error=9.618,
                                        model_kwargs={'torchvision_init': True})

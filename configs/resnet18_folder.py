r"""ResNet-18 fine-tuned on your own images (laid out as input_pipeline/image_folder.py says).

  python import_weights.py --config=configs/resnet18.py --weights=resnet18-f37072fd.pth \
      --workdir=runs/resnet18_tv
  python train.py --config=configs/resnet18_folder.py --config.data_dir=/data/flowers \
      --config.init_from=runs/resnet18_tv --workdir=runs/flowers

Starts from torchvision's ImageNet ResNet-18 (README, "Published weights"): every layer but the
classifier is copied, and the classifier gets the folder's number of classes. So the config is
torchvision's variant (stride on the 3x3, symmetric padding, its input convention); without
`init_from` the same command trains from scratch. Recipe (the common transfer-learning one, not a
paper's): 224x224 random-resized crops and flips, centre-crop evaluation, SGD with momentum 0.9,
batch 64, learning rate 0.01 with cosine decay over 30 epochs after one warm-up epoch, weight
decay 1e-4. Reported: no paper. Measured by this project: on the tests' folders only.
"""

from configs import default


def get_config():
  config = default.get_imagenet_config(
      'resnet18', image_size=224, batch_size=64, learning_rate=0.01, num_epochs=30,
      weight_decay=1e-4, top1_error=None, top5_error=None, protocol='', lr_schedule='cosine',
      warmup_epochs=1.0, dataset='image_folder', num_classes=-1, input_convention='torch',
      model_kwargs={'stride_on_3x3': True, 'zero_init_residual': False, 'padding': 'symmetric'})
  return config

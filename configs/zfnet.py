r"""ZFNet (Zeiler & Fergus, 2014), the seed's variant with 512/1024/512 filters in conv3-5.

  python train.py --config=configs/zfnet.py --workdir=runs/zfnet
  python -m cnns.summary --config=configs/zfnet.py

Paper recipe (section 3): batch 128, SGD momentum 0.9, learning rate 0.01 annealed by hand when
the validation error plateaued, dropout 0.5 in fc6 and fc7, 70 epochs, crops of 256x256 images
with flips. The paper gives no weight decay: this uses AlexNet's 5e-4 (the paper's baseline
replication). The annealing is `lr_schedule='plateau'`: divide by 10 after 5 epochs without a new
best validation top-1 error, at most 3 times, as this project's AlexNet (the paper gives neither
patience nor count; 5 rides out the error's epoch-to-epoch noise and leaves room for three decays
in 70 epochs). Input: the seed's 227 (see cnns/alexnet.py for why not the paper's 224).
Reported: 37.5% top-1 / 16.0% top-5 validation error for one convnet with the 512/1024/512 layers
(Table 2, model (b)); the seed's 14.8% top-5 is the test error of an ensemble of six.
Measured by this project: not yet (no ImageNet
run has been made on this project's machines).
"""

from configs import default


def get_config():
  return default.get_imagenet_config(
      'zfnet', image_size=227, batch_size=128, learning_rate=0.01, lr_schedule='plateau',
      plateau_patience=5, plateau_max_decays=3, num_epochs=70, weight_decay=5e-4,
      top1_error=37.5, top5_error=16.0,
      protocol='1 convnet, model (b) with 512/1024/512 maps, 10 crops (Table 2: the paper names no '
               "test crops and compares with AlexNet's 10-patch numbers)", crops=10,
      train_crop='scaled', train_scale_range=(256, 256), eval_resize=256)

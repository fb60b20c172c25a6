r"""AlphaGo's supervised-learning policy network (Silver et al., 2016), on synthetic positions.

  python train.py --config=configs/alphago_policy.py --workdir=runs/alphago_policy
  python -m cnns.summary --config=configs/alphago_policy.py

The network: cnns/alphago.py (13 convolutional layers of 192 filters, one class per board point).

Paper recipe (Methods, "Supervised learning of policy networks"): 29.4 million positions from
160,000 KGS games (6 to 9 dan), each with its 8 reflections and rotations; asynchronous SGD on 50
GPUs, mini-batches of 16, step size 0.003 halved every 80 million steps, no momentum, no weight
decay; 340 million steps (about 3 weeks). Here an epoch is one pass over the training positions:
80 million steps of 16 are 43.5 epochs of 29.4 million, 340 million steps 185 epochs.
Reported: 57.0% move-prediction accuracy on a held-out test set with all 48 feature planes
(55.7% with the board position and move history only), i.e. 43.0% top-1 error.
Measured by this project: on synthetic positions only (below).

No Go data exists on this project's machines, so the config trains on `synthetic` 19x19x48
positions with 361 classes: it shows the network trains, not that it plays. To train on real
games, a user needs KGS positions (https://u-go.net/gamerecords/, 6+ dan SGF files) turned into
the paper's 48 binary feature planes (Extended Data Table 2: stone colour, ones, zeros,
turns since, liberties, capture size, self-atari size, liberties after move, ladder capture and
escape, sensibleness) with the expert's move as the label (row * 19 + column), stored as a data
source that yields uint8 [19, 19, 48] images and int32 labels (input_pipeline/base.py's `Source`;
the synthetic source is the smallest example), with `--config.dataset=<its name>`.
"""

from configs import default

POSITIONS = 29_400_000  # KGS training positions.
BATCH = 16


def get_config():
  config = default.get_base_config()
  config.model = 'alphago_policy'
  config.dataset = 'synthetic'
  config.image_size = 19
  config.in_channels = 48
  config.num_classes = 361
  config.synthetic_train_examples = 4096
  config.synthetic_eval_examples = 1024
  config.batch_size = BATCH
  config.optimizer = 'sgd'
  config.momentum = 0.0
  config.learning_rate = 0.003
  config.lr_schedule = 'exponential'
  config.lr_decay_factor = 2.0
  config.lr_decay_every_epochs = 80_000_000 * BATCH / POSITIONS  # 43.5 epochs on KGS.
  config.num_epochs = round(340_000_000 * BATCH / POSITIONS)  # 185.
  config.weight_decay = 0.0
  config.paper.top1_error = 43.0
  config.paper.protocol = ('move prediction on a held-out KGS test set, all 48 feature planes '
                           '(55.7% accuracy with board and history planes only)')
  config.lock()
  return config

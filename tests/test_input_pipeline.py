"""Input pipelines: exact evaluation padding, per-process slices, resumable order, offline data."""

import gzip
import os

import numpy as np
import pytest

import input_pipeline
from configs import lenet5
from input_pipeline import base, synthetic
from tests.cli_runner import run_cli
from tests.conftest import DEBIAN_FASHION_MNIST, assert_one_line_error, assert_same_global_batches


def read_idx(path):
  """Independent reader of the upstream IDX format (big-endian dims after a 4-byte magic)."""
  with gzip.open(path) as f:
    data = f.read()
  ndim = data[3]
  dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.mark.parametrize('num_examples,global_batch,processes', [
    (10, 4, 1), (10, 3, 1), (250, 64, 1), (101, 8, 2), (7, 6, 3), (10000, 1024, 4)])
def test_padded_eval_counts_every_example_once(num_examples, global_batch, processes):
  steps = base.num_eval_steps(num_examples, global_batch, processes)
  local = global_batch // processes
  seen = []
  for p in range(processes):
    ids = np.arange(num_examples)[base.process_slice(num_examples, p, processes)]
    batches = ({'label': ids[i:i + local]} for i in range(0, len(ids), local))
    out = list(base.pad_eval_batches(batches, local, steps))
    assert len(out) == steps  # Same step count on every process.
    for b in out:
      assert b['label'].shape == (local,)
      seen.extend(b['label'][b['mask']])
  assert sorted(seen) == list(range(num_examples))


def synthetic_source(seed=0, process_index=0, process_count=1, num_shards=1):
  return synthetic.SyntheticSource(image_size=8, channels=3, num_classes=10, num_train=96,
                                   num_eval=50, seed=seed, process_index=process_index,
                                   process_count=process_count, num_shards=num_shards)


def test_synthetic_order_is_the_same_on_one_and_on_two_processes():
  two = [synthetic_source(process_index=i, process_count=2, num_shards=2) for i in range(2)]
  assert_same_global_batches(synthetic_source(num_shards=2), two, global_batch=16, steps=6)
  unsharded = list(synthetic_source().train_batches(0, 0, 16, 6))
  assert not np.array_equal(labels_of(unsharded), labels_of(two[0].train_batches(0, 0, 8, 6)))


def labels_of(batches):
  return np.concatenate([b['label'] for b in batches])


def test_synthetic_order_is_fixed_by_seed_and_epoch_and_resumable():
  a, b = synthetic_source(), synthetic_source()
  full = list(a.train_batches(1, 0, 8, 12))
  np.testing.assert_array_equal(labels_of(full), labels_of(b.train_batches(1, 0, 8, 12)))
  resumed = list(b.train_batches(1, 5, 8, 12))
  assert len(resumed) == 7
  for x, y in zip(full[5:], resumed):
    np.testing.assert_array_equal(x['image'], y['image'])
  assert not np.array_equal(labels_of(full), labels_of(a.train_batches(2, 0, 8, 12)))


@pytest.fixture(scope='module')
def fashion_source(fashion_mnist_dir):
  config = lenet5.get_config()
  config.data_dir = fashion_mnist_dir
  return input_pipeline.create_source(config, process_index=0, process_count=1)


def test_fashion_mnist_is_read_the_same_on_one_and_on_two_processes(fashion_mnist_dir):
  """Each of two processes reads its own training shard and half of the test split: together
  the one process's global batches, and every test image once."""
  config = lenet5.get_config()
  config.data_dir, config.data_shards, config.shuffle_buffer_size = fashion_mnist_dir, 2, 1000
  sources = [input_pipeline.create_source(config, process_index=i, process_count=n)
             for n in (1, 2) for i in range(n)]
  assert_same_global_batches(sources[0], sources[1:], global_batch=128, steps=5)

  def test_images(source, process_count):
    steps = input_pipeline.num_eval_steps(10_000, 1000, process_count)
    return [image.tobytes() + bytes([label]) for batch in source.eval_batches(
        1000 // process_count, steps) for image, label in zip(batch['image'][batch['mask']],
                                                              batch['label'][batch['mask']])]

  one = test_images(sources[0], 1)
  assert len(one) == 10_000
  halves = [test_images(source, 2) for source in sources[1:]]
  assert [len(half) for half in halves] == [5_000, 5_000]
  assert sorted(halves[0] + halves[1]) == sorted(one)


def test_offline_fashion_mnist_holds_exactly_the_debian_files(fashion_source):
  raw_images = read_idx(os.path.join(DEBIAN_FASHION_MNIST, 't10k-images-idx3-ubyte.gz'))
  raw_labels = read_idx(os.path.join(DEBIAN_FASHION_MNIST, 't10k-labels-idx1-ubyte.gz'))
  assert fashion_source.num_train_examples == 60_000
  assert fashion_source.num_eval_examples == 10_000
  batches = list(fashion_source.eval_batches(1000, 10))
  images = np.concatenate([b['image'] for b in batches])
  assert images.shape == (10_000, 32, 32, 1)
  assert all(b['mask'].all() for b in batches)
  # 28x28 images zero-padded, centred, to LeNet-5's 32x32.
  assert not images[:, :2].any() and not images[:, 30:].any()
  assert not images[:, :, :2].any() and not images[:, :, 30:].any()
  # TFDS stores examples in its own (hashed) order: compare as sets of (image, label) records.
  records = lambda imgs, labels: sorted(i.tobytes() + bytes([l]) for i, l in zip(imgs, labels))
  assert (records(images[:, 2:30, 2:30, 0], labels_of(batches))
          == records(raw_images, raw_labels))


def test_tfds_epoch_order_is_seeded_and_resumable(fashion_source):
  steps = 60_000 // 512
  epoch = labels_of(fashion_source.train_batches(3, 0, 512, steps))
  assert len(epoch) == steps * 512
  np.testing.assert_array_equal(epoch, labels_of(fashion_source.train_batches(3, 0, 512, steps)))
  resumed = labels_of(fashion_source.train_batches(3, 100, 512, steps))
  np.testing.assert_array_equal(resumed, epoch[100 * 512:])
  assert not np.array_equal(epoch, labels_of(fashion_source.train_batches(4, 0, 512, steps)))
  # A shuffle, not a resample: the first epoch's labels are a permutation of a subset.
  raw = read_idx(os.path.join(DEBIAN_FASHION_MNIST, 'train-labels-idx1-ubyte.gz'))
  assert np.all(np.bincount(epoch, minlength=10) <= np.bincount(raw, minlength=10))


def _idx(*dims: int) -> bytes:
  """An IDX header of unsigned bytes (magic 0x0000080N) and dims, then the zero bytes it declares."""
  return bytes([0, 0, 8, len(dims)]) + b''.join(d.to_bytes(4, 'big') for d in dims) + bytes(
      int(np.prod(dims)))


LABELS, IMAGES = 't10k-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz'
# Manual files that TFDS would fail on with a traceback, or read without looking at their header.
BAD_MANUAL_FILES = {
    'text named .gz': (LABELS, b'7 2 1 0 4 1\n', " is not a gzip file (it starts with b'7 2 1 0"),
    'header cut short': (IMAGES, gzip.compress(_idx(10_000, 28, 28)[:10]),
                         ': its IDX header is cut short (10 of 16 bytes)'),
    'other counts': (LABELS, gzip.compress(_idx(9_000)),
                     ' holds 9000 labels where the original holds 10000 labels'),
    'images as labels': (LABELS, gzip.compress(_idx(10_000, 1, 1)),
                         ' is not an IDX file of 10000 labels (its magic number is 00000803, '
                         'not 00000801)'),
    'data cut short': (LABELS, gzip.compress(_idx(10_000)[:5_008]),
                       ' holds 5000 bytes after its header, which declares 10000 labels'),
    'gzip cut short': (LABELS, gzip.compress(_idx(10_000))[:40], ' is a damaged gzip file'),
}


@pytest.mark.parametrize('case', BAD_MANUAL_FILES)
def test_bad_manual_files_are_one_line_naming_the_file_and_prepare_nothing(case, tmp_path):
  data_dir = tmp_path / 'tfds'
  manual = data_dir / 'downloads' / 'manual' / 'fashion_mnist'
  manual.mkdir(parents=True)
  for name in os.listdir(DEBIAN_FASHION_MNIST):
    os.symlink(os.path.join(DEBIAN_FASHION_MNIST, name), manual / name)
  name, content, message = BAD_MANUAL_FILES[case]
  (manual / name).unlink()
  (manual / name).write_bytes(content)
  result = run_cli('train.py', '--config=configs/lenet5.py', f'--config.data_dir={data_dir}',
                   f'--workdir={tmp_path / "run"}')
  assert_one_line_error(result, f'{manual / name}{message}')
  assert result.returncode == 2
  assert os.listdir(data_dir) == ['downloads'] and not (tmp_path / 'run').exists()


@pytest.mark.parametrize('dataset, held', [
    ('synthetic', '1,290 images of 100000x100000x1 in host memory, 12.9TB'),
    ('fashion_mnist', '70,000 images of 100000x100000x1 in host memory, 700TB')])
def test_images_kept_in_host_memory_must_fit_in_it(dataset, held, fashion_mnist_dir):
  """The synthetic images and the small datasets' cache: refused before anything is allocated."""
  config = lenet5.get_config()
  config.dataset, config.data_dir, config.image_size = dataset, fashion_mnist_dir, 100_000
  with pytest.raises(input_pipeline.DataError, match=f'image_size=100000: {dataset} keeps {held}, '
                     "more than this machine's"):
    input_pipeline.create_source(config, process_index=0, process_count=1)


def test_unknown_dataset_lists_the_known_ones():
  config = lenet5.get_config()
  config.dataset = 'imagenet9'
  with pytest.raises(input_pipeline.DataError, match='fashion_mnist'):
    input_pipeline.create_source(config, process_index=0, process_count=1)


def test_only_the_synthetic_sources_fields_are_unused_on_another_dataset():
  """What a run records of its config (checkpoints compare it on resume) leaves out."""
  config = lenet5.get_config()
  synthetic_fields = {'synthetic_train_examples', 'synthetic_eval_examples'}
  assert input_pipeline.unused_config_fields(config) == synthetic_fields
  assert synthetic_fields <= set(config)
  config.dataset = 'synthetic'
  assert input_pipeline.unused_config_fields(config) == set()
  config.dataset = 'imagenet9'
  with pytest.raises(input_pipeline.DataError, match='fashion_mnist'):
    input_pipeline.unused_config_fields(config)

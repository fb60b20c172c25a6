"""Your own images (input_pipeline/image_folder.py): a folder in TFDS's ImageFolder layout trains
and evaluates as ImageNet does, every image counted once; layout mistakes are one line each; real
Fashion-MNIST written as PNG files is learnt."""

import gzip
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import input_pipeline
from app import loop, resume
from configs import resnet18
from input_pipeline import EvalView, folder_identity, image_folder
from tests import ilsvrc_fixture
from tests.cli_runner import run_cli
from tests.conftest import DEBIAN_FASHION_MNIST, assert_one_line_error
from training.checkpoints import committed_steps
from training.errors import ConfigError

CLASSES = ('cat', 'dog', 'fox')
# Per class: (height, width, format) of the training and evaluation images; odd sizes, PNG,
# grayscale and CMYK among them.
TRAIN = [(375, 500, 'JPEG'), (41, 97, 'PNG'), (300, 200, 'L'), (256, 256, 'CMYK'),
         (123, 457, 'JPEG'), (480, 640, 'JPEG')]
VAL = [(333, 500, 'JPEG'), (77, 77, 'PNG-L'), (301, 299, 'JPEG')]


def write_image(path: str, rng, height: int, width: int, kind: str) -> None:
  image = Image.fromarray(ilsvrc_fixture.photo_like(rng, height, width))
  if kind.startswith('PNG'):
    (image.convert('L') if kind == 'PNG-L' else image).save(path + '.png')
  else:
    image.convert('RGB' if kind == 'JPEG' else kind).save(path + '.jpg', quality=90)


def write_folder(root, splits=(('train', TRAIN), ('val', VAL))) -> str:
  rng = np.random.default_rng(0)
  for split, images in splits:
    for name in CLASSES:
      os.makedirs(os.path.join(root, split, name))
      for i, (height, width, kind) in enumerate(images):
        write_image(os.path.join(root, split, name, f'{name}_{i}'), rng, height, width, kind)
      # What macOS leaves on copies: hidden, not images, not read.
      with open(os.path.join(root, split, name, f'._{name}_0.jpg'), 'wb') as f:
        f.write(b'\0\5\26\7 AppleDouble')
  return str(root)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return write_folder(tmp_path_factory.mktemp('folder'))


def config_for(root, **overrides):
  config = resnet18.get_config()
  config.dataset, config.data_dir, config.num_classes = 'image_folder', root, -1
  config.image_size, config.batch_size = 32, 6
  config.update(overrides)
  return config


def test_folder_trains_an_epoch_and_evaluates_on_one_and_ten_crops(folder, tmp_path):
  flags = ('--config=configs/resnet18.py', '--config.dataset=image_folder',
           f'--config.data_dir={folder}', '--config.num_classes=-1', '--config.image_size=32',
           '--config.batch_size=6', '--config.num_epochs=1', '--config.log_every_steps=1')
  result = run_cli('train.py', *flags, f'--workdir={tmp_path}')
  assert result.returncode == 0, result.stderr
  assert 'on 9 examples' in result.stdout  # 3 classes x 3 evaluation images, each once.
  for crops in (1, 10):
    evaluate = run_cli('evaluate.py', *flags, f'--workdir={tmp_path}', f'--crops={crops}')
    assert evaluate.returncode == 0, evaluate.stderr
    with open(tmp_path / 'eval_results.json') as f:
      assert (json.load(f)['num_examples'], crops) == (9, crops)
  others = [f for f in flags if 'data_dir' not in f]
  # Evaluating on a folder of other classes: refused before any weights are read, the results of
  # the last evaluation kept.
  renamed = tmp_path / 'renamed'
  shutil.copytree(folder, renamed)
  for split in ('train', 'val'):
    os.rename(renamed / split / 'fox', renamed / split / 'wolf')
  results = (tmp_path / 'eval_results.json').read_bytes()
  result = run_cli('evaluate.py', *others, f'--config.data_dir={renamed}', f'--workdir={tmp_path}')
  assert_one_line_error(result, f'was trained on other classes than {renamed} has: 1 only in the '
                                'checkpoint (fox), 1 only in the data (wolf)')
  assert result.returncode == 2 and (tmp_path / 'eval_results.json').read_bytes() == results
  # Resuming on changed files would change the order and the statistics: refused, naming them.
  changed = tmp_path / 'changed'
  shutil.copytree(folder, changed)
  write_image(str(changed / 'train' / 'cat' / 'extra'), np.random.default_rng(1), 50, 60, 'JPEG')
  result = run_cli('train.py', *others, f'--config.data_dir={changed}', '--config.num_epochs=2',
                   f'--workdir={tmp_path}')
  assert_one_line_error(result, 'was trained on other files of image_folder: files 1 added '
                                '(train/cat/extra.jpg); that changes the data order and '
                                'statistics: restore the files, or add '
                                '--config.accept_changed_data=True')


@pytest.mark.parametrize('view,shape', [(EvalView(), (32, 32, 3)),
                                        (EvalView('five'), (5, 32, 32, 3))])
def test_every_image_is_counted_once_on_one_and_two_processes(folder, view, shape):
  config = config_for(folder)

  def images(process_count):
    found = []
    for p in range(process_count):
      source = input_pipeline.create_source(config, process_index=p,
                                            process_count=process_count)
      assert source.class_names == list(CLASSES)
      steps = input_pipeline.num_eval_steps(source.num_eval_examples, 4, process_count)
      for batch in source.eval_batches(4 // process_count, steps, view):
        assert batch['image'].shape[1:] == shape
        found += [(label, image.tobytes()) for label, image, real in
                  zip(batch['label'], batch['image'], batch['mask']) if real]
    return sorted(found)

  one = images(1)
  assert len(one) == 9 and len({image for _, image in one}) == 9
  assert sorted(label for label, _ in one) == [0] * 3 + [1] * 3 + [2] * 3
  assert images(2) == one


def test_training_order_is_the_same_on_one_and_two_processes_and_resumable(folder):
  from tests.conftest import assert_same_global_batches
  config = config_for(folder, data_shards=2)
  one = input_pipeline.create_source(config, process_index=0, process_count=1)
  two = [input_pipeline.create_source(config, process_index=p, process_count=2) for p in (0, 1)]
  assert_same_global_batches(one, two, global_batch=6, steps=3)
  epoch = list(one.train_batches(1, 0, 6, 3))
  for whole, resumed in zip(epoch[1:], one.train_batches(1, 1, 6, 3), strict=True):
    np.testing.assert_array_equal(whole['image'], resumed['image'])
  assert not np.array_equal(epoch[0]['image'], next(one.train_batches(0, 0, 6, 3))['image'])


def test_a_folder_is_known_by_its_files_paths_and_contents(tmp_path, capsys):
  """Moved, touched, copied without its times or with a file copied back byte for byte, a folder
  is the same (known without reading a byte where the times are kept); added, removed and
  changed files are named, and a resume on them goes on only when accepted."""
  identify = lambda root: input_pipeline.create_source(config_for(str(root)), process_index=0,
                                                       process_count=1)
  first = identify(write_folder(tmp_path / 'one', (('train', TRAIN[:2]), ('val', VAL[:1]))))
  assert 'reading 9 of the 9 images' in capsys.readouterr().out
  os.rename(tmp_path / 'one', tmp_path / 'two')
  assert identify(tmp_path / 'two').fingerprint == first.fingerprint
  assert 'reading' not in capsys.readouterr().out  # Its listing of sizes and times is known.
  shutil.copytree(tmp_path / 'two', tmp_path / 'three', copy_function=shutil.copyfile)
  cat = tmp_path / 'three' / 'train' / 'cat' / 'cat_0.jpg'
  os.utime(tmp_path / 'two' / 'train' / 'dog' / 'dog_1.png')
  assert identify(tmp_path / 'two').fingerprint == first.fingerprint
  assert 'reading 1 of the 9 images' in capsys.readouterr().out  # Only the touched one.
  cat.write_bytes(cat.read_bytes())
  assert identify(tmp_path / 'three').fingerprint == first.fingerprint
  assert 'checking' not in capsys.readouterr().out  # Nor are its images decoded again.
  cat.write_bytes((tmp_path / 'three' / 'train' / 'dog' / 'dog_0.jpg').read_bytes())
  os.remove(tmp_path / 'three' / 'val' / 'fox' / 'fox_0.jpg')
  shutil.copyfile(tmp_path / 'three' / 'val' / 'dog' / 'dog_0.jpg',
                  tmp_path / 'three' / 'val' / 'fox' / 'fox_1.jpg')
  changed = identify(tmp_path / 'three')
  differences = ('files 1 added (val/fox/fox_1.jpg), 1 removed (val/fox/fox_0.jpg), 1 changed '
                 '(train/cat/cat_0.jpg)')
  assert changed.data_changes(first.fingerprint) == differences
  config = {'dataset': 'image_folder'}
  saved = {'config': config, 'dataset': resume.dataset_record(first)}
  record = {'config': config, 'dataset': resume.dataset_record(changed)}
  with pytest.raises(ConfigError, match=re.escape(f'other files of image_folder: {differences}')):
    resume.check_resume(saved, record, 3, changed.data_changes)
  record['config'] = {**config, 'accept_changed_data': True}
  assert resume.check_resume(saved, record, 3, changed.data_changes) == f'data: {differences}'
  # Checkpoints of before recorded absolute paths and times: equal, or refused as changed.
  legacy = folder_identity.legacy_fingerprint(image_folder.scan(str(tmp_path / 'three'))[1])
  assert changed.data_changes(legacy) is None
  assert 'absolute path' in identify(tmp_path / 'two').data_changes(legacy)


def test_an_image_deleted_or_damaged_after_the_start_is_named(tmp_path):
  """TensorFlow's error names no file that does not decode: the source names it."""
  root = write_folder(tmp_path / 'data', (('train', TRAIN[:2]), ('val', VAL[:1])))
  source = input_pipeline.create_source(config_for(root), process_index=0, process_count=1)
  os.remove(os.path.join(root, 'train', 'dog', 'dog_1.png'))
  with pytest.raises(input_pipeline.DataError, match='dog_1.png was deleted during the run: '
                     r'restore it and rerun the same command \(training resumes'):
    list(source.train_batches(0, 0, 6, 1))
  for name in ('cat', 'fox'):
    with open(os.path.join(root, 'val', name, f'{name}_0.jpg'), 'r+b') as f:
      f.truncate(200)
  with pytest.raises(input_pipeline.DataError, match=r'val/cat/cat_0.jpg is no longer a readable '
                     r'image \(.+\) during the run, and 1 more \(.+/val/fox/fox_0.jpg\): '
                     'restore them'):
    list(source.eval_batches(3, 1))


def test_a_run_whose_image_is_damaged_saves_its_steps_and_resumes_once_restored(
    folder, tmp_path, monkeypatch):
  """One line naming the file, exit 2, the steps trained until then saved; the file copied back
  (new times, same bytes) into the folder moved elsewhere, the same command resumes."""
  root = tmp_path / 'data'
  shutil.copytree(folder, root)
  damaged = root / 'train' / 'cat' / 'cat_0.jpg'
  original = damaged.read_bytes()
  evaluate = loop.Run.evaluate

  def damaging(run, epoch, **kwargs):  # Between the epochs, which read every training image.
    damaged.write_bytes(original[:200])
    return evaluate(run, epoch, **kwargs)

  monkeypatch.setattr(loop.Run, 'evaluate', damaging)
  flags = ('--config=configs/lenet5.py', '--config.dataset=image_folder',
           '--config.num_classes=-1', '--config.in_channels=3', '--config.batch_size=6',
           '--config.num_epochs=2', '--config.checkpoint_every_steps=100',
           f'--workdir={tmp_path / "run"}')
  result = run_cli('train.py', *flags, f'--config.data_dir={root}')
  assert_one_line_error(result, f'{damaged} is no longer a readable image')
  assert result.returncode == 2
  saved = max(committed_steps(str(tmp_path / 'run' / 'checkpoints')), default=0)
  assert saved >= 3  # None was due before step 100.
  monkeypatch.undo()
  damaged.write_bytes(original)
  os.rename(root, tmp_path / 'moved')
  result = run_cli('train.py', *flags, f'--config.data_dir={tmp_path / "moved"}')
  assert result.returncode == 0, result.stderr
  assert f'resumed at step {saved}' in result.stderr and 'done: 6 steps' in result.stdout


def break_layout(root, mistake: str) -> str:
  if mistake == 'no train split':
    os.rename(os.path.join(root, 'train'), os.path.join(root, 'training'))
  elif mistake == 'empty class':
    for f in os.listdir(os.path.join(root, 'val', 'dog')):
      os.remove(os.path.join(root, 'val', 'dog', f))
  elif mistake == 'other classes':
    os.rename(os.path.join(root, 'val', 'fox'), os.path.join(root, 'val', 'wolf'))
  elif mistake == 'unreadable image':
    with open(os.path.join(root, 'train', 'cat', 'cat_0.jpg'), 'r+b') as f:
      f.truncate(200)
  elif mistake == '1-bit BMP':  # Pillow reads it; TensorFlow's decoder, which trains, does not.
    Image.new('1', (20, 20)).save(os.path.join(root, 'val', 'fox', 'fox_9.bmp'))
  return root


@pytest.mark.parametrize('mistake, message', [
    ('missing root', 'is not a directory of images'),
    ('no train split', 'has no train/ folder'),
    ('empty class', 'val/dog holds no images'),
    ('other classes', 'val has other classes than train/: fox, wolf in only one of them'),
    ('unreadable image', 'cat_0.jpg is not a readable image'),
    ('1-bit BMP', 'fox_9.bmp is not a readable image'),
])
def test_layout_mistakes_are_one_line_and_write_nothing(tmp_path, mistake, message):
  root = (str(tmp_path / 'absent') if mistake == 'missing root' else
          break_layout(write_folder(tmp_path / 'data', (('train', TRAIN[:2]), ('val', VAL[:1]))),
                       mistake))
  with pytest.raises(input_pipeline.DataError, match=message.replace('/', '.')):
    input_pipeline.create_source(config_for(root), process_index=0, process_count=1)
  if mistake == 'unreadable image':  # The whole command: one line, no workdir.
    result = run_cli('train.py', '--config=configs/resnet18.py', '--config.dataset=image_folder',
                       f'--config.data_dir={root}', '--config.num_classes=-1',
                       f'--workdir={tmp_path / "run"}')
    assert_one_line_error(result, message)
    assert not (tmp_path / 'run').exists()


def read_idx(name: str) -> np.ndarray:
  with gzip.open(os.path.join(DEBIAN_FASHION_MNIST, name)) as f:
    data = f.read()
  return np.frombuffer(data, np.uint8, offset=16 if 'images' in name else 8)


def test_fashion_mnist_as_png_files_is_learnt(tmp_path):
  """2,000 real Fashion-MNIST training images and 500 test images, written as PNG files in the
  folder layout, train LeNet-5 well past chance (10%) in three epochs."""
  root = tmp_path / 'fashion'
  for split, prefix, count in (('train', 'train', 2000), ('test', 't10k', 500)):
    images = read_idx(f'{prefix}-images-idx3-ubyte.gz').reshape(-1, 28, 28)[:count]
    labels = read_idx(f'{prefix}-labels-idx1-ubyte.gz')[:count]
    for i, (image, label) in enumerate(zip(images, labels)):
      folder = root / split / f'class_{label}'
      folder.mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(folder / f'{i:05d}.png')
  result = run_cli('train.py', '--config=configs/lenet5.py', '--config.dataset=image_folder',
                     f'--config.data_dir={root}', '--config.in_channels=3',
                     '--config.num_epochs=3', '--config.batch_size=50',
                     "--config.crop_area_range=(0.64, 1.0)", '--config.eval_resize=32',
                     f'--workdir={tmp_path / "run"}')
  assert result.returncode == 0, result.stderr
  with open(tmp_path / 'run' / 'metrics.jsonl') as f:
    final = [json.loads(line) for line in f][-1]
  assert final['eval/num_examples'] == 500
  assert final['eval/top1_acc'] > 0.6, final


@pytest.mark.usefixtures('system_torchvision')
def test_the_fine_tuning_config_starts_from_torchvisions_resnet18(folder, tmp_path):
  """configs/resnet18_folder.py as its docstring runs it: import, then fine-tune on the folder."""
  from tests.test_published import photographs, torchvision_reference
  path, _ = torchvision_reference('resnet18', tmp_path, photographs(32, 1))
  imported = run_cli('import_weights.py', '--config=configs/resnet18.py', f'--weights={path}',
                       f'--workdir={tmp_path / "tv"}')
  assert imported.returncode == 0, imported.stderr
  result = run_cli('train.py', '--config=configs/resnet18_folder.py', f'--config.data_dir={folder}',
                     f'--config.init_from={tmp_path / "tv"}', '--config.image_size=32',
                     '--config.batch_size=6', '--config.num_epochs=1',
                     f'--workdir={tmp_path / "tuned"}')
  assert result.returncode == 0, result.stderr
  assert 'copied 20 of 21 layers, all but fc' in result.stderr
  assert 'on 9 examples' in result.stdout

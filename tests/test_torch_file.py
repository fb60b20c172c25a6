"""The torch-free checkpoint reader against files written by real PyTorch, in both formats.

PyTorch is not in the venv: Debian's system python (python3-torch, python3-torchvision) writes the
checkpoints and the arrays they must read back as, in a child process. Refusing foreign globals and
reporting damaged files need no torch: those pickles are crafted here.
"""

import json
import os
import pickle
import re
import zipfile

import numpy as np
import pytest

from cnns.published import WeightsError, torch_file, torchvision
from cnns.published.torch_file import load_state_dict
from tests import system_python

# Runs under the system python, in the output folder: each checkpoint `<name>.pth` (zip format)
# and `<name>-legacy.pth` (torch.save's legacy format), with the state dict it must read back as
# `<name>.npz` and `<name>.json` (keys in order, dtypes). bfloat16 goes to numpy as its int16 bits.
WRITER = r'''
import collections, json, sys
import numpy as np, torch, torchvision

torch.manual_seed(0)
resnet = torchvision.models.resnet18(weights=None)
for m in resnet.modules():
  if isinstance(m, torch.nn.BatchNorm2d):  # Not the trivial 1, 0, 0, 1 of a fresh model.
    m.weight.data.normal_()
    m.bias.data.normal_()
    m.running_mean.uniform_(-1, 1)
    m.running_var.uniform_(0.5, 2)
    m.num_batches_tracked.fill_(7)

base = torch.randn(5, 6)
odd = collections.OrderedDict([
    ('transposed', base.t()),              # Non-contiguous: strides (1, 6).
    ('sliced', base[1:4, 2:5]),            # Storage offset 8, shares base's storage.
    ('base', base),
    ('strided', base[::2, ::3]),
    ('half', torch.randn(3, 2).half().t()),
    ('bfloat16', torch.randn(4).bfloat16()),
    ('double', torch.randn(2, 2, dtype=torch.float64)),
    ('long', torch.arange(-3, 9).reshape(3, 4)[:, 1:]),
    ('int', torch.tensor([1, -2, 2**31 - 1], dtype=torch.int32)),
    ('uint8', torch.tensor([0, 7, 255], dtype=torch.uint8)),
    ('int8', torch.tensor([-128, 0, 127], dtype=torch.int8)),
    ('bool', torch.tensor([[True, False], [False, True]])),
    ('scalar', torch.tensor(3.5)),
    ('empty', torch.zeros(0, 3)),
    ('expanded', torch.randn(3, 1).expand(3, 4)),  # Stride 0.
])
params = collections.OrderedDict(
    (k, torch.nn.Parameter(v)) for k, v in [('w', torch.randn(2, 3)), ('b', torch.randn(2))])
training = {'model': params, 'epoch': 3, 'optimizer': {'state': {0: {'momentum': torch.ones(2)}},
                                                     'param_groups': [{'lr': 0.1}]}}

def save(name, obj, state_dict):
  torch.save(obj, f'{name}.pth')
  torch.save(obj, f'{name}-legacy.pth', _use_new_zipfile_serialization=False)
  arrays = {k: (v.detach().view(torch.int16) if v.dtype == torch.bfloat16 else v.detach()).numpy()
            for k, v in state_dict.items()}
  np.savez(f'{name}.npz', **arrays)
  with open(f'{name}.json', 'w') as f:
    json.dump([[k, str(v.dtype).replace('torch.', '')] for k, v in state_dict.items()], f)

save('resnet18', resnet.state_dict(), resnet.state_dict())
save('odd', odd, odd)
save('training', training, params)
'''


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory, system_torchvision):  # pylint: disable=unused-argument
  folder = tmp_path_factory.mktemp('torch_files')
  system_python.run(WRITER, cwd=folder)
  return folder


def assert_reads_as_saved(path, folder, name):
  state_dict = load_state_dict(str(path))
  with open(folder / f'{name}.json') as f:
    expected = json.load(f)
  assert [(k, str(v.dtype)) for k, v in state_dict.items()] == [tuple(e) for e in expected]
  with np.load(folder / f'{name}.npz') as arrays:
    for key, array in state_dict.items():
      assert array.flags.c_contiguous and array.flags.owndata, key
      if array.dtype.name == 'bfloat16':
        array = array.view(np.int16)
      assert array.shape == arrays[key].shape, key
      np.testing.assert_array_equal(array, arrays[key], err_msg=key)


@pytest.mark.usefixtures('system_torchvision')
@pytest.mark.parametrize('suffix', ['', '-legacy'])
@pytest.mark.parametrize('name', ['resnet18', 'odd', 'training'])
def test_reads_what_torch_saves(checkpoints, name, suffix):
  assert_reads_as_saved(checkpoints / f'{name}{suffix}.pth', checkpoints, name)


@pytest.mark.usefixtures('system_torchvision')
def test_torch_writes_the_zip_layout_read(checkpoints):
  with zipfile.ZipFile(checkpoints / 'odd.pth') as archive:
    names = archive.namelist()
  assert 'odd/data.pkl' in names and 'odd/data/0' in names


@pytest.mark.usefixtures('system_torchvision')
@pytest.mark.parametrize('suffix', ['', '-legacy'])
def test_truncated_file(checkpoints, tmp_path, suffix):
  data = (checkpoints / f'odd{suffix}.pth').read_bytes()
  for size in (len(data) // 2, len(data) - 3):
    path = tmp_path / f'cut-{size}.pth'
    path.write_bytes(data[:size])
    with pytest.raises(ValueError, match=re.escape(str(path))) as error:
      load_state_dict(str(path))
    assert '\n' not in str(error.value)


def test_not_a_checkpoint(tmp_path):
  for name, data in [('text.pth', b'hello, this is not a checkpoint\n'), ('empty.pth', b''),
                     ('plain.pkl', pickle.dumps({'a': 1}))]:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=re.escape(f'{path}: ') + '.*not a PyTorch checkpoint'):
      load_state_dict(str(path))


class _Exploit:
  """Pickles as a call of os.system, the attack a restricted unpickler exists to stop."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def _legacy_header() -> bytes:
  sys_info = {'protocol_version': 1001, 'little_endian': True,
              'type_sizes': {'short': 2, 'int': 4, 'long': 8}}
  return b''.join(pickle.dumps(x, protocol=2) for x in (0x1950a86a20f9469cfc6c, 1001, sys_info))


@pytest.mark.parametrize('layout', ['zip', 'legacy'])
def test_refuses_foreign_globals_without_running_them(tmp_path, layout):
  marker = tmp_path / 'exploited'
  payload = pickle.dumps({'weight': _Exploit(marker)}, protocol=2)
  path = tmp_path / f'evil-{layout}.pth'
  if layout == 'zip':
    with zipfile.ZipFile(path, 'w') as archive:
      archive.writestr('evil/data.pkl', payload)
      archive.writestr('evil/version', '3\n')
  else:
    path.write_bytes(_legacy_header() + payload + pickle.dumps([], protocol=2))
  global_name = f'{os.system.__module__}.system'  # posix.system on Linux.
  message = f'{path}: refused to unpickle the global {global_name}'
  with pytest.raises(ValueError, match=re.escape(message)):
    load_state_dict(str(path))
  assert not marker.exists()


def _text(s: str) -> bytes:
  return b'X' + len(s).to_bytes(4, 'little') + s.encode()  # BINUNICODE.


def _global(module: str, name: str) -> bytes:
  return f'c{module}\n{name}\n'.encode()  # GLOBAL.


def _int(n: int) -> bytes:
  return b'J' + n.to_bytes(4, 'little', signed=True)  # BININT.


def _crafted_tensor_pickle(offset: int, size, numel: int = 4, strides=None) -> bytes:
  """data.pkl of {'w': a float tensor of shape `size` (an int: one dimension), contiguous unless
  `strides` are given, from `offset`} on storage '0' of `numel` elements, by hand: pickle would
  look torch's globals up to write them."""
  text, global_ = _text, _global
  shape = (size,) if isinstance(size, int) else tuple(size)
  strides = strides or tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
  ints = lambda values: b'(' + b''.join(_int(v) for v in values) + b't'  # MARK ... TUPLE.
  storage = (b'(' + text('storage') + global_('torch', 'FloatStorage') + text('0') + text('cpu')
             + _int(numel) + b't' + b'Q')  # MARK ... TUPLE, BINPERSID.
  args = (b'(' + storage + _int(offset) + ints(shape) + ints(strides)
          + b'\x89' + b'N' + b't')  # (storage, offset, size, stride, False, None)
  return (b'\x80\x02}' + text('w') + global_('torch._utils', '_rebuild_tensor_v2') + args
          + b'Rs.')  # REDUCE, SETITEM, STOP.


@pytest.mark.parametrize('offset,size', [(1, 3), (2, 3), (0, 5)])
def test_tensor_views_stay_in_their_storage(tmp_path, offset, size):
  """A crafted view must not make as_strided read memory outside the storage (4 floats)."""
  path = tmp_path / 'crafted.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('crafted/data.pkl', _crafted_tensor_pickle(offset, size))
    archive.writestr('crafted/data/0', np.arange(4, dtype=np.float32).tobytes())
  if offset + size <= 4:
    np.testing.assert_array_equal(load_state_dict(str(path))['w'], np.arange(offset, offset + size))
  else:
    message = re.escape(f'{path}: w: ') + '.* reaches past its storage of 4 elements'
    with pytest.raises(ValueError, match=message):
      load_state_dict(str(path))


@pytest.mark.parametrize('numel,data,compression,message', [
    # 4 MB of zeros in 4 kB: consistent sizes, but the reader would inflate it all.
    (1 << 20, bytes(4 << 20), zipfile.ZIP_DEFLATED,
     'its record crafted/data/0 is compressed, which torch.save never does'),
    (4, bytes(32), zipfile.ZIP_STORED, 'w: its storage 0 declares 4 elements of 4 bytes (16 '
                                       'bytes), its record crafted/data/0 holds 32 bytes'),
    (1 << 30, bytes(16), zipfile.ZIP_STORED, 'w: its storage 0 declares 1073741824 elements of 4 '
                                             'bytes (4294967296 bytes), its record'),
], ids=['deflated', 'record larger than declared', 'record smaller than declared'])
def test_storage_sizes_are_checked_against_the_file_before_reading(tmp_path, numel, data,
                                                                   compression, message):
  path = tmp_path / 'crafted.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('crafted/data.pkl', _crafted_tensor_pickle(0, 4, numel))
    archive.writestr('crafted/data/0', data, compress_type=compression)
  with pytest.raises(ValueError, match=re.escape(f'{path}: {message}')):
    load_state_dict(str(path))


def test_compressed_pickle_is_refused_before_reading(tmp_path):
  """data.pkl deflated: 4 MB of bytes in 4 kB, which the unpickler would inflate and hold."""
  path = tmp_path / 'crafted.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('crafted/data.pkl', pickle.dumps(bytes(4 << 20), protocol=4),
                     compress_type=zipfile.ZIP_DEFLATED)
  with pytest.raises(ValueError, match=re.escape(
      f'{path}: its record crafted/data.pkl is compressed, which torch.save never does')):
    load_state_dict(str(path))


def test_storage_record_claiming_more_than_the_file_is_refused_before_reading(tmp_path):
  """A record whose central directory entry says 1 GiB, as its tensor does, in a file of 300
  bytes: its sizes (compressed and not, offsets 20 and 24) rewritten by hand."""
  path = tmp_path / 'crafted.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('crafted/data.pkl', _crafted_tensor_pickle(0, 4, numel=1 << 28))
    archive.writestr('crafted/data/0', bytes(16))
  data = bytearray(path.read_bytes())
  entry = data.rindex(b'PK\x01\x02', 0, data.rindex(b'crafted/data/0'))
  data[entry + 20:entry + 28] = (1 << 30).to_bytes(4, 'little') * 2
  path.write_bytes(data)
  with pytest.raises(ValueError, match=re.escape(
      f'{path}: w: its storage record crafted/data/0 claims 1073741824 bytes, more than the '
      f'{len(data)} bytes of the file')):
    load_state_dict(str(path))


def test_legacy_storage_larger_than_the_file_is_refused_before_reading(tmp_path):
  """A legacy stream's element count (here 2**40 floats, 4 TiB) is checked against what follows it
  in the file before `read` allocates that much."""
  path = tmp_path / 'crafted-legacy.pth'
  path.write_bytes(_legacy_header() + _crafted_tensor_pickle(0, 4) + pickle.dumps(['0'], protocol=2)
                   + (1 << 40).to_bytes(8, 'little') + bytes(16))
  with pytest.raises(ValueError, match=re.escape(
      f'{path}: truncated: storage 0 needs {4 << 40} bytes, 16 remain')):
    load_state_dict(str(path))


def test_pickle_cannot_rewrite_the_reader(tmp_path):
  """BUILD sets attributes of whatever is on the stack: here the `__defaults__` of a rebuilder,
  then the pickle would go on to an empty (valid) state dict."""
  payload = (b'\x80\x02' + _global('torch._utils', '_rebuild_tensor_v2') + b'N}'
             + _text('__defaults__') + b'N' + b's\x86b0}.')  # (None, {..}), BUILD, POP, {}, STOP.
  path = tmp_path / 'rewrite.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('rewrite/data.pkl', payload)
  with pytest.raises(ValueError, match=re.escape(f'{path}: ')):
    load_state_dict(str(path))
  assert torch_file._rebuild_tensor_v2.__defaults__ == (False, None, None)


def test_a_convolution_weight_of_another_rank_is_named():
  """A crafted file whose conv1.weight is a vector: one line naming it, not NumPy's transpose
  error."""
  state = torchvision.StateDict('crafted.pth', {'conv1.weight': np.zeros(27, np.float32)})
  with pytest.raises(WeightsError, match=r"crafted.pth: conv1.weight has shape \(27,\), not a "
                                         r"convolution's \[out, in, height, width\]"):
    torchvision._kernel(state, 'conv1.weight')  # pylint: disable=protected-access


def test_a_tensor_repeating_its_storage_into_gigabytes_is_refused(tmp_path):
  """Strides (0, 0) over one element as a 16384 x 32768 tensor: 2 GiB from a 400-byte file."""
  path = tmp_path / 'crafted.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('crafted/data.pkl', _crafted_tensor_pickle(0, (16384, 32768), 1, (0, 0)))
    archive.writestr('crafted/data/0', np.zeros(1, np.float32).tobytes())
  with pytest.raises(ValueError, match=re.escape(f'{path}: w: shape (16384, 32768) repeats the 1 '
                                                 'elements of its storage')):
    load_state_dict(str(path))

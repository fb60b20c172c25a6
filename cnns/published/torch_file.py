"""A torch-free reader of PyTorch checkpoints holding a state dict of tensors.

The importer must read torchvision's published files (`resnet50-0676ba61.pth`, `vgg16-397923af.pth`)
without installing PyTorch, so this module reads both formats `torch.save` writes:

- the zip archive (the default since torch 1.6): `<archive>/data.pkl` holds the object, and each
  storage is the raw little-endian bytes of `<archive>/data/<key>`;
- the legacy stream (older published files, or `_use_new_zipfile_serialization=False`): pickles of
  the magic number, the protocol version and the sys info, then the object, then the list of storage
  keys, then for each key its element count (int64, little-endian) and its raw bytes.

Pickles run code by design, so they are read by an unpickler that resolves only the globals a state
dict needs (`collections.OrderedDict`, torch's tensor rebuilders, and the typed storage classes as
markers of an element type) and refuses every other one before anything runs: as safe as
`torch.load(weights_only=True)`. Each storage's declared size is checked against the bytes the
file holds for it before any is read, so that memory stays within the file's size. Anything that
is not such a checkpoint, damaged or truncated, is a `ValueError` of one line naming the file.
"""

import collections
import dataclasses
import io
import math
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple

import ml_dtypes
import numpy as np

_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b'PK\x03\x04'

# The typed storage classes that torch pickles by name (`torch.FloatStorage`, or `torch.cuda.*` in
# a file saved from a GPU), by the element type they hold. Quantized storages are refused.
_STORAGE_DTYPES = {
    'DoubleStorage': np.float64,
    'FloatStorage': np.float32,
    'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16,
    'LongStorage': np.int64,
    'IntStorage': np.int32,
    'ShortStorage': np.int16,
    'CharStorage': np.int8,
    'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
    'ComplexFloatStorage': np.complex64,
    'ComplexDoubleStorage': np.complex128,
}
_STORAGE_MODULES = ('torch', 'torch.cuda')


class CheckpointError(ValueError):
  """A file is not a PyTorch checkpoint holding a state dict of tensors, or is damaged."""


# The objects a pickle can reach are named tuples: pickle's BUILD, which sets attributes of whatever
# is on its stack, cannot change them after their checks (a frozen dataclass with slots has a
# __setstate__ that BUILD would call).


class _StorageType(NamedTuple):
  """What a `torch.FloatStorage`-style global unpickles to: a marker of the element type only, not
  callable, so a pickle cannot build anything from it."""
  name: str
  dtype: np.dtype


@dataclasses.dataclass(eq=False)
class _Storage:
  """A storage's raw bytes, read once however many tensors share it (unreachable from the pickle).

  `itemsize` and `numel` (its size in elements) are those of the first reference: the legacy
  format counts a storage's bytes in its elements.
  """
  key: str
  itemsize: int
  numel: int
  data: bytes | None = None


class _StorageView(NamedTuple):
  """A typed window on a storage's bytes: the whole storage, or a legacy storage view (offset and
  size in elements; size None: to the end)."""
  storage: _Storage
  dtype: np.dtype
  offset: int = 0
  size: int | None = None


class _TensorRef(NamedTuple):
  """A tensor as the pickle describes it, turned into an array once its storage's bytes are read."""
  view: _StorageView
  offset: int  # In elements, as are the strides.
  shape: tuple[int, ...]
  strides: tuple[int, ...]


def _is_int(x: Any) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _int_tuple(x: Any) -> bool:
  return type(x) is tuple and all(_is_int(n) and n >= 0 for n in x)


def _rebuild_tensor(storage, storage_offset, size, stride):
  """`torch._utils._rebuild_tensor` (files of torch 0.3 and before)."""
  if not isinstance(storage, _StorageView):
    raise CheckpointError(f'a tensor is built on {type(storage).__name__}, not a storage')
  if not (_is_int(storage_offset) and storage_offset >= 0 and _int_tuple(size)
          and _int_tuple(stride) and len(size) == len(stride)):
    raise CheckpointError(f'a tensor has a bad geometry: offset {storage_offset!r:.40}, '
                          f'size {size!r:.80}, stride {stride!r:.80}')
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  """`torch._utils._rebuild_tensor_v2`; gradients, hooks and metadata mean nothing to arrays."""
  del requires_grad, backward_hooks, metadata
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  """`torch._utils._rebuild_parameter`: a dict of `nn.Parameter`s is a state dict too."""
  del requires_grad, backward_hooks
  if not isinstance(data, _TensorRef):
    raise CheckpointError(f'a parameter wraps {type(data).__name__}, not a tensor')
  return data


class _Global(NamedTuple):
  """A callable global the pickle may use, wrapped: a BUILD in the pickle could otherwise set
  attributes (`__defaults__`, `__code__`) of this module's own functions."""
  function: Callable[..., Any]

  def __call__(self, *args):
    return self.function(*args)


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,  # A builtin type: immutable.
    ('torch._utils', '_rebuild_tensor'): _Global(_rebuild_tensor),
    ('torch._utils', '_rebuild_tensor_v2'): _Global(_rebuild_tensor_v2),
    ('torch._utils', '_rebuild_parameter'): _Global(_rebuild_parameter),
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only `_ALLOWED_GLOBALS` and storage types; turns storage ids into `_StorageView`s.

  `storages` collects each storage (by key) the first time the pickle refers to it.
  """

  def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
    super().__init__(file, encoding='utf-8')  # Python 2 pickles' byte strings, as torch.load.
    self._storages = storages

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED_GLOBALS:
      return _ALLOWED_GLOBALS[module, name]
    if module in _STORAGE_MODULES and name in _STORAGE_DTYPES:
      return _StorageType(f'{module}.{name}', np.dtype(_STORAGE_DTYPES[name]))
    raise CheckpointError(f'refused to unpickle the global {module}.{name}: a state dict of '
                          'tensors does not need it (only arrays are read, no code is run)')

  def persistent_load(self, pid: Any) -> _StorageView:
    """`('storage', type, key, location, numel)` in the zip format; the legacy format adds a view
    `(view_key, offset, size)` or None. The location (device) does not matter to arrays."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == 'storage'):
      raise CheckpointError(f'unknown persistent id {pid!r:.80}')
    storage_type, key, numel = pid[1], str(pid[2]), pid[4]
    if not isinstance(storage_type, _StorageType):
      raise CheckpointError(f'storage {key} has type {storage_type!r:.80}, not a storage type')
    if not (_is_int(numel) and numel >= 0):
      raise CheckpointError(f'storage {key} has {numel!r:.40} elements')
    dtype = storage_type.dtype
    storage = self._storages.setdefault(key, _Storage(key, dtype.itemsize, numel))
    view = pid[5] if len(pid) == 6 else None
    if view is None:
      return _StorageView(storage, dtype)
    if not (isinstance(view, tuple) and len(view) == 3 and _int_tuple(view[1:])):
      raise CheckpointError(f'storage {key} has a bad view {view!r:.80}')
    return _StorageView(storage, dtype, view[1], view[2])


def _unpickle(file: BinaryIO, storages: dict[str, _Storage] | None = None) -> Any:
  return _RestrictedUnpickler(file, {} if storages is None else storages).load()


def _is_tensor_dict(obj: Any) -> bool:
  return isinstance(obj, dict) and all(
      isinstance(k, str) and isinstance(v, _TensorRef) for k, v in obj.items())


def _select_state_dict(obj: Any) -> dict[str, _TensorRef]:
  """The object itself, or the state dict a training checkpoint keeps under 'state_dict' or
  'model' (its other entries, optimizer state included, are not read)."""
  if _is_tensor_dict(obj):
    return obj
  if isinstance(obj, dict):
    for key in ('state_dict', 'model'):
      if _is_tensor_dict(obj.get(key)):
        return obj[key]
    keys = ', '.join(repr(k) for k in list(obj)[:5]) + (', ...' if len(obj) > 5 else '')
    what = f'a dict (keys {keys})'
  else:
    what = f'a {type(obj).__name__}'
  raise CheckpointError(f'holds {what}, not a state dict of tensors (nor a dict with one under '
                        "'state_dict' or 'model')")


def _storages_of(state_dict: dict[str, _TensorRef]) -> dict[str, _Storage]:
  """The storages the state dict's tensors use, by key (others in the file are not read)."""
  return {ref.view.storage.key: ref.view.storage for ref in state_dict.values()}


MAX_REPEATED_ELEMENTS = 1 << 24  # 64 MB of float32, more than any expanded tensor saved.


def _to_array(name: str, ref: _TensorRef) -> np.ndarray:
  """The tensor's elements as a contiguous array of its own, its view checked against its storage
  first (as_strided would read any memory it is pointed at)."""
  view, data = ref.view, ref.view.storage.data
  itemsize = view.dtype.itemsize
  start = view.offset * itemsize
  available = (len(data) - start) // itemsize if view.size is None else view.size
  if available < 0 or start + available * itemsize > len(data):
    raise CheckpointError(f'{name}: its storage view reaches past the storage\'s {len(data)} bytes')
  if 0 in ref.shape:
    return np.zeros(ref.shape, view.dtype)
  last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.strides))
  if last >= available or min((ref.offset, *ref.strides)) < 0:
    raise CheckpointError(f'{name}: shape {ref.shape} with strides {ref.strides} from offset '
                          f'{ref.offset} reaches past its storage of {available} elements')
  # Zero strides repeat elements (torch's `expand`): a few bytes of file could ask for any size.
  if math.prod(ref.shape) > max(available, MAX_REPEATED_ELEMENTS):
    raise CheckpointError(f'{name}: shape {ref.shape} repeats the {available} elements of its '
                          f'storage (strides {ref.strides}) into more than '
                          f'{MAX_REPEATED_ELEMENTS:,}, which saved weights never do')
  elements = np.frombuffer(data, view.dtype, count=available, offset=start)
  strided = np.lib.stride_tricks.as_strided(
      elements[ref.offset:], ref.shape, tuple(s * itemsize for s in ref.strides), writeable=False)
  return np.array(strided, order='C')


def _materialize(state_dict: dict[str, _TensorRef]) -> dict[str, np.ndarray]:
  return collections.OrderedDict((k, _to_array(k, ref)) for k, ref in state_dict.items())


def _archive_prefix(archive: zipfile.ZipFile) -> str:
  """The top folder torch names after the file (`resnet50-0676ba61/`), or '' at the root."""
  pickles = [n for n in archive.namelist()
             if (n == 'data.pkl' or n.endswith('/data.pkl')) and n.count('/') <= 1]
  if len(pickles) != 1:
    raise CheckpointError(f'a zip archive with {len(pickles)} top data.pkl entries, not one '
                          '(not a torch.save archive)')
  return pickles[0][:-len('data.pkl')]


def _load_zip(f: BinaryIO) -> dict[str, np.ndarray]:
  try:
    archive = zipfile.ZipFile(f)
  except zipfile.BadZipFile as err:  # A truncated archive has lost its central directory.
    raise CheckpointError(f'a damaged or truncated zip archive ({err})') from None
  with archive:
    # torch.save stores every record uncompressed: a compressed one (a few kB of deflated zeros
    # that inflate to gigabytes as the pickle or a storage) is refused before anything is read.
    for record in archive.infolist():
      if record.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f'its record {record.filename} is compressed, which torch.save '
                              'never does (not a torch.save archive)')
    prefix = _archive_prefix(archive)
    members = set(archive.namelist())
    if prefix + 'byteorder' in members:  # Written since torch 2.1.
      byteorder = archive.read(prefix + 'byteorder').decode('ascii', 'replace').strip()
      if byteorder != 'little':
        raise CheckpointError(f'storages in {byteorder!r:.20} byte order are not supported')
    storages = {}
    with archive.open(prefix + 'data.pkl') as pickled:
      state_dict = _select_state_dict(_unpickle(pickled, storages))
    unclaimed = f.seek(0, io.SEEK_END)  # Bytes of the file no storage read so far holds.
    for name, ref in state_dict.items():
      storage = ref.view.storage
      if storage.data is None:  # Not read yet for an earlier tensor.
        member = f'{prefix}data/{storage.key}'
        if member not in members:
          raise CheckpointError(f'the archive lacks storage {member}')
        record = archive.getinfo(member)
        _check_record(name, storage, record, unclaimed)
        unclaimed -= record.file_size
        storage.data = archive.read(member)
  return _materialize(state_dict)


def _check_record(name: str, storage: _Storage, record: zipfile.ZipInfo, unclaimed: int) -> None:
  """Refuses the (uncompressed) record of the storage under tensor `name` unless it holds the
  storage's declared bytes, in `unclaimed` bytes of the file that no other storage holds: else a
  small crafted file (records that overlap, or claim more than the file) would make the reader
  allocate gigabytes before any tensor is checked."""
  declared = storage.numel * storage.itemsize
  if record.file_size != declared:
    raise CheckpointError(f'{name}: its storage {storage.key} declares {storage.numel} elements '
                          f'of {storage.itemsize} bytes ({declared} bytes), its record '
                          f'{record.filename} holds {record.file_size} bytes')
  if record.compress_size != record.file_size or record.file_size > unclaimed:
    raise CheckpointError(f'{name}: its storage record {record.filename} claims '
                          f'{record.file_size} bytes, more than the {unclaimed} bytes of the file '
                          'that other storages do not hold (damaged)')


def _check_remaining(f: BinaryIO, n: int, what: str) -> None:
  """Refuses a size the rest of the file does not hold, before anything of that size is allocated
  (`read(n)` allocates n bytes first)."""
  position = f.tell()
  end = f.seek(0, io.SEEK_END)
  f.seek(position)
  if position + n > end:
    raise CheckpointError(f'truncated: {what} needs {n} bytes, {end - position} remain')


def _read_exactly(f: BinaryIO, n: int, what: str) -> bytes:
  _check_remaining(f, n, what)
  return f.read(n)


def _skip_exactly(f: BinaryIO, n: int, what: str) -> None:
  """Seeks past a storage the state dict does not use (a training checkpoint's optimizer state)."""
  _check_remaining(f, n, what)
  f.seek(n, io.SEEK_CUR)


def _check_legacy_header(f: BinaryIO) -> None:
  """The magic number, protocol version and sys info torch's legacy `_save` pickles first."""
  try:
    magic = _unpickle(f)
  except Exception:  # Any file that is no pickle fails here, in whatever way.
    magic = None
  if magic != _LEGACY_MAGIC:
    raise CheckpointError('not a PyTorch checkpoint (neither a zip archive nor a pickle stream '
                          "starting with torch's magic number)")
  protocol = _unpickle(f)
  if protocol != _LEGACY_PROTOCOL:
    raise CheckpointError(f'legacy protocol version {protocol!r:.40}, not {_LEGACY_PROTOCOL}')
  sys_info = _unpickle(f)
  if not isinstance(sys_info, dict):
    raise CheckpointError(f'legacy sys info is a {type(sys_info).__name__}, not a dict')
  if not sys_info.get('little_endian', True):
    raise CheckpointError('big-endian storages are not supported')


def _load_legacy(f: BinaryIO) -> dict[str, np.ndarray]:
  _check_legacy_header(f)
  storages = {}
  state_dict = _select_state_dict(_unpickle(f, storages))
  keys = _unpickle(f)
  if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
    raise CheckpointError(f'the storage keys are a {type(keys).__name__}, not a list of strings')
  needed = _storages_of(state_dict)
  for key in keys:
    storage = storages.get(key)
    if storage is None:
      raise CheckpointError(f'storage {key} is listed but no tensor refers to it')
    (count,) = struct.unpack('<q', _read_exactly(f, 8, f'the size of storage {key}'))
    if count < 0:
      raise CheckpointError(f'storage {key} has {count} elements')
    nbytes = count * storage.itemsize
    if key in needed:
      storage.data = _read_exactly(f, nbytes, f'storage {key}')
    else:
      _skip_exactly(f, nbytes, f'storage {key}')
  unread = [key for key, storage in needed.items() if storage.data is None]
  if unread:
    raise CheckpointError(f'storages {", ".join(unread[:5])} are not in the list of storage keys')
  return _materialize(state_dict)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """The state dict of tensors in the PyTorch checkpoint at `path`, as arrays in file order.

  Raises:
    ValueError: (a `CheckpointError`) one line naming the file and what is wrong: not a PyTorch
      checkpoint, damaged or truncated, a global outside a state dict's, no state dict of tensors.
    OSError: the file cannot be opened.
  """
  with open(path, 'rb') as f:
    try:
      if f.read(4) == _ZIP_MAGIC:
        f.seek(0)
        return _load_zip(f)
      f.seek(0)
      return _load_legacy(f)
    except CheckpointError as err:
      raise CheckpointError(f'{path}: {err}') from None
    except Exception as err:  # Damaged pickles and archives fail in many ways (see pickle's docs).
      raise CheckpointError(f'{path}: damaged or not a PyTorch checkpoint '
                            f'({type(err).__name__}: {err})') from None

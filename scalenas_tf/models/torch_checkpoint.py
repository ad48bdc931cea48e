"""Reads PyTorch state dicts (`.safetensors`, or torch.save zip files) into numpy arrays, without torch.

A torch.save file (PyTorch >= 1.6: `.pth`, `.pth.tar`, `.bin`, `.pt`) is a zip archive: `<name>/data.pkl`
pickles the object and `<name>/data/<key>` holds the raw bytes of each storage. Unpickling runs code
named in the file, so `data.pkl` is read by an unpickler that knows only what a plain state dict needs:
`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` and the typed
storage classes (`torch.FloatStorage`, ...). Any other global (a model class, `argparse.Namespace`,
`os.system`) is refused before anything runs, and so are the legacy (pre-1.6) pickle format and
TorchScript archives. Each tensor is rebuilt with numpy from its storage, offset and strides.

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


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely, or is not a state dict; the message names the file."""


@dataclasses.dataclass(frozen=True)
class StateDict:
    """A flat state dict read from a file, and how it was found.

    Args:
        tensors: `{name: np.ndarray}` in file order (PyTorch layouts: conv OIHW, dense `(out, in)`).
        path: the file read.
        format: `"torch_zip"` or `"safetensors"`.
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
    """Reads a state dict from `.safetensors` or a torch.save zip file, without importing torch.

    Nested checkpoints (`{"state_dict": {...}, "epoch": ...}`, `{"model": ...}`, `{"net": ...}`) are
    unwrapped and a `module.` prefix on every name (DataParallel) is stripped; `StateDict` says which.

    Args:
        path: the checkpoint file.

    Returns:
        A `StateDict`.

    Raises:
        CheckpointError: a missing or unreadable file, a global outside the allowed set, a legacy
            or TorchScript file, or a file holding no dict of tensors; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint not found: {path!r} (no such file)")
    if path.endswith(".safetensors"):
        return _finish(read_safetensors(path), path, "safetensors")
    return _finish(read_torch_zip(path), path, "torch_zip")


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
        with open(path, "rb") as f:
            head = f.read(2)
        kind = "a legacy (pre-1.6) PyTorch pickle file" if head[:1] == b"\x80" else "not a zip file"
        raise CheckpointError(
            f"{path}: {kind}; only torch.save zip files (PyTorch >= 1.6) and .safetensors are read. {_SAFE_TIP}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive, path)
            byteorder = _byteorder(archive, prefix, path)
            unpickler = _StateDictUnpickler(io.BytesIO(archive.read(f"{prefix}data.pkl")), archive, prefix, path)
            unpickler.byteorder = byteorder
            return unpickler.load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged or unsupported torch.save file ({type(e).__name__}: {e})") from None


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


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles `data.pkl` allowing only the globals of a plain state dict; storages come from the zip."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path
        self.byteorder = "little"
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(
            f"{self.path}: refused to load global '{module}.{name}' (loading it could run code from the file). "
            f"{_SAFE_TIP}"
        )

    def persistent_load(self, pid):
        if (
            not isinstance(pid, tuple)
            or len(pid) != 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or not _STORAGE_KEY.fullmatch(pid[2])
            or not isinstance(pid[4], int)
            or pid[4] < 0
        ):
            raise CheckpointError(f"{self.path}: unsupported persistent id {_short(pid)}. {_SAFE_TIP}")
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


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """torch._utils._rebuild_parameter: an nn.Parameter is its data here."""
    del requires_grad, backward_hooks
    if not isinstance(data, np.ndarray):
        raise CheckpointError(f"A parameter must wrap a tensor. Received: {type(data).__name__}")
    return data


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

"""torch_checkpoint: torch.save files (zip and legacy) and safetensors read without torch; unsafe pickles refused."""

import collections
import dataclasses
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from scalenas_tf.models import torch_checkpoint
from scalenas_tf.models.torch_checkpoint import CheckpointError

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
# Made with torch 2.14.1 (the only file here written by torch itself):
#   sd = collections.OrderedDict()
#   sd["a"] = torch.arange(6, dtype=torch.float32).reshape(2, 3)
#   sd["b"] = torch.arange(4, dtype=torch.int64)
#   sd["c"] = sd["a"].t()                                      # shares a's storage, strides (1, 3)
#   sd["d"] = torch.arange(10, dtype=torch.float16)[2:7]       # storage offset 2
#   sd["e"] = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
#   torch.save(sd, "tests/fixtures/torch_save_small.pth")
REAL_FILE = os.path.join(FIXTURES, "torch_save_small.pth")
# The legacy (pre-1.6) stream, made with torch 2.14.1:
#   sd = collections.OrderedDict()
#   sd["module.a"] = torch.arange(6, dtype=torch.float32).reshape(2, 3)
#   sd["module.b"] = torch.arange(4, dtype=torch.int64)
#   sd["module.c"] = sd["module.a"].t()                       # shares a's storage, strides (1, 3)
#   sd["module.d"] = torch.arange(10, dtype=torch.float16)[2:7]  # storage offset 2
#   sd["module.e"] = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
#   torch.save({"epoch": 7, "state_dict": sd}, "tests/fixtures/torch_save_legacy_small.pth",
#              _use_new_zipfile_serialization=False)
LEGACY_FILE = os.path.join(FIXTURES, "torch_save_legacy_small.pth")


# === A hand-built torch.save file ===


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """A tensor as torch.save pickles it: a view (offset, size, stride) of storage `key`."""

    key: str
    storage: str  # e.g. "FloatStorage"
    numel: int
    offset: int
    size: tuple
    stride: tuple
    view: tuple | None = None  # legacy files only: (view key, offset, numel) of a storage slice
    storage_module: str = "torch"  # "torch.cuda" in legacy files saved from a GPU


@dataclasses.dataclass(frozen=True)
class _Call:
    """`module.name(*args)` in the pickle (a GLOBAL and a REDUCE), e.g. a malicious `os.system`."""

    module: str
    name: str
    args: tuple


def _global(module, name):
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _str(text):
    data = text.encode()
    return pickle.BINUNICODE + len(data).to_bytes(4, "little") + data


def _emit(obj, legacy=False):
    """Protocol-2 opcodes as torch.save's pickler writes them (its memo PUT/GET opcodes left out):
    state dicts as `collections.OrderedDict`, tensors as `torch._utils._rebuild_tensor_v2` of a
    persistent id `("storage", torch.<Type>Storage, key, "cpu", numel)`, with `legacy` followed by
    the view (None or a tuple)."""
    if isinstance(obj, bool):
        return pickle.NEWTRUE if obj else pickle.NEWFALSE
    if isinstance(obj, int):
        return pickle.BININT + obj.to_bytes(4, "little", signed=True)
    if isinstance(obj, str):
        return _str(obj)
    if isinstance(obj, tuple):
        return pickle.MARK + b"".join(_emit(v, legacy) for v in obj) + pickle.TUPLE
    if isinstance(obj, collections.OrderedDict):
        items = b"".join(_emit(k) + _emit(v, legacy) for k, v in obj.items())
        return (
            _global("collections", "OrderedDict")
            + pickle.EMPTY_TUPLE
            + pickle.REDUCE
            + (pickle.MARK + items + pickle.SETITEMS if obj else b"")
        )
    if isinstance(obj, dict):
        items = b"".join(_emit(k) + _emit(v, legacy) for k, v in obj.items())
        return pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS
    if isinstance(obj, _Tensor):
        pid = pickle.MARK + _str("storage") + _global(obj.storage_module, obj.storage) + _str(obj.key) + _str("cpu")
        pid += _emit(obj.numel)
        if legacy:
            pid += pickle.NONE if obj.view is None else _emit(obj.view)
        pid += pickle.TUPLE + pickle.BINPERSID
        hooks = _emit(collections.OrderedDict())
        args = pid + _emit(obj.offset) + _emit(obj.size) + _emit(obj.stride) + pickle.NEWFALSE + hooks
        return _global("torch._utils", "_rebuild_tensor_v2") + pickle.MARK + args + pickle.TUPLE + pickle.REDUCE
    if isinstance(obj, _Call):
        return _global(obj.module, obj.name) + _emit(obj.args) + pickle.REDUCE
    if obj is None:
        return pickle.NONE
    raise TypeError(type(obj))


def _write(path, obj, storages, archive="archive"):
    """A zip laid out as torch.save writes it: `<archive>/data.pkl`, `byteorder`, `data/<key>`, `version`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", pickle.PROTO + bytes([2]) + _emit(obj) + pickle.STOP)
        z.writestr(f"{archive}/byteorder", "little")
        for key, flat in storages.items():
            z.writestr(
                f"{archive}/data/{key}", np.ascontiguousarray(flat).astype(flat.dtype.newbyteorder("<")).tobytes()
            )
        z.writestr(f"{archive}/version", "3\n")
    return str(path)


def _write_legacy(path, obj, storages, header=None, counts=None):
    """A legacy stream as torch.save(..., _use_new_zipfile_serialization=False) writes it: the pickles of
    the magic number, protocol 1001 and sys info, the object, the sorted storage keys, then per key an
    int64 element count and the little-endian elements. `header`/`counts` override the first pickles
    and the written counts, to make damaged files."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    header = header if header is not None else (torch_checkpoint.LEGACY_MAGIC_NUMBER, 1001, sys_info)
    keys = sorted(storages)
    with open(path, "wb") as f:
        for value in header:
            pickle.dump(value, f, protocol=2)
        f.write(pickle.PROTO + bytes([2]) + _emit(obj, legacy=True) + pickle.STOP)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            flat = np.ascontiguousarray(storages[key])
            f.write(struct.pack("<q", (counts or {}).get(key, flat.size)))
            f.write(flat.astype(flat.dtype.newbyteorder("<")).tobytes())
    return str(path)


def _state(**tensors):
    return collections.OrderedDict(tensors)


def test_float32_and_int64_tensors(tmp_path):
    weights = np.arange(24, dtype=np.float32).reshape(4, 3, 2) / 7
    steps = np.array([3, -1, 2**40], dtype=np.int64)
    obj = _state(
        **{
            "conv.weight": _Tensor("0", "FloatStorage", 24, 0, (4, 3, 2), (6, 2, 1)),
            "bn.num_batches_tracked": _Tensor("1", "LongStorage", 3, 0, (3,), (1,)),
        }
    )
    path = _write(tmp_path / "a.pth", obj, {"0": weights.ravel(), "1": steps})
    sd = torch_checkpoint.load_state_dict(path)
    assert list(sd.tensors) == ["conv.weight", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(sd.tensors["conv.weight"], weights)
    assert sd.tensors["conv.weight"].dtype == np.float32
    np.testing.assert_array_equal(sd.tensors["bn.num_batches_tracked"], steps)
    assert sd.tensors["bn.num_batches_tracked"].dtype == np.int64
    assert (sd.format, sd.unwrapped, sd.stripped_prefix) == ("torch_zip", (), "")


def test_transposed_view_and_offset_share_one_storage(tmp_path):
    flat = np.arange(10, dtype=np.float32)
    obj = _state(
        a=_Tensor("0", "FloatStorage", 10, 0, (2, 3), (3, 1)),
        a_t=_Tensor("0", "FloatStorage", 10, 0, (3, 2), (1, 3)),  # a.t(): not contiguous
        tail=_Tensor("0", "FloatStorage", 10, 6, (2, 2), (2, 1)),
    )
    sd = torch_checkpoint.load_state_dict(_write(tmp_path / "t.pth", obj, {"0": flat}))
    a = flat[:6].reshape(2, 3)
    np.testing.assert_array_equal(sd.tensors["a_t"], a.T)
    np.testing.assert_array_equal(sd.tensors["tail"], flat[6:].reshape(2, 2))
    sd.tensors["a"][0, 0] = 99  # each tensor is a copy, not a view of the shared storage
    assert sd.tensors["a_t"][0, 0] == 0


def test_nested_state_dict_with_data_parallel_prefix(tmp_path):
    inner = _state(
        **{
            "module.conv1.weight": _Tensor("0", "FloatStorage", 4, 0, (2, 2), (2, 1)),
            "module.fc.bias": _Tensor("1", "FloatStorage", 2, 0, (2,), (1,)),
        }
    )
    obj = {"epoch": 7, "arch": "hrnet", "state_dict": inner, "optimizer": {"lr": 1}}
    path = _write(tmp_path / "ckpt.pth.tar", obj, {"0": np.ones(4, np.float32), "1": np.zeros(2, np.float32)})
    sd = torch_checkpoint.load_state_dict(path)
    assert sorted(sd.tensors) == ["conv1.weight", "fc.bias"]
    assert sd.unwrapped == ("state_dict",)
    assert sd.stripped_prefix == "module."
    assert "unwrapped 'state_dict'" in sd.describe() and "stripped 'module.'" in sd.describe()


def test_model_key_nesting(tmp_path):
    obj = {"model": _state(w=_Tensor("0", "FloatStorage", 1, 0, (1,), (1,)))}
    sd = torch_checkpoint.load_state_dict(_write(tmp_path / "m.bin", obj, {"0": np.ones(1, np.float32)}))
    assert sd.unwrapped == ("model",) and list(sd.tensors) == ["w"]


def test_malicious_global_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    obj = _state(x=_Call("os", "system", (f"touch {marker}",)))
    path = _write(tmp_path / "evil.pth", obj, {})
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to load global 'os\.system'.*safetensors"):
        torch_checkpoint.load_state_dict(path)
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    path = _write(tmp_path / "evil2.pth", _Call("builtins", "eval", ("1 + 1",)), {})
    with pytest.raises(CheckpointError, match="builtins.eval"):
        torch_checkpoint.load_state_dict(path)


# === Legacy (pre-1.6) files ===


def test_legacy_file_written_by_torch():
    sd = torch_checkpoint.load_state_dict(LEGACY_FILE)
    assert (sd.format, sd.unwrapped, sd.stripped_prefix) == ("torch_legacy", ("state_dict",), "module.")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(sd.tensors["a"], a)
    np.testing.assert_array_equal(sd.tensors["b"], np.arange(4, dtype=np.int64))
    np.testing.assert_array_equal(sd.tensors["c"], a.T)  # a transposed view of a's storage
    np.testing.assert_array_equal(sd.tensors["d"], np.arange(2, 7, dtype=np.float16))  # storage offset 2
    np.testing.assert_array_equal(sd.tensors["e"], np.array([1.5, -2.0, 3.25], np.float32))  # bfloat16, widened
    assert [sd.tensors[k].dtype for k in "abcde"] == [np.float32, np.int64, np.float32, np.float16, np.float32]
    assert torch_checkpoint.read_torch_legacy(LEGACY_FILE)["epoch"] == 7


def test_hand_built_legacy_file_uses_the_layout_of_torch(tmp_path):
    """The writer below makes the same stream (pickle opcodes aside) as torch did for the fixture."""
    with open(LEGACY_FILE, "rb") as f:
        header = [pickle.load(f) for _ in range(3)]
    assert header[:2] == [torch_checkpoint.LEGACY_MAGIC_NUMBER, 1001] and header[2]["little_endian"] is True
    obj = {"epoch": 1, "state_dict": _state(w=_Tensor("7", "FloatStorage", 2, 0, (2,), (1,)))}
    path = _write_legacy(tmp_path / "h.pth", obj, {"7": np.array([0.5, 2.0], np.float32)}, header=header)
    assert torch_checkpoint.load_state_dict(path).tensors["w"].tolist() == [0.5, 2.0]


def test_legacy_views_strides_and_dtypes(tmp_path):
    flat = np.arange(12, dtype=np.float32)
    obj = _state(
        **{
            "a": _Tensor("140", "FloatStorage", 12, 0, (3, 4), (4, 1)),
            "a_t": _Tensor("140", "FloatStorage", 12, 0, (4, 3), (1, 4)),
            "tail": _Tensor("140", "FloatStorage", 12, 8, (2, 2), (2, 1)),
            # A storage view (PyTorch < 1.0): elements 4..9 of storage 140, then offset 1 within it.
            "in_view": _Tensor("140", "FloatStorage", 12, 1, (2, 2), (2, 1), view=("141", 4, 6)),
            "steps": _Tensor("150", "LongStorage", 2, 0, (2,), (1,)),
            "cuda": _Tensor("160", "HalfStorage", 3, 0, (3,), (1,), storage_module="torch.cuda"),
        }
    )
    storages = {"140": flat, "150": np.array([5, -(2**40)], np.int64), "160": np.array([1, 2, 3], np.float16)}
    sd = torch_checkpoint.load_state_dict(_write_legacy(tmp_path / "v.pth", obj, storages))
    a = flat.reshape(3, 4)
    np.testing.assert_array_equal(sd.tensors["a_t"], a.T)
    np.testing.assert_array_equal(sd.tensors["tail"], flat[8:].reshape(2, 2))
    np.testing.assert_array_equal(sd.tensors["in_view"], flat[5:9].reshape(2, 2))
    assert sd.tensors["steps"].tolist() == [5, -(2**40)] and sd.tensors["steps"].dtype == np.int64
    assert sd.tensors["cuda"].dtype == np.float16 and sd.tensors["cuda"].tolist() == [1, 2, 3]


def test_legacy_nested_dicts(tmp_path):
    inner = _state(**{"module.w": _Tensor("1", "FloatStorage", 4, 0, (2, 2), (2, 1))})
    obj = {"epoch": 3, "best": {"acc": 1}, "model": {"state_dict": inner}}
    path = _write_legacy(tmp_path / "n.pth.tar", obj, {"1": np.ones(4, np.float32)})
    sd = torch_checkpoint.load_state_dict(path)
    assert sd.unwrapped == ("model", "state_dict") and sd.stripped_prefix == "module."
    np.testing.assert_array_equal(sd.tensors["w"], np.ones((2, 2), np.float32))


def test_legacy_malicious_global_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    obj = _state(w=_Tensor("1", "FloatStorage", 1, 0, (1,), (1,)), x=_Call("os", "system", (f"touch {marker}",)))
    path = _write_legacy(tmp_path / "evil.pth", obj, {"1": np.ones(1, np.float32)})
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to load global 'os\.system'"):
        torch_checkpoint.load_state_dict(path)
    assert not marker.exists()


def test_legacy_header_with_a_global_is_refused(tmp_path):
    path = tmp_path / "evil_header.pth"
    path.write_bytes(pickle.PROTO + bytes([2]) + _emit(_Call("os", "system", ("true",))) + pickle.STOP)
    with pytest.raises(CheckpointError, match="refused to load global 'os.system' in a header pickle"):
        torch_checkpoint.load_state_dict(path)


def test_legacy_damaged_files_are_refused(tmp_path):
    obj = _state(w=_Tensor("1", "FloatStorage", 4, 0, (4,), (1,)))
    with pytest.raises(CheckpointError, match="not a torch.save file"):  # a plain pickle
        (tmp_path / "p.pth").write_bytes(pickle.dumps({"w": [1.0]}, protocol=2))
        torch_checkpoint.load_state_dict(tmp_path / "p.pth")
    with pytest.raises(CheckpointError, match="holds 3 elements; the pickle says 4"):
        torch_checkpoint.load_state_dict(
            _write_legacy(tmp_path / "c.pth", obj, {"1": np.ones(4, np.float32)}, counts={"1": 3})
        )
    cut = _write_legacy(tmp_path / "t.pth", obj, {"1": np.ones(4, np.float32)})
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) - 4)
    with pytest.raises(CheckpointError, match="cut short"):
        torch_checkpoint.load_state_dict(cut)
    with pytest.raises(CheckpointError, match="bad storage view"):
        bad_view = _state(w=_Tensor("1", "FloatStorage", 4, 0, (1,), (1,), view=("2", 3, 5)))
        torch_checkpoint.load_state_dict(_write_legacy(tmp_path / "bv.pth", bad_view, {"1": np.ones(4, np.float32)}))
    with pytest.raises(CheckpointError, match="not a torch.save file"):
        (tmp_path / "x.pth").write_bytes(b"hello")
        torch_checkpoint.load_state_dict(tmp_path / "x.pth")


def test_view_past_its_storage_is_refused(tmp_path):
    obj = _state(w=_Tensor("0", "FloatStorage", 4, 2, (2, 2), (2, 1)))  # reads elements 2..5 of 4
    path = _write(tmp_path / "oob.pth", obj, {"0": np.ones(4, np.float32)})
    with pytest.raises(CheckpointError, match="reads past its storage"):
        torch_checkpoint.load_state_dict(path)


def test_missing_file_and_non_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        torch_checkpoint.load_state_dict(tmp_path / "absent.pth")
    path = _write(tmp_path / "n.pth", {"epoch": 3}, {})
    with pytest.raises(CheckpointError, match=r"no state dict.*\['epoch'\]"):
        torch_checkpoint.load_state_dict(path)


def test_safetensors_round_trip(tmp_path):
    from safetensors.numpy import save_file

    tensors = {"conv.weight": np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)}
    tensors["bn.num_batches_tracked"] = np.array(5, np.int64)
    save_file(tensors, str(tmp_path / "m.safetensors"))
    sd = torch_checkpoint.load_state_dict(tmp_path / "m.safetensors")
    assert sd.format == "safetensors"
    for name, value in tensors.items():
        np.testing.assert_array_equal(sd.tensors[name], value)
        assert sd.tensors[name].dtype == value.dtype


def test_file_written_by_torch():
    sd = torch_checkpoint.load_state_dict(REAL_FILE)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(sd.tensors["a"], a)
    np.testing.assert_array_equal(sd.tensors["b"], np.arange(4, dtype=np.int64))
    np.testing.assert_array_equal(sd.tensors["c"], a.T)
    np.testing.assert_array_equal(sd.tensors["d"], np.arange(2, 7, dtype=np.float16))
    np.testing.assert_array_equal(sd.tensors["e"], np.array([1.5, -2.0, 3.25], np.float32))  # bfloat16, widened
    assert [sd.tensors[k].dtype for k in "abcde"] == [np.float32, np.int64, np.float32, np.float16, np.float32]


def test_hand_built_file_uses_the_globals_of_torch():
    """The hand-built files above use exactly the globals torch.save wrote into the real file."""
    import pickletools

    with zipfile.ZipFile(REAL_FILE) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    real = {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    ours = {
        arg
        for op, arg, _ in pickletools.genops(
            pickle.PROTO
            + bytes([2])
            + _emit(_state(a=_Tensor("0", "FloatStorage", 6, 0, (2, 3), (3, 1))))
            + pickle.STOP
        )
        if op.name == "GLOBAL"
    }
    assert ours <= real
    assert real == {
        "collections OrderedDict",
        "torch._utils _rebuild_tensor_v2",
        "torch FloatStorage",
        "torch LongStorage",
        "torch HalfStorage",
        "torch BFloat16Storage",
    }

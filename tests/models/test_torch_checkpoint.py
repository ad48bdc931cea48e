"""torch_checkpoint: torch.save zip files and safetensors read without torch; unsafe pickles refused."""

import collections
import dataclasses
import os
import pickle
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


def _emit(obj):
    """Protocol-2 opcodes as torch.save's pickler writes them (its memo PUT/GET opcodes left out):
    state dicts as `collections.OrderedDict`, tensors as `torch._utils._rebuild_tensor_v2` of a
    persistent id `("storage", torch.<Type>Storage, key, "cpu", numel)`."""
    if isinstance(obj, bool):
        return pickle.NEWTRUE if obj else pickle.NEWFALSE
    if isinstance(obj, int):
        return pickle.BININT + obj.to_bytes(4, "little", signed=True)
    if isinstance(obj, str):
        return _str(obj)
    if isinstance(obj, tuple):
        return pickle.MARK + b"".join(_emit(v) for v in obj) + pickle.TUPLE
    if isinstance(obj, collections.OrderedDict):
        items = b"".join(_emit(k) + _emit(v) for k, v in obj.items())
        return (
            _global("collections", "OrderedDict")
            + pickle.EMPTY_TUPLE
            + pickle.REDUCE
            + (pickle.MARK + items + pickle.SETITEMS if obj else b"")
        )
    if isinstance(obj, dict):
        return pickle.EMPTY_DICT + pickle.MARK + b"".join(_emit(k) + _emit(v) for k, v in obj.items()) + pickle.SETITEMS
    if isinstance(obj, _Tensor):
        pid = pickle.MARK + _str("storage") + _global("torch", obj.storage) + _str(obj.key) + _str("cpu")
        pid += _emit(obj.numel) + pickle.TUPLE + pickle.BINPERSID
        hooks = _emit(collections.OrderedDict())
        args = pid + _emit(obj.offset) + _emit(obj.size) + _emit(obj.stride) + pickle.NEWFALSE + hooks
        return _global("torch._utils", "_rebuild_tensor_v2") + pickle.MARK + args + pickle.TUPLE + pickle.REDUCE
    if isinstance(obj, _Call):
        return _global(obj.module, obj.name) + _emit(obj.args) + pickle.REDUCE
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


def test_legacy_pickle_is_refused(tmp_path):
    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps({"w": [1.0]}, protocol=2))
    with pytest.raises(CheckpointError, match="legacy.*safetensors"):
        torch_checkpoint.load_state_dict(path)


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

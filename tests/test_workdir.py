"""Tests for scalenas_tf.workdir: names, atomic writes, checked JSON reads, staged directories, path guards."""

import hashlib
import json
import os

import pytest

from scalenas_tf import workdir
from scalenas_tf.workdir import Workdir
from scalenas_tf.workdir import WorkdirError


def _listing(directory):
    return sorted(os.listdir(directory))


def _snapshot(directory):
    """{relative path: bytes} of every file under `directory`."""
    result = {}
    for base, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, directory)] = f.read()
    return result


# --------------------------------------------------------------------------------------------------- names, layout


@pytest.mark.parametrize("name", ["a", "best", "net_1", "model-v2.tflite", "x+y", "_private", "A" * 128, "a..b"])
def test_check_name_accepts_plain_names(name):
    assert workdir.check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "a/b",
        "/abs",
        "..\\x",
        "a\\b",
        "a\x00b",
        "a\nb",
        " x",
        "x ",
        ".hidden",
        "-rf",
        "a b",
        "é",
        "x" * 200,
        "A" * 129,
    ],
)
def test_check_name_rejects_bad_names(name):
    with pytest.raises(WorkdirError) as info:
        workdir.check_name(name, field="export name")
    message = str(info.value)
    assert "export name" in message
    assert repr(name)[:40] in message
    assert "\n" not in message


def test_check_name_rejects_non_strings():
    with pytest.raises(WorkdirError, match="export name"):
        workdir.check_name(None, "export name")


def test_workdir_paths(tmp_path):
    wd = Workdir(str(tmp_path))
    assert wd.weights == os.path.join(tmp_path, "supernet.weights.h5")
    assert wd.config == os.path.join(tmp_path, workdir.CONFIG)
    assert wd.train_summary == os.path.join(tmp_path, "train_summary.json")
    assert wd.evaluations == os.path.join(tmp_path, "search", "evaluations.jsonl")
    assert wd.pareto_json == os.path.join(tmp_path, "search", "pareto_front.json")
    assert wd.pareto_csv == os.path.join(tmp_path, "search", "pareto_front.csv")
    assert wd.pareto_png == os.path.join(tmp_path, "search", "pareto.png")
    assert wd.search_summary == os.path.join(tmp_path, "search", "search_summary.json")
    assert wd.search_dir == os.path.join(tmp_path, "search")
    assert wd.export_root == os.path.join(tmp_path, "export")
    assert wd.export_dir("best") == os.path.join(tmp_path, "export", "best")
    assert wd.backup_dir == os.path.join(tmp_path, "backup")
    assert wd.checkpoints_dir == os.path.join(tmp_path, "checkpoints")
    assert wd.loop_checkpoints_dir == os.path.join(tmp_path, "loop_checkpoints")
    assert wd.tensorboard_dir == os.path.join(tmp_path, "tensorboard")
    assert Workdir(tmp_path).root == str(tmp_path)  # path-like accepted, stored as str
    assert not os.listdir(tmp_path)  # computing paths creates nothing
    with pytest.raises(WorkdirError, match="export name '../x'"):
        wd.export_dir("../x")
    with pytest.raises(WorkdirError, match="root"):
        Workdir("")


# --------------------------------------------------------------------------------------------------- atomic writes


def test_atomic_write_json_round_trip_creates_parent(tmp_path):
    path = tmp_path / "a" / "b" / "summary.json"
    obj = {"x": 1, "y": [1.5, None, "s"], "nan": float("nan")}
    assert workdir.atomic_write_json(path, obj) == str(path)
    back = workdir.read_json(path)
    assert back["x"] == 1 and back["y"] == [1.5, None, "s"] and back["nan"] != back["nan"]
    assert _listing(path.parent) == ["summary.json"]


def test_atomic_write_json_unserializable_leaves_previous_file(tmp_path):
    path = tmp_path / "c.json"
    workdir.atomic_write_json(path, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(WorkdirError, match="c.json.*serialize"):
        workdir.atomic_write_json(path, {"v": object()})
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["c.json"]


def test_failed_replace_keeps_old_content_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "w.txt"
    workdir.atomic_write_text(path, "old\n")

    def killed(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(WorkdirError, match="w.txt.*cannot write"):
        workdir.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert _listing(tmp_path) == ["w.txt"]


def test_failure_partway_through_write_keeps_old_content(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    workdir.atomic_write_bytes(path, b"old")

    def fsync_fails(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync_fails)
    with pytest.raises(WorkdirError, match="w.bin"):
        workdir.atomic_write_bytes(path, b"new" * 1000)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert _listing(tmp_path) == ["w.bin"]


def test_atomic_write_csv_and_type_checks(tmp_path):
    path = tmp_path / "f.csv"
    workdir.atomic_write_csv(path, [["arch", "acc"], ["a,b", 0.5], ['q"uote', 1]])
    assert path.read_text() == 'arch,acc\n"a,b",0.5\n"q""uote",1\n'
    with pytest.raises(WorkdirError, match="f.csv"):
        workdir.atomic_write_csv(path, [["ok"], 3])  # a non-iterable row fails before the disk is touched
    assert path.read_text().startswith("arch,acc")
    with pytest.raises(WorkdirError, match="bytes"):
        workdir.atomic_write_bytes(path, "not bytes")
    with pytest.raises(WorkdirError, match="str"):
        workdir.atomic_write_text(path, b"not text")


def test_atomic_path_keeps_suffix_and_replaces(tmp_path):
    final = tmp_path / "plots" / "pareto.png"
    with workdir.atomic_path(final) as tmp:
        assert tmp.endswith(".png")
        assert os.path.basename(tmp).startswith(".pareto.png.tmp-")
        assert os.path.dirname(tmp) == str(final.parent)
        assert not os.path.exists(tmp)
        with open(tmp, "wb") as f:
            f.write(b"PNG")
    assert final.read_bytes() == b"PNG"
    assert _listing(final.parent) == ["pareto.png"]


def test_atomic_path_exception_removes_temp_and_keeps_old(tmp_path):
    final = tmp_path / "w.h5"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), workdir.atomic_path(final) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("boom")
    assert final.read_bytes() == b"old"
    assert _listing(tmp_path) == ["w.h5"]


def test_atomic_path_nothing_written(tmp_path):
    final = tmp_path / "w.h5"
    with pytest.raises(WorkdirError, match="nothing was written"), workdir.atomic_path(final):
        pass
    assert _listing(tmp_path) == []


# --------------------------------------------------------------------------------------------------- reads


def test_read_json_missing(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(WorkdirError, match=r"train summary .*nope\.json: not found"):
        workdir.read_json(path, "train summary")


def test_read_json_truncated(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"a": [1, 2,\n  3')
    with pytest.raises(WorkdirError) as info:
        workdir.read_json(path)
    assert str(path) in str(info.value)
    assert "line 2 column" in str(info.value)


def test_read_json_deeply_nested(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(WorkdirError, match="nested too deeply"):
        workdir.read_json(path)
    # Under the recursion limit but over 64 levels: rejected by the explicit depth check.
    path.write_text("[" * 65 + "]" * 65)
    with pytest.raises(WorkdirError, match="nested too deeply"):
        workdir.read_json(path)
    path.write_text('{"a":' * 63 + "[]" + "}" * 63)
    assert workdir.read_json(path) is not None


def test_read_json_not_utf8_and_too_large(tmp_path):
    path = tmp_path / "bin.json"
    path.write_bytes(b'{"a": "\xff\xfe"}')
    with pytest.raises(WorkdirError, match=r"bin\.json: not valid UTF-8"):
        workdir.read_json(path)
    path.write_text('{"a": 1}')
    with pytest.raises(WorkdirError, match="too large"):
        workdir.read_json(path, max_bytes=4)


def test_read_json_unreadable_directory(tmp_path):
    with pytest.raises(WorkdirError, match="cannot read"):
        workdir.read_json(tmp_path)


def test_read_json_object_checks(tmp_path):
    path = tmp_path / "o.json"
    required = {"epochs": int, "loss": float, "name": str, "note": (str, type(None))}
    workdir.atomic_write_json(path, {"epochs": 3, "loss": 1, "name": "n", "note": None, "extra": 0})
    assert workdir.read_json_object(path, "summary", required)["epochs"] == 3  # int accepted for float

    workdir.atomic_write_json(path, [1, 2])
    with pytest.raises(WorkdirError, match=r"o\.json: expected a JSON object.*array"):
        workdir.read_json_object(path, "summary", required)

    workdir.atomic_write_json(path, {"epochs": 3, "loss": 0.1, "note": None})
    with pytest.raises(WorkdirError, match="missing required key 'name'"):
        workdir.read_json_object(path, "summary", required)

    workdir.atomic_write_json(path, {"epochs": "3", "loss": 0.1, "name": "n", "note": None})
    with pytest.raises(WorkdirError, match=r"summary .*o\.json: key 'epochs' must be int, got string '3'"):
        workdir.read_json_object(path, "summary", required)

    workdir.atomic_write_json(path, {"epochs": True, "loss": 0.1, "name": "n", "note": None})
    with pytest.raises(WorkdirError, match="key 'epochs' must be int, got bool True"):
        workdir.read_json_object(path, "summary", required)

    workdir.atomic_write_json(path, {"epochs": 1, "loss": False, "name": "n", "note": None})
    with pytest.raises(WorkdirError, match="key 'loss' must be float, got bool False"):
        workdir.read_json_object(path, "summary", required)

    workdir.atomic_write_json(path, {"epochs": 1, "loss": 0.1, "name": "x" * 500, "note": 5})
    with pytest.raises(WorkdirError) as info:
        workdir.read_json_object(path, "summary", required)
    assert "key 'note' must be str or null, got int 5" in str(info.value)

    workdir.atomic_write_json(path, {"epochs": 1, "loss": 0.1, "name": ["x" * 500], "note": None})
    with pytest.raises(WorkdirError) as info:
        workdir.read_json_object(path, "summary", required)
    assert len(str(info.value)) < len(str(path)) + 200  # long values are cut
    assert "..." in str(info.value)


def test_read_json_list_checks(tmp_path):
    path = tmp_path / "front.json"
    item = {"arch": str, "acc": float}
    workdir.atomic_write_json(path, [{"arch": "a", "acc": 0.5}, {"arch": "b", "acc": 1}])
    assert len(workdir.read_json_list(path, "pareto front", item)) == 2

    workdir.atomic_write_json(path, {"arch": "a"})
    with pytest.raises(WorkdirError, match="expected a JSON array.*object"):
        workdir.read_json_list(path, "pareto front", item)

    workdir.atomic_write_json(path, [{"arch": "a", "acc": 0.5}, 7])
    with pytest.raises(WorkdirError, match=r"item \[1\] must be an object, got int 7"):
        workdir.read_json_list(path, "pareto front", item)

    workdir.atomic_write_json(path, [{"arch": "a", "acc": 0.5}, {"arch": "b", "acc": "high"}])
    with pytest.raises(WorkdirError, match=r"front\.json: item \[1\]: key 'acc' must be float, got string 'high'"):
        workdir.read_json_list(path, "pareto front", item)


def test_file_sha256(tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(data)
    assert workdir.file_sha256(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(WorkdirError, match="missing.*not found"):
        workdir.file_sha256(tmp_path / "missing")


# --------------------------------------------------------------------------------------------------- staged dirs


def test_staged_dir_creates_when_missing(tmp_path):
    final = tmp_path / "export" / "best"
    with workdir.staged_dir(final) as stage:
        assert os.path.basename(stage).startswith(".best.staging-")
        assert os.path.dirname(stage) == str(final.parent)
        with open(os.path.join(stage, "model.tflite"), "wb") as f:
            f.write(b"m")
    assert _snapshot(final) == {"model.tflite": b"m"}
    assert _listing(final.parent) == ["best"]


def test_staged_dir_replaces_existing(tmp_path):
    final = tmp_path / "best"
    final.mkdir()
    (final / "old.txt").write_text("old")
    (final / "sub").mkdir()
    (final / "sub" / "x").write_text("x")
    with workdir.staged_dir(final) as stage, open(os.path.join(stage, workdir.METADATA), "w") as f:
        json.dump({"v": 2}, f)
    assert _snapshot(final) == {"metadata.json": b'{"v": 2}'}
    assert _listing(tmp_path) == ["best"]


def test_staged_dir_exception_keeps_previous(tmp_path):
    final = tmp_path / "best"
    final.mkdir()
    (final / "a.bin").write_bytes(b"\x00\x01")
    (final / "sub").mkdir()
    (final / "sub" / "b").write_text("b")
    before = _snapshot(final)
    with pytest.raises(RuntimeError, match="export failed"), workdir.staged_dir(final) as stage:
        with open(os.path.join(stage, "a.bin"), "wb") as f:
            f.write(b"partial")
        raise RuntimeError("export failed")
    assert _snapshot(final) == before
    assert _listing(tmp_path) == ["best"]


def test_staged_dir_failed_swap_restores_previous(tmp_path, monkeypatch):
    final = tmp_path / "best"
    final.mkdir()
    (final / "a").write_text("old")
    real_rename = os.rename

    def rename(src, dst):
        if ".staging-" in os.fspath(src):
            raise OSError(18, "Invalid cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(WorkdirError, match="cannot move the staged directory"), workdir.staged_dir(final) as stage:
        (tmp_path / stage / "a").write_text("new")
    assert _snapshot(final) == {"a": b"old"}
    assert _listing(tmp_path) == ["best"]


def test_staged_dir_refuses_to_replace_a_file(tmp_path):
    final = tmp_path / "best"
    final.write_text("a file")
    with pytest.raises(WorkdirError, match="not a directory"), workdir.staged_dir(final):
        pass
    assert final.read_text() == "a file"
    assert _listing(tmp_path) == ["best"]


def test_clean_stale_removes_only_leftovers(tmp_path):
    (tmp_path / ".best.staging-abc123").mkdir()
    (tmp_path / ".best.staging-abc123" / "f").write_text("x")
    (tmp_path / ".best.old-def456").mkdir()
    (tmp_path / ".pareto.png.tmp-0a1b2c.png").write_text("x")
    (tmp_path / ".c.json.tmp-99").write_text("x")
    keep = ["best", ".hidden", "staging-x", ".staging", "a.tmp-1", ".gitignore", "notes.old-1"]
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / ".x.tmp-1").write_text("nested leftovers are not touched")
    for name in keep[1:]:
        (tmp_path / name).write_text("keep")
    removed = workdir.clean_stale(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == sorted(
        [".best.staging-abc123", ".best.old-def456", ".pareto.png.tmp-0a1b2c.png", ".c.json.tmp-99"]
    )
    assert _listing(tmp_path) == sorted(keep)
    assert (tmp_path / "best" / ".x.tmp-1").exists()
    assert workdir.clean_stale(tmp_path / "missing") == []


def test_clean_stale_restores_previous_content_when_the_swap_left_it_aside(tmp_path):
    # The swap moved `best` aside and then failed (or the process died) before the staged copy took its place, and
    # moving it back failed too: the `.old-*` folder is the user's only copy and must come back, not be deleted.
    (tmp_path / ".best.old-def456").mkdir()
    (tmp_path / ".best.old-def456" / "weights").write_text("previous export")
    (tmp_path / ".best.staging-abc123").mkdir()
    removed = workdir.clean_stale(tmp_path)
    assert [os.path.basename(p) for p in removed] == [".best.staging-abc123"]
    assert _listing(tmp_path) == ["best"]
    assert (tmp_path / "best" / "weights").read_text() == "previous export"


def test_clean_stale_keeps_an_old_folder_whose_name_may_be_truncated(tmp_path):
    long_name = "n" * 80  # staged names keep only the first 64 characters of the base
    old = tmp_path / f".{long_name[:64]}.old-def456"
    old.mkdir()
    assert workdir.clean_stale(tmp_path) == []
    assert old.is_dir()


def test_failed_swap_then_clean_stale_loses_nothing(tmp_path, monkeypatch):
    final = tmp_path / "best"
    final.mkdir()
    (final / "weights").write_text("previous export")
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((os.path.basename(src), os.path.basename(dst)))
        if len(calls) >= 2:  # moving `best` aside works; moving the staged copy in and moving `best` back fail
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(workdir.os, "rename", rename)
    with pytest.raises(WorkdirError, match="left at"), workdir.staged_dir(final) as staging:
        with open(os.path.join(staging, "weights"), "w") as f:
            f.write("new export")
    monkeypatch.setattr(workdir.os, "rename", real_rename)
    assert not final.exists()
    workdir.clean_stale(tmp_path)
    assert (final / "weights").read_text() == "previous export"
    assert _listing(tmp_path) == ["best"]


# --------------------------------------------------------------------------------------------------- guards


def test_ensure_inside(tmp_path):
    root = tmp_path / "run"
    (root / "export" / "best").mkdir(parents=True)
    assert workdir.ensure_inside(root, root / "export" / "best") == os.path.realpath(root / "export" / "best")
    with pytest.raises(WorkdirError, match="export dir"):
        workdir.ensure_inside(root, os.path.join(root, "..", "x"), "export dir")
    with pytest.raises(WorkdirError, match="not inside"):
        workdir.ensure_inside(root, root)
    with pytest.raises(WorkdirError, match="not inside"):
        workdir.ensure_inside(root, tmp_path / "run2")  # a sibling sharing the prefix
    outside = tmp_path / "outside"
    outside.mkdir()
    link = root / "export" / "link"
    try:
        os.symlink(outside, link)
    except (OSError, NotImplementedError):
        pytest.skip("symlinks not available")
    with pytest.raises(WorkdirError, match="link.*resolves to"):
        workdir.ensure_inside(root, link)

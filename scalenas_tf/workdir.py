"""A run's working directory: its file names, its paths, and every write to it (atomic) and read from it (checked).

Layout of a run directory (names are the module-level constants)::

    <root>/
      supernet.weights.h5   config.json   train_summary.json
      checkpoints/  loop_checkpoints/  tensorboard/  backup/
      search/  evaluations.jsonl  pareto_front.json  pareto_front.csv  pareto.png  search_summary.json
      export/<name>/  metadata.json ...

Writes go to a hidden temporary file in the same directory, are flushed and fsynced, and are then moved into place
with `os.replace`, so a reader (or a run killed mid-write) sees either the old file or the new one, never half of one.
Whole directories (exports) are built in a hidden staging directory and swapped in by `staged_dir`.
Hidden names (starting with ".") are reserved for this staging; `check_name` refuses them for user-chosen names.

This module needs only the standard library, so it can be imported without TensorFlow.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

WEIGHTS = "supernet.weights.h5"
CONFIG = "config.json"
TRAIN_SUMMARY = "train_summary.json"
SEARCH_DIR = "search"
EVALUATIONS = "evaluations.jsonl"
PARETO_JSON = "pareto_front.json"
PARETO_CSV = "pareto_front.csv"
PARETO_PNG = "pareto.png"
SEARCH_SUMMARY = "search_summary.json"
EXPORT_DIR = "export"
METADATA = "metadata.json"
BACKUP_DIR = "backup"
CHECKPOINTS_DIR = "checkpoints"
LOOP_CHECKPOINTS_DIR = "loop_checkpoints"
TENSORBOARD_DIR = "tensorboard"

# Largest JSON file `read_json` reads by default, and the deepest nesting of arrays/objects it accepts.
MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_NAME_LENGTH = 128

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]{0,127}")
# Leftovers of an interrupted `staged_dir` / atomic write; `clean_stale` removes only these.
_STALE_PATTERNS = (".*.staging-*", ".*.old-*", ".*.tmp-*")
_REPR_LIMIT = 80
# Temporary names keep at most this much of the final name, so that they stay under file-system name limits.
_TEMP_BASE_LIMIT = 64
_CHUNK = 1024 * 1024


class WorkdirError(ValueError):
    """A bad name, path or file in a run directory; the message names the path or field and the problem."""


# --------------------------------------------------------------------------------------------------- helpers


def _show(path: Any) -> str:
    """`path` as one printable line (repr when it holds control or non-printable characters)."""
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return text if text.isprintable() else repr(text)


def _short(value: Any) -> str:
    """`repr(value)`, cut to about 80 characters and kept on one line."""
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return text


def _split(path: Any) -> tuple[str, str]:
    """(absolute parent directory, base name) of `path`; WorkdirError if it has no base name."""
    full = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(full)
    if not base or base in (".", ".."):
        raise WorkdirError(f"{_show(path)}: not a file path (no base name)")
    return parent, base


def _token() -> str:
    return secrets.token_hex(6)


def _fsync_dir(directory: str) -> None:
    """Fsyncs a directory so that a rename in it is durable; best effort (some platforms cannot open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    """Remove a temporary file or directory this module created; never raises."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
    except OSError:
        pass


def _temp_path(parent: str, base: str, keep_suffix: bool) -> str:
    """A fresh hidden temporary name next to `base` in `parent`: `.<base>.tmp-<random>[<suffixes of base>]`.

    All suffixes are kept (`.weights.h5`, not only `.h5`): Keras picks the format from the whole ending.
    """
    stem = base.lstrip(".")
    suffix = stem[stem.index(".") :] if keep_suffix and "." in stem else ""
    return os.path.join(parent, f".{base[:_TEMP_BASE_LIMIT]}.tmp-{_token()}{suffix}")


# --------------------------------------------------------------------------------------------------- names


def check_name(name: Any, field: str = "name") -> str:
    """Checks that `name` is a plain file name: no directories, no hidden or odd names.

    The rule is `^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$`: letters, digits, "_", ".", "+", "-", at most 128
    characters, not starting with "." (reserved for staging files) or "-" (read as an option by command lines).

    Args:
        name: the candidate name.
        field: what the name is (e.g. "export name"), for the error message.

    Returns:
        `name`, unchanged.

    Raises:
        WorkdirError: naming `field` and `repr(name)` and saying what is wrong.
    """
    if not isinstance(name, str):
        raise WorkdirError(f"{field} must be a string file name, got {type(name).__name__} {_short(name)}")
    if _NAME_RE.fullmatch(name):
        return name
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if not name:
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is a directory reference, not a file name"
    elif any(sep in name for sep in seps) or os.path.isabs(name):
        problem = "contains a path separator (a plain file name is needed)"
    elif any(not ch.isprintable() for ch in name):
        problem = "contains a control or non-printable character"
    elif name != name.strip():
        problem = "has leading or trailing whitespace"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"is longer than {MAX_NAME_LENGTH} characters ({len(name)})"
    elif name.startswith("."):
        problem = "starts with '.' (hidden names are reserved for staging files)"
    elif name.startswith("-"):
        problem = "starts with '-'"
    else:
        problem = "may hold only letters, digits, '_', '.', '+' and '-'"
    raise WorkdirError(f"{field} {_short(name)} {problem}")


def ensure_inside(root: Any, path: Any, field: str = "path") -> str:
    """Checks that `path` lies strictly inside `root`, after resolving symlinks and `..` in both.

    Use it before removing anything recursively.

    Args:
        root: the directory that must contain `path`.
        path: the path to check.
        field: what `path` is, for the error message.

    Returns:
        The resolved (real) `path`.

    Raises:
        WorkdirError: if `path` resolves to `root` itself or to anything outside it.
    """
    real_root = os.path.realpath(os.fspath(root))
    real_path = os.path.realpath(os.fspath(path))
    try:
        inside = os.path.commonpath([real_root, real_path]) == real_root and real_path != real_root
    except ValueError:  # different drives on Windows
        inside = False
    if not inside:
        raise WorkdirError(
            f"{field} {_show(path)} (resolves to {_show(real_path)}) is not inside {_show(root)} "
            f"(resolves to {_show(real_root)})"
        )
    return real_path


# --------------------------------------------------------------------------------------------------- layout


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of one run directory. Only computes paths; creates nothing.

    Attributes:
        root: the run directory (a str; a path-like is converted).
    """

    root: str

    def __post_init__(self):
        """Converts a path-like root to str; rejects an empty root."""
        root = self.root
        if isinstance(root, os.PathLike):
            root = os.fspath(root)
        if not isinstance(root, str) or not root:
            raise WorkdirError(f"workdir root must be a non-empty path, got {_short(self.root)}")
        object.__setattr__(self, "root", root)

    def _join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def weights(self) -> str:
        """`<root>/supernet.weights.h5`."""
        return self._join(WEIGHTS)

    @property
    def config(self) -> str:
        """`<root>/config.json`."""
        return self._join(CONFIG)

    @property
    def train_summary(self) -> str:
        """`<root>/train_summary.json`."""
        return self._join(TRAIN_SUMMARY)

    @property
    def search_dir(self) -> str:
        """`<root>/search`."""
        return self._join(SEARCH_DIR)

    @property
    def evaluations(self) -> str:
        """`<root>/search/evaluations.jsonl`."""
        return self._join(SEARCH_DIR, EVALUATIONS)

    @property
    def pareto_json(self) -> str:
        """`<root>/search/pareto_front.json`."""
        return self._join(SEARCH_DIR, PARETO_JSON)

    @property
    def pareto_csv(self) -> str:
        """`<root>/search/pareto_front.csv`."""
        return self._join(SEARCH_DIR, PARETO_CSV)

    @property
    def pareto_png(self) -> str:
        """`<root>/search/pareto.png`."""
        return self._join(SEARCH_DIR, PARETO_PNG)

    @property
    def search_summary(self) -> str:
        """`<root>/search/search_summary.json`."""
        return self._join(SEARCH_DIR, SEARCH_SUMMARY)

    @property
    def export_root(self) -> str:
        """`<root>/export`, the parent of every export directory."""
        return self._join(EXPORT_DIR)

    @property
    def backup_dir(self) -> str:
        """`<root>/backup`."""
        return self._join(BACKUP_DIR)

    @property
    def checkpoints_dir(self) -> str:
        """`<root>/checkpoints`."""
        return self._join(CHECKPOINTS_DIR)

    @property
    def loop_checkpoints_dir(self) -> str:
        """`<root>/loop_checkpoints`."""
        return self._join(LOOP_CHECKPOINTS_DIR)

    @property
    def tensorboard_dir(self) -> str:
        """`<root>/tensorboard`."""
        return self._join(TENSORBOARD_DIR)

    def export_dir(self, name: str) -> str:
        """`<root>/export/<name>`.

        Args:
            name: the export's name; must pass `check_name`.

        Returns:
            The export directory's path.

        Raises:
            WorkdirError: if `name` is not a plain file name.
        """
        return self._join(EXPORT_DIR, check_name(name, "export name"))


# --------------------------------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Any, data: bytes) -> str:
    """Writes `data` to `path` atomically: temp file in the same directory, fsync, `os.replace`, fsync directory.

    The parent directory is created if missing. On any failure the temp file is removed and a previous file at
    `path` is left untouched.

    Args:
        path: the destination file.
        data: the whole new content.

    Returns:
        `path` as a str.

    Raises:
        WorkdirError: if `data` is not bytes-like, or on any OSError (naming the path).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WorkdirError(f"{_show(path)}: data to write must be bytes, got {type(data).__name__}")
    parent, base = _split(path)
    target = os.fspath(path)
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = _temp_path(parent, base, keep_suffix=False)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        raise WorkdirError(f"{_show(path)}: cannot write ({e.__class__.__name__}: {e.strerror or e})") from e
    finally:
        if tmp is not None:
            _remove_quietly(tmp)
    _fsync_dir(parent)
    return target


def atomic_write_text(path: Any, text: str, encoding: str = "utf-8") -> str:
    """Writes `text` to `path` atomically (see `atomic_write_bytes`); newlines are written as they are.

    Args:
        path: the destination file.
        text: the whole new content.
        encoding: the text encoding.

    Returns:
        `path` as a str.

    Raises:
        WorkdirError: if `text` is not a str or cannot be encoded, or the write fails.
    """
    if not isinstance(text, str):
        raise WorkdirError(f"{_show(path)}: text to write must be str, got {type(text).__name__}")
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError as e:
        raise WorkdirError(f"{_show(path)}: cannot encode text as {encoding}: {e.reason} at {e.start}") from e
    return atomic_write_bytes(path, data)


def atomic_write_json(path: Any, obj: Any, indent: int | None = 1) -> str:
    """Writes `obj` as JSON (plus a final newline) to `path` atomically.

    The object is serialized before the disk is touched, so an unserializable object leaves `path` as it was.

    Args:
        path: the destination file.
        obj: a JSON-serializable object.
        indent: as for `json.dumps`.

    Returns:
        `path` as a str.

    Raises:
        WorkdirError: if `obj` cannot be serialized, or the write fails.
    """
    try:
        text = json.dumps(obj, indent=indent)
    except (TypeError, ValueError, RecursionError) as e:
        raise WorkdirError(f"{_show(path)}: cannot serialize to JSON: {e}") from e
    return atomic_write_text(path, text + "\n")


def atomic_write_csv(path: Any, rows: Iterable[Iterable[Any]]) -> str:
    """Writes `rows` (e.g. a header row, then data rows) as CSV to `path` atomically, with LF line ends.

    All rows are formatted before the disk is touched.

    Args:
        path: the destination file.
        rows: an iterable of rows, each an iterable of cells.

    Returns:
        `path` as a str.

    Raises:
        WorkdirError: if a row cannot be written as CSV, or the write fails.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    try:
        for row in rows:
            writer.writerow(row)
    except (csv.Error, TypeError) as e:
        raise WorkdirError(f"{_show(path)}: cannot format CSV row: {e}") from e
    return atomic_write_text(path, buffer.getvalue())


@contextlib.contextmanager
def atomic_path(path: Any) -> Iterator[str]:
    """Yields a temporary path to write `path` through, for writers that want a file name (savefig, h5py, Keras).

    The temporary path is `.<name>.tmp-<random><suffix>` in the same directory (created if missing) and keeps the
    final suffix, so libraries that pick a format from it work. It does not exist yet when yielded. On normal exit
    the file written there is fsynced and moved onto `path` with `os.replace`; if the block raises, the temporary
    file is removed, `path` is left untouched, and the exception propagates.

    Args:
        path: the destination file.

    Yields:
        The temporary path to write.

    Raises:
        WorkdirError: if nothing (or not a regular file) was written at the temporary path, or on an OSError.
    """
    parent, base = _split(path)
    target = os.fspath(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"{_show(parent)}: cannot create directory ({e.strerror or e})") from e
    tmp = _temp_path(parent, base, keep_suffix=True)
    try:
        yield tmp
        if not os.path.isfile(tmp) or os.path.islink(tmp):
            raise WorkdirError(f"{_show(path)}: nothing was written to the temporary file {_show(tmp)}")
        try:
            _fsync_file(tmp)
            os.replace(tmp, target)
        except OSError as e:
            raise WorkdirError(
                f"{_show(path)}: cannot move into place ({e.__class__.__name__}: {e.strerror or e})"
            ) from e
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(parent)


# --------------------------------------------------------------------------------------------------- staged dirs


@contextlib.contextmanager
def staged_dir(final_path: Any) -> Iterator[str]:
    """Builds a directory in a hidden staging directory and swaps it in for `final_path` when the block succeeds.

    The staging directory is `.<basename>.staging-<random>` next to `final_path`. On normal exit an existing
    `final_path` is renamed to `.<basename>.old-<random>`, the staging directory is renamed to `final_path`, and the
    old directory is removed (if the second rename fails, the old directory is renamed back). If the block raises,
    only the staging directory is removed and `final_path` is left as it was.

    Not safe against two processes staging the same `final_path` at once; run `clean_stale` only when no other
    process is writing in the parent directory.

    Args:
        final_path: the directory to create or replace.

    Yields:
        The staging directory's path, empty.

    Raises:
        WorkdirError: if `final_path` exists but is not a real directory (a file or a symlink), or a rename fails.
    """
    parent, base = _split(final_path)
    final = os.path.join(parent, base)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"{_show(parent)}: cannot create directory ({e.strerror or e})") from e
    staging = None
    for _ in range(8):
        candidate = os.path.join(parent, f".{base[:_TEMP_BASE_LIMIT]}.staging-{_token()}")
        try:
            os.mkdir(candidate, 0o777)
        except FileExistsError:
            continue
        except OSError as e:
            raise WorkdirError(f"{_show(candidate)}: cannot create staging directory ({e.strerror or e})") from e
        staging = candidate
        break
    if staging is None:
        raise WorkdirError(f"{_show(final_path)}: cannot find a free staging directory name")

    try:
        yield staging
        _swap_in(staging, final, parent, base)
    except BaseException:
        if os.path.lexists(staging):
            ensure_inside(parent, staging, "staging directory")
            _remove_quietly(staging)
        raise
    _fsync_dir(parent)


def _swap_in(staging: str, final: str, parent: str, base: str) -> None:
    """Moves `staging` to `final`, replacing a directory there; see `staged_dir`."""
    if not os.path.lexists(final):
        try:
            os.rename(staging, final)
        except OSError as e:
            raise WorkdirError(
                f"{_show(final)}: cannot move the staged directory into place ({e.strerror or e})"
            ) from e
        return
    if os.path.islink(final) or not os.path.isdir(final):
        raise WorkdirError(f"{_show(final)}: exists and is not a directory (or is a symlink); refusing to replace it")
    old = os.path.join(parent, f".{base[:_TEMP_BASE_LIMIT]}.old-{_token()}")
    try:
        os.rename(final, old)
    except OSError as e:
        raise WorkdirError(f"{_show(final)}: cannot move the previous directory aside ({e.strerror or e})") from e
    try:
        os.rename(staging, final)
    except OSError as e:
        try:
            os.rename(old, final)
            where = "previous content restored"
        except OSError:
            where = f"previous content left at {_show(old)} (the next clean_stale moves it back)"
        raise WorkdirError(
            f"{_show(final)}: cannot move the staged directory into place ({e.strerror or e}); {where}"
        ) from e
    ensure_inside(parent, old, "previous directory")
    shutil.rmtree(old, ignore_errors=True)  # a leftover is harmless; clean_stale removes it next time


def clean_stale(parent: Any) -> list[str]:
    """Removes leftovers of interrupted writes directly under `parent`, and nothing else.

    Leftovers are `.*.staging-*` and `.*.old-*` (from `staged_dir`) and `.*.tmp-*` (from the atomic writers). A
    `.<name>.old-*` directory is the previous content of `<name>`: it is removed only when `<name>` exists (the swap
    finished); when `<name>` is missing (the swap was interrupted, or failed and could not be undone) it is renamed
    back to `<name>`; when its name may have been truncated it is left alone. Run it only while no other process is
    writing in `parent`.

    Args:
        parent: the directory to clean; a missing directory is fine.

    Returns:
        The paths removed (restored directories are not listed).

    Raises:
        WorkdirError: if `parent` exists but cannot be listed.
    """
    directory = os.fspath(parent)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise WorkdirError(f"{_show(parent)}: cannot list directory ({e.strerror or e})") from e
    removed = []
    for name in names:
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in _STALE_PATTERNS):
            continue
        path = os.path.join(directory, name)
        if fnmatch.fnmatchcase(name, ".*.old-*") and not _old_is_superseded(directory, name):
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                ensure_inside(directory, path, "stale directory")
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError as e:
            raise WorkdirError(f"{_show(path)}: cannot remove stale leftover ({e.strerror or e})") from e
        removed.append(path)
    return removed


def _old_is_superseded(directory: str, name: str) -> bool:
    """Whether `.<base>.old-*` directory `name` may go: True once `<base>` exists; restores it if `<base>` is gone."""
    base = name[1 : name.rindex(".old-")]
    if len(base) >= _TEMP_BASE_LIMIT:
        return False  # the name may be truncated: the directory it belongs to is unknown, so keep it
    final = os.path.join(directory, base)
    if os.path.lexists(final):
        return True
    try:
        os.rename(os.path.join(directory, name), final)
    except OSError as e:
        raise WorkdirError(
            f"{_show(os.path.join(directory, name))}: holds the previous {base!r} and cannot be moved back "
            f"({e.strerror or e}); rename it to {base!r} by hand"
        ) from e
    return False


# --------------------------------------------------------------------------------------------------- reads


def file_sha256(path: Any) -> str:
    """The SHA-256 of a file, read in chunks.

    Args:
        path: the file.

    Returns:
        The hex digest.

    Raises:
        WorkdirError: naming the path if it is missing or unreadable.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError as e:
        raise WorkdirError(f"{_show(path)}: not found") from e
    except OSError as e:
        raise WorkdirError(f"{_show(path)}: cannot read ({e.__class__.__name__}: {e.strerror or e})") from e
    return digest.hexdigest()


def _too_deep(obj: Any, limit: int) -> bool:
    """Whether arrays/objects in `obj` nest more than `limit` levels (a top-level `[]` is level 1); no recursion."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def read_json(path: Any, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Reads a JSON file, turning every way it can be bad into one WorkdirError naming the path.

    Args:
        path: the file.
        what: what the file is (e.g. "train summary"), for the error message.
        max_bytes: the largest file size accepted.

    Returns:
        The parsed document.

    Raises:
        WorkdirError: if the file is missing, unreadable, larger than `max_bytes`, not UTF-8, not valid JSON
            (with line and column), or nested more than 64 levels.
    """
    where = f"{what} {_show(path)}"
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise WorkdirError(f"{where}: too large ({size} bytes > limit {max_bytes})")
            data = f.read(max_bytes + 1)
    except FileNotFoundError as e:
        raise WorkdirError(f"{where}: not found") from e
    except OSError as e:
        raise WorkdirError(f"{where}: cannot read ({e.__class__.__name__}: {e.strerror or e})") from e
    if len(data) > max_bytes:
        raise WorkdirError(f"{where}: too large (> limit {max_bytes} bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise WorkdirError(f"{where}: not valid UTF-8 (byte offset {e.start}: {e.reason})") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkdirError(f"{where}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except RecursionError as e:
        raise WorkdirError(f"{where}: JSON nested too deeply (limit {MAX_JSON_DEPTH} levels)") from e
    if isinstance(obj, (dict, list)) and _too_deep(obj, MAX_JSON_DEPTH):
        raise WorkdirError(f"{where}: JSON nested too deeply (limit {MAX_JSON_DEPTH} levels)")
    return obj


def _type_names(expected: tuple[type, ...]) -> str:
    names = ["null" if t is type(None) else t.__name__ for t in expected]
    return " or ".join(names)


def _json_type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", type(None): "null"}.get(type(value), type(value).__name__)


def _type_ok(value: Any, expected: tuple[type, ...]) -> bool:
    """isinstance, except that bool passes only where bool is expected and int passes where float is expected."""
    if isinstance(value, bool):
        return bool in expected
    if float in expected and isinstance(value, int):
        return True
    return isinstance(value, expected)


def _check_required(record: dict, required: dict[str, type | tuple[type, ...]], where: str) -> None:
    for key, types in required.items():
        expected = types if isinstance(types, tuple) else (types,)
        if key not in record:
            raise WorkdirError(f"{where}: missing required key {key!r} ({_type_names(expected)})")
        value = record[key]
        if not _type_ok(value, expected):
            raise WorkdirError(
                f"{where}: key {key!r} must be {_type_names(expected)}, got {_json_type_name(value)} {_short(value)}"
            )


def read_json_object(
    path: Any,
    what: str = "JSON file",
    required: dict[str, type | tuple[type, ...]] | None = None,
    max_bytes: int = MAX_JSON_BYTES,
) -> dict:
    """Reads a JSON file that must hold an object, with some keys of given types.

    Types are checked with isinstance, except that a bool is accepted only where `bool` is listed, and an int is
    accepted where `float` is listed. Use `type(None)` to allow null. Extra keys are allowed.

    Args:
        path: the file.
        what: what the file is, for the error message.
        required: key -> type or tuple of types that each listed key must have.
        max_bytes: the largest file size accepted.

    Returns:
        The parsed object.

    Raises:
        WorkdirError: as `read_json`, or if the top level is not an object, or a required key is missing or has the
            wrong type (naming the key, the expected type and the value received).
    """
    obj = read_json(path, what, max_bytes=max_bytes)
    where = f"{what} {_show(path)}"
    if not isinstance(obj, dict):
        raise WorkdirError(
            f"{where}: expected a JSON object at the top level, got {_json_type_name(obj)} {_short(obj)}"
        )
    _check_required(obj, required or {}, where)
    return obj


def read_json_list(
    path: Any,
    what: str = "JSON file",
    item_required: dict[str, type | tuple[type, ...]] | None = None,
    max_bytes: int = MAX_JSON_BYTES,
) -> list[dict]:
    """Reads a JSON file that must hold an array of objects, each with some keys of given types.

    Args:
        path: the file.
        what: what the file is, for the error message.
        item_required: key -> type or tuple of types that every item must have (see `read_json_object`).
        max_bytes: the largest file size accepted.

    Returns:
        The parsed list.

    Raises:
        WorkdirError: as `read_json`, or if the top level is not an array, an item is not an object, or an item
            lacks a required key or has the wrong type (naming the item's index and the key).
    """
    obj = read_json(path, what, max_bytes=max_bytes)
    where = f"{what} {_show(path)}"
    if not isinstance(obj, list):
        raise WorkdirError(f"{where}: expected a JSON array at the top level, got {_json_type_name(obj)} {_short(obj)}")
    for index, item in enumerate(obj):
        if not isinstance(item, dict):
            raise WorkdirError(f"{where}: item [{index}] must be an object, got {_json_type_name(item)} {_short(item)}")
        _check_required(item, item_required or {}, f"{where}: item [{index}]")
    return obj

"""Durable, append-only search state: one JSON line per evaluated arch.

A record is written and `fsync`ed before the search goes on, so a crash or kill loses at most the
evaluation in flight. A line cut short by a crash mid-write is the only damage possible; it is
dropped (and truncated away) when the log is opened again. The first line is a header holding what
the evaluations depend on (space, task, data, cost measure, weights); reopening a log with a
different header is refused rather than mixing incompatible results.

Searches replay from the log: `EvaluationLog.metric(method, arch)` gives the stored metric of an
arch that `method` already evaluated, or the metric another method stored for the same arch (the
same arch always scores the same), so a restarted deterministic search proposes the same archs and
only the ones never evaluated cost anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

LOG_FORMAT = "scalenas_tf.search_log/v1"


# Fields every evaluation record must have, and their JSON types.
_RECORD_FIELDS = {"method": (str,), "hash": (str,), "metric": (float, int), "arch": (dict,)}
_OPTIONAL_FIELDS = ("arch",)  # written by `cached_evaluate`; records appended directly may omit it


class SearchStateError(ValueError):
    """The search log cannot be used: a corrupt line, or a header that does not match the run."""


class EvaluationLog:
    """An append-only JSON-lines file of evaluations, with a header.

    Args:
        path: the log file; created (with its directory) if missing.
        header: JSON-serializable dict describing what metrics depend on; must equal the stored one.
    """

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]):
        self.path = os.fspath(path)
        self.header = json.loads(json.dumps(header))
        self.records: list[dict[str, Any]] = []
        self._by_method: dict[tuple[str, str], dict[str, Any]] = {}
        self._by_hash: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            self._load()
        else:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._write_line({"format": LOG_FORMAT, "header": self.header})

    def _load(self):
        with open(self.path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        if tail:
            # A line without its newline was cut short by a crash: drop it.
            with open(self.path, "r+b") as f:
                f.truncate(len(data) - len(tail))
                f.flush()
                os.fsync(f.fileno())
        if not complete:
            raise SearchStateError(f"{self.path}: no complete header line; delete the file to start over")
        first = self._parse(complete[0], 1)
        if first.get("format") != LOG_FORMAT:
            raise SearchStateError(
                f"{self.path}: not a search log (format {first.get('format')!r}, expected {LOG_FORMAT!r})"
            )
        if first.get("header") != self.header:
            stored, wanted = first.get("header"), self.header
            stored = stored if isinstance(stored, dict) else {}
            differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise SearchStateError(
                f"{self.path} was written by a search with different settings (fields {differ}); "
                f"use a new workdir or delete the log. Stored: { {k: stored.get(k) for k in differ} }, "
                f"this run: { {k: wanted.get(k) for k in differ} }"
            )
        for number, line in enumerate(complete[1:], start=2):
            self._index(self._parse(line, number))

    def _parse(self, line: bytes, number: int) -> dict[str, Any]:
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SearchStateError(
                f"{self.path}, line {number}: not valid JSON ({e}); the log is corrupt: delete it to start over"
            ) from None
        except RecursionError:
            raise SearchStateError(f"{self.path}, line {number}: JSON nested too deeply; the log is corrupt") from None
        if not isinstance(obj, dict):
            raise SearchStateError(f"{self.path}, line {number}: expected a JSON object; the log is corrupt")
        if number > 1:
            for key, kinds in _RECORD_FIELDS.items():
                value = obj.get(key)
                if key in _OPTIONAL_FIELDS and key not in obj:
                    continue
                if not isinstance(value, kinds) or isinstance(value, bool):
                    raise SearchStateError(
                        f"{self.path}, line {number}: field {key!r} must be {kinds[0].__name__}; "
                        f"received {value!r:.60}. The log is corrupt: delete it to start over"
                    )
        return obj

    def _index(self, record):
        self.records.append(record)
        self._by_method[(record["method"], record["hash"])] = record
        self._by_hash.setdefault(record["hash"], record)
        self._counts[record["method"]] = self._counts.get(record["method"], 0) + 1

    def _write_line(self, obj):
        line = json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def append(self, record: dict[str, Any]) -> None:
        """Writes `record` (needs `method` and `hash`) durably, then indexes it."""
        record = json.loads(json.dumps(record))
        self._write_line(record)
        self._index(record)

    def get(self, method: str, arch_hash: str) -> dict[str, Any] | None:
        """The record `method` stored for `arch_hash`, if any."""
        return self._by_method.get((method, arch_hash))

    def any_method(self, arch_hash: str) -> dict[str, Any] | None:
        """The first record of `arch_hash` by any method, if any."""
        return self._by_hash.get(arch_hash)

    def of(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["method"] == method]

    def cached_evaluate(
        self,
        method: str,
        evaluate: Callable[[Any], dict[str, Any]],
        on_record: Callable[[dict, bool], None] | None = None,
    ) -> Callable[[Any], float]:
        """Wraps `evaluate(arch) -> {"metric": float, ...}` into `arch -> metric` for a search.

        Archs `method` already evaluated replay their stored metric; archs another method evaluated
        are copied into this method's records (marked `"reused": true`) without running `evaluate`;
        new archs are evaluated and appended. `on_record(record, fresh)` is called for every record
        this search reaches (for progress).
        """

        def wrapped(arch):
            key = arch.hash()
            record = self.get(method, key)
            fresh = False
            if record is None:
                other = self.any_method(key)
                if other is not None:
                    record = {k: v for k, v in other.items() if k not in ("method", "index", "reused")}
                    record["reused"] = True
                else:
                    record = dict(evaluate(arch))
                    record["reused"] = False
                    fresh = True
                record.update(method=method, hash=key, arch=arch.to_dict(), index=self._counts.get(method, 0))
                self.append(record)
            if on_record is not None:
                on_record(record, fresh)
            return float(record["metric"])

        return wrapped

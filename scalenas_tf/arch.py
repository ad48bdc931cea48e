"""What every architecture encoding shares: `ArchError`, JSON round-trip and a stable hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any


class ArchError(ValueError):
    """An architecture encoding that is malformed or outside its search space."""

    # Raised while a tf.function traces (e.g. a vector of the wrong static length), AutoGraph would
    # re-raise any ValueError subclass as a StagingError; this keeps it an ArchError.
    ag_pass_through = True


def short(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class EncodedArch:
    """JSON and hashing shared by the arch encodings: subclasses give `to_dict` and `from_dict`."""

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArchError(f"Arch is not valid JSON: {e}") from None
        except RecursionError:
            raise ArchError("Arch JSON is nested too deeply") from None
        return cls.from_dict(data)

    def hash(self) -> str:
        """A stable 16-hex-digit digest of the canonical JSON (same arch, same hash, any process)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


class ArchFiles:
    """What every space shares about its arch objects: validation as a bool, and reading from a dict or a
    JSON file, validated. A space sets `arch_class` (its `EncodedArch` subclass) and defines
    `validate(arch)`, raising ArchError for an arch outside it."""

    arch_class: type[EncodedArch]

    def is_valid(self, arch) -> bool:
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    def arch_from_dict(self, data: Any):
        """`arch_class.from_dict(data)`, validated against this space."""
        arch = self.arch_class.from_dict(data)
        self.validate(arch)
        return arch

    def load_arch(self, path):
        """Reads an arch JSON file (`arch_class.to_json` output) and validates it."""
        import os

        with open(os.fspath(path)) as f:
            arch = self.arch_class.from_json(f.read())
        self.validate(arch)
        return arch

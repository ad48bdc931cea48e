"""Importing foreign (PyTorch) weights into Keras layers by name: layout conversion, shape checks, a report.

A family's importer (`registry.Family.weight_importers`) knows which checkpoint tensor feeds which
Keras layer; it adds each pair to a `WeightMapper`, which converts PyTorch layouts (conv OIHW ->
HWIO, depthwise `(c, 1, kh, kw)` -> `(kh, kw, c, 1)`, dense `(out, in)` -> `(in, out)`, BatchNorm
weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance), checks every shape
against the layer's variables and returns a `WeightImport`. `apply` then assigns the values, all
or nothing. Supernets and extracted models name their leaf layers alike, so one importer serves both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

# Entries of a PyTorch state dict no Keras variable holds.
IGNORED_SUFFIXES = (".num_batches_tracked",)
_BN_FIELDS = (
    ("gamma", "weight"),
    ("beta", "bias"),
    ("moving_mean", "running_mean"),
    ("moving_variance", "running_var"),
)


class WeightImportError(ValueError):
    """A checkpoint that does not fit the model: a shape mismatch, a missing tensor, or left-over tensors."""


@dataclasses.dataclass(frozen=True)
class WeightImport:
    """What an importer mapped, and what it left unmapped on either side.

    Args:
        assignments: `{layer name: {variable name: array}}`, already in Keras layout.
        sources: `{layer name: {variable name: checkpoint name}}`.
        missing: `"layer <- checkpoint prefix"` for layers the arch runs but the checkpoint lacks.
        unmapped_source: checkpoint names nothing read (other than `ignored`).
        unmapped_target: layers of the model holding weights that receive none (for a supernet,
            the blocks and edges outside the arch, and `missing`).
        ignored: checkpoint names with no Keras counterpart by design (`num_batches_tracked`, and
            the importer's `ignored_prefixes`).
        notes: what the user should know about the result (e.g. a model computing another function
            than the checkpoint's network with these weights).
    """

    assignments: dict[str, dict[str, np.ndarray]]
    sources: dict[str, dict[str, str]]
    missing: tuple[str, ...] = ()
    unmapped_source: tuple[str, ...] = ()
    unmapped_target: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def num_tensors(self) -> int:
        return sum(len(v) for v in self.assignments.values())

    def report(self, limit: int = 20) -> dict[str, Any]:
        """JSON-ready counts, with up to `limit` names of each unmapped kind."""
        return {
            "layers_mapped": len(self.assignments),
            "tensors_mapped": self.num_tensors,
            "ignored": len(self.ignored),
            "missing": list(self.missing[:limit]),
            "num_missing": len(self.missing),
            "unmapped_source": list(self.unmapped_source[:limit]),
            "num_unmapped_source": len(self.unmapped_source),
            "unmapped_target": list(self.unmapped_target[:limit]),
            "num_unmapped_target": len(self.unmapped_target),
            "notes": list(self.notes),
        }


def leaf_layers(model) -> dict[str, keras.layers.Layer]:
    """`{name: layer}` of every leaf layer holding weights (a supernet is built first, as in
    `load_subnet_weights`)."""
    if not model.built:
        model.build((None, None, None, 3))
    leaves = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.weights and not layer._flatten_layers(include_self=False, recursive=False):
            leaves[layer.name] = layer
    return leaves


class WeightMapper:
    """Collects checkpoint -> layer pairs with layout conversion and shape checks (see module doc).

    Args:
        tensors: the checkpoint's `{name: array}` (PyTorch layouts).
        leaves: the model's `leaf_layers`.
        ignored_prefixes: tuple of str. Checkpoint names with no Keras counterpart by design besides
            `IGNORED_SUFFIXES` (e.g. `"loss."`: a training wrapper's loss buffers); reported as `ignored`.
    """

    def __init__(
        self, tensors: Mapping[str, np.ndarray], leaves: Mapping[str, Any], ignored_prefixes: tuple[str, ...] = ()
    ):
        self.tensors = tensors
        self.leaves = leaves
        self.ignored_prefixes = tuple(ignored_prefixes)
        self._assignments: dict[str, dict[str, np.ndarray]] = {}
        self._sources: dict[str, dict[str, str]] = {}
        self._missing: list[str] = []

    def has_layer(self, name: str) -> bool:
        return name in self.leaves

    def conv(self, layer_name: str, prefix: str) -> None:
        """A Conv2D (kernel, optional bias) or DepthwiseConv2D from `<prefix>.weight` / `.bias`."""
        layer = self._layer(layer_name)
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        order = (2, 3, 0, 1) if depthwise else (2, 3, 1, 0)  # -> (kh, kw, in, out) or (kh, kw, c, multiplier)
        layout = "(c, 1, kh, kw) -> (kh, kw, c, 1)" if depthwise else "OIHW -> HWIO"

        def kernel(w):
            return np.transpose(w, order) if w.ndim == 4 else w

        fields = [("kernel", "weight", kernel, layout)]
        if getattr(layer, "use_bias", False):
            fields.append(("bias", "bias", None, ""))
        self._add(layer_name, prefix, fields)

    def batch_norm(self, layer_name: str, prefix: str) -> None:
        """A BatchNormalization from `<prefix>.weight/.bias/.running_mean/.running_var`."""
        self._layer(layer_name)
        self._add(layer_name, prefix, [(ours, theirs, None, "") for ours, theirs in _BN_FIELDS])

    def dense(self, layer_name: str, prefix: str) -> None:
        """A Dense from `<prefix>.weight` `(out, in)` and `<prefix>.bias`."""
        layer = self._layer(layer_name)
        fields = [("kernel", "weight", lambda w: w.T if w.ndim == 2 else w, "(out, in) -> (in, out)")]
        if getattr(layer, "use_bias", False):
            fields.append(("bias", "bias", None, ""))
        self._add(layer_name, prefix, fields)

    def result(self) -> WeightImport:
        read = {name for sources in self._sources.values() for name in sources.values()}
        ignored = tuple(k for k in self.tensors if k.endswith(IGNORED_SUFFIXES) or k.startswith(self.ignored_prefixes))
        unmapped_source = tuple(k for k in self.tensors if k not in read and k not in ignored)
        unmapped_target = tuple(name for name in self.leaves if name not in self._assignments)
        return WeightImport(
            dict(self._assignments),
            dict(self._sources),
            tuple(self._missing),
            unmapped_source,
            unmapped_target,
            ignored,
        )

    def _layer(self, name: str):
        if name not in self.leaves:
            raise WeightImportError(
                f"The model has no layer {name!r} (the importer expected it for this arch; is the model "
                "built from the same space and task?)"
            )
        return self.leaves[name]

    def _add(self, layer_name: str, prefix: str, fields) -> None:
        """`fields`: `(variable name, checkpoint suffix, convert or None, layout text)`."""
        names = [f"{prefix}.{theirs}" for _, theirs, _, _ in fields]
        absent = [n for n in names if n not in self.tensors]
        if absent:
            self._missing.append(f"{layer_name} <- {prefix} (no {', '.join(absent)})")
            return
        variables = {v.name: v for v in self.leaves[layer_name].weights}
        if set(variables) != {ours for ours, _, _, _ in fields}:
            raise WeightImportError(
                f"Layer {layer_name!r} holds variables {sorted(variables)}; the importer maps "
                f"{[ours for ours, _, _, _ in fields]} from {prefix}"
            )
        values, sources = {}, {}
        for (ours, _, convert, layout), name in zip(fields, names):
            array = np.asarray(self.tensors[name])
            value = convert(array) if convert else array
            expected = tuple(variables[ours].shape)
            if tuple(value.shape) != expected:
                how = f" (after {layout})" if layout else ""
                raise WeightImportError(
                    f"Shape mismatch: checkpoint {name} {tuple(array.shape)} -> {layer_name}/{ours} "
                    f"{tuple(value.shape)}{how}, but the layer expects {expected}"
                )
            values[ours] = value.astype(variables[ours].dtype)
            sources[ours] = name
        self._assignments[layer_name] = values
        self._sources[layer_name] = sources


def apply(model, imported: WeightImport, strict: bool = True) -> int:
    """Assigns `imported` to `model`'s leaf layers, all or nothing; returns the number of layers set.

    Args:
        model: the model the import was mapped for (a supernet or an extracted model).
        imported: the importer's `WeightImport`.
        strict: refuse when the arch needs layers the checkpoint lacks (`missing`) or when checkpoint
            tensors were left unread (`unmapped_source`), before anything is assigned.

    Raises:
        WeightImportError: naming the first few offending names.
    """
    if strict and imported.missing:
        raise WeightImportError(
            f"The checkpoint lacks {len(imported.missing)} layer(s) the arch needs, e.g. {list(imported.missing[:5])}"
        )
    if strict and imported.unmapped_source:
        raise WeightImportError(
            f"{len(imported.unmapped_source)} checkpoint tensor(s) map to no layer of the arch, e.g. "
            f"{list(imported.unmapped_source[:5])} (a different depth, number of modules or head?)"
        )
    leaves = leaf_layers(model)
    absent = [name for name in imported.assignments if name not in leaves]
    if absent:
        raise WeightImportError(f"The model has no layer(s) {absent[:5]}; was the import mapped for another model?")
    for name, values in imported.assignments.items():
        for variable in leaves[name].weights:
            variable.assign(values[variable.name])
    return len(imported.assignments)

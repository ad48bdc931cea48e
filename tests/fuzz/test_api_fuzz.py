"""Fuzzing the library's input checks in-process: configs, arch files, official masks, search logs,
search outputs read by the export, and export names.

Every case is generated deterministically (fixed seeds, no hypothesis) and must be refused with a
`ValueError` (ConfigError, ArchError, WorkdirError, SearchStateError, ...) whose message is one line
and names the field or the file; files read by a refused call must stay byte-identical. Each file
of this module runs in well under a minute: nothing here builds a model.
"""

import copy
import json
import os
import pathlib
import pickle
import random

import ml_collections
import numpy as np
import pytest

from configs import quickstart
from configs import scarlet
from scalenas_tf.experiment import OPTIMIZERS
from scalenas_tf.experiment import PRECISIONS
from scalenas_tf.experiment import TEACHERS
from scalenas_tf.experiment import Experiment
from scalenas_tf.runners import cost as cost_runner
from scalenas_tf.runners import export as export_runner
from scalenas_tf.runners import search as search_runner
from scalenas_tf.search.state import LOG_FORMAT
from scalenas_tf.search.state import EvaluationLog
from scalenas_tf.search.state import SearchStateError
from scalenas_tf.workdir import Workdir
from scalenas_tf.workdir import WorkdirError

NAN, INF = float("nan"), float("inf")
ALL = ("data", "train", "search")
MAX_MESSAGE = 1500


def check_message(error: BaseException, *needles: str, echoed: int = 0) -> str:
    """The error is a ValueError with a one-line, non-empty message that contains one of `needles`
    (and is at most `MAX_MESSAGE` characters beyond `echoed`, the length of an input it may repeat)."""
    msg = str(error)
    assert isinstance(error, ValueError), f"{type(error).__name__} is not a ValueError: {msg!r}"
    assert msg.strip(), f"empty message from {type(error).__name__}"
    assert "\n" not in msg and "\r" not in msg, f"multi-line message: {msg!r}"
    assert len(msg) <= MAX_MESSAGE + echoed, f"message of {len(msg)} characters: {msg[:200]!r}..."
    assert "Traceback" not in msg
    if needles:
        assert any(n in msg for n in needles), f"message names none of {needles}: {msg!r}"
    return msg


def shown(path) -> tuple[str, ...]:
    """The ways a message may name `path` (as is, or as its repr when it holds odd characters)."""
    text = os.fspath(path)
    return text, repr(text), repr(text)[1:-1]


# =================================================================================================
# Configs
# =================================================================================================

BASES = {
    "quickstart": lambda: quickstart.get_config().to_dict(),
    "scarlet_cpu": lambda: scarlet.get_config("cpu").to_dict(),
}


def _int(low, none_ok=False):
    return {"kind": "int", "low": low, "none_ok": none_ok}


def _float(low=None, high=None, low_open=False, high_open=False, none_ok=False, inf_ok=False):
    return {
        "kind": "float",
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "none_ok": none_ok,
        "inf_ok": inf_ok,
    }


def _choice(choices):
    return {"kind": "choice", "choices": tuple(choices)}


def _kind(kind):
    return {"kind": kind}


COMMON_SPECS = {
    ("", "seed"): _int(0),
    ("model", "num_classes"): _int(1),
    ("model", "input_size"): _kind("size"),
    ("data", "source"): _kind("source"),
    ("data", "batch_size"): _int(1),
    ("data", "train_examples"): _int(1, none_ok=True),
    ("data", "validation_examples"): _int(1, none_ok=True),
    ("data", "source_kwargs"): _kind("kwargs"),
    ("train", "steps"): _int(1),
    ("train", "steps_per_epoch"): _int(1),
    ("train", "optimizer"): _choice(OPTIMIZERS),
    ("train", "learning_rate"): _float(low=0.0, low_open=True),
    ("train", "momentum"): _float(low=0.0, high=1.0, high_open=True),
    ("train", "nesterov"): _kind("bool"),
    ("train", "weight_decay"): _float(low=0.0),
    ("train", "warmup_steps"): _int(0),
    ("train", "sampler_kwargs"): _kind("kwargs"),
    ("train", "teacher"): _choice(TEACHERS),
    ("train", "teacher_weights"): _kind("str"),
    ("train", "init_from_teacher"): _kind("bool"),
    ("train", "distill_weight"): _float(low=0.0),
    ("train", "sparse_updates"): _kind("bool"),
    ("train", "per_replica_subnets"): _kind("bool"),
    ("train", "precision"): _choice(PRECISIONS),
    ("search", "methods"): _kind("methods"),
    ("search", "calibration_batches"): _int(1),
    ("search", "calibration_batch_size"): _int(1),
    ("search", "validation_examples"): _int(1),
    ("search", "batch_size"): _int(1),
    ("search", "recalibrate"): _kind("bool"),
    ("search", "seed"): _int(0, none_ok=True),  # None: the search's default
    ("search", "population"): _int(1, none_ok=True),
    ("search", "max_cost"): _float(low=0.0, low_open=True, none_ok=True, inf_ok=True),
    ("search", "min_metric"): _float(none_ok=True),
    ("export", "arch"): _kind("str"),
    ("export", "budget"): _float(none_ok=True),
    ("export", "name"): _kind("str"),
    ("export", "formats"): _kind("methods"),
    ("export", "max_metric_drop"): _kind("kwargs"),
    ("export", "calibration_samples"): _int(1),
    ("export", "int8_io"): _kind("bool"),
    ("export", "qat_steps"): _int(1),
    ("export", "qat_learning_rate"): _float(low=0.0, low_open=True),
    ("export", "isolated_check"): _kind("bool"),
    ("export", "parity_atol"): _float(low=0.0, low_open=True),
}

SPECS = {
    "quickstart": {
        **COMMON_SPECS,
        ("search_space", "width"): _int(1),
        ("search_space", "depth_choices"): _kind("intlist"),
        ("search_space", "num_modules"): _kind("intlist"),
        ("search_space", "num_branches"): _kind("intlist"),
        ("search_space", "multi_scale_output"): _kind("bool"),
        ("search_space", "stem_channels"): _int(1),
        ("search_space", "layer1_blocks"): _int(1),
        ("model", "task"): _choice(("cls", "seg", "pose")),
        ("train", "sampler"): _choice(("grouped", "uniform", "fusion", "sandwich", "largest")),
        ("search", "top_k"): _int(1, none_ok=True),
        ("search", "children"): _int(1, none_ok=True),
        ("search", "crossover_prob"): _float(low=0.0, high=1.0, none_ok=True),
        ("search", "mutation_prob"): _float(low=0.0, high=1.0, none_ok=True),
        ("search", "budget"): _int(1, none_ok=True),
        ("search", "fusion_probs"): _kind("problist"),
        ("search", "cost_measure"): _choice(("macs", "params")),
    },
    "scarlet_cpu": {
        **COMMON_SPECS,
        ("search_space", "type"): _choice(("scarlet", "scalenas")),
        ("search_space", "variant"): _choice(("s1", "s2")),
        ("search_space", "channels"): _kind("intlist"),
        ("search_space", "strides"): _kind("intlist"),
        ("search_space", "stem_channels"): _int(1),
        ("search_space", "first_channels"): _int(1),
        ("search_space", "head_channels"): _int(1),
        ("search_space", "activation"): _choice(("hswish", "relu6")),
        ("search_space", "identity_everywhere"): _kind("bool"),
        ("search_space", "identity_op"): _choice(("els", "skip")),
        ("model", "task"): _choice(("cls",)),
        ("train", "sampler"): _choice(("spos", "strict_fair", "sandwich", "largest")),
        ("train", "graph_optimizations"): _choice(("fast", "full", "off")),
        ("search", "population"): _int(2, none_ok=True),
        ("search", "generations"): _int(0, none_ok=True),
        ("search", "weights"): _kind("weights"),
        ("search", "num_outputs"): _int(1, none_ok=True),
    },
}


def invalid_values(spec, current):
    """(label, value) pairs that are each invalid for a field of `spec` (currently `current`)."""
    kind = spec["kind"]
    if kind == "int":
        low = spec["low"]
        values = [
            ("str", str(low + 1)),
            ("float", float(low + 1)),
            ("true", True),
            ("false", False),
            ("list", [low + 1]),
            ("dict", {"v": low + 1}),
            ("below_min", low - 1),
            ("very_negative", -(10**9)),
            ("nan", NAN),
            ("inf", INF),
        ]
        if not spec["none_ok"]:
            values.append(("none", None))
        return values
    if kind == "float":
        values = [
            ("str", "0.5"),
            ("true", True),
            ("list", [0.5]),
            ("dict", {"v": 0.5}),
            ("nan", NAN),
            ("neg_inf", -INF),
        ]
        if not spec["inf_ok"]:
            values.append(("inf", INF))
        if not spec["none_ok"]:
            values.append(("none", None))
        low, high = spec["low"], spec["high"]
        if low is not None:
            values += [("below_min", low - 1.0), ("just_below_min", low - 0.1)]
            if spec["low_open"]:
                values.append(("at_open_min", low))
        if high is not None:
            values += [("above_max", high + 4.0), ("just_above_max", high + 0.1)]
            if spec["high_open"]:
                values.append(("at_open_max", high))
        return values
    if kind == "bool":
        return [
            ("str_true", "true"),
            ("str_false", "False"),
            ("int1", 1),
            ("int0", 0),
            ("float", 1.0),
            ("list", [True]),
            ("none", None),
        ]
    if kind == "choice":
        first = spec["choices"][0]
        return [
            ("int", 5),
            ("none", None),
            ("unknown", "bogus_value"),
            ("empty", ""),
            ("list", [first]),
            ("upper", first.upper()),
            ("padded", f" {first}"),
            ("dict", {first: 1}),
        ]
    if kind == "str":
        return [("int", 5), ("list", ["x"]), ("true", True), ("dict", {"a": 1}), ("float", 1.5)]
    if kind == "source":
        return [("empty", ""), ("int", 5), ("none", None), ("list", ["shapes"]), ("true", True)]
    if kind == "kwargs":
        return [("int", 5), ("str", "x"), ("list", [1, 2]), ("true", True), ("int_keys", {1: "a"})]
    if kind == "size":
        return [
            ("garbage", "abc"),
            ("zero", "0x64"),
            ("one_dim", "64"),
            ("three_dims", "64x64x3"),
            ("list1", [64]),
            ("list3", [64, 64, 64]),
            ("zero_list", [0, 64]),
            ("negative", [-1, 64]),
            ("none", None),
            ("int", 64),
            ("dict", {"h": 64}),
            ("true", True),
            ("bools", [True, True]),
            ("fractions", [64.5, 64.0]),
            ("nan", [NAN, 64]),
            ("negative_str", "-64x64"),
        ]
    if kind == "intlist":
        n = len(current)
        return [
            ("str", "abc"),
            ("int", 5),
            ("none", None),
            ("empty", []),
            ("fractions", [v + 0.5 for v in current]),
            ("strs", [str(v) for v in current]),
            ("bools", [True] * n),
            ("nested", [[v] for v in current]),
            ("dict", {"a": 1}),
            ("negative", [-1] * n),
            ("zeros", [0] * n),
        ]
    if kind == "problist":
        return [
            ("str", "abc"),
            ("int", 5),
            ("empty", []),
            ("above_one", [1.5]),
            ("negative", [-0.1]),
            ("nan", [NAN]),
            ("bools", [True, False]),
            ("dict", {"a": 1}),
            ("strs", ["0.5"]),
        ]
    if kind == "weights":
        return [
            ("str", "abc"),
            ("int", 5),
            ("short", [0.4, 0.4]),
            ("zeros", [0, 0, 0]),
            ("negative", [-1, 1, 1]),
            ("nan", [NAN, 0.4, 0.2]),
            ("inf", [INF, 0.4, 0.2]),
            ("bools", [True, False, False]),
            ("strs", ["0.4", "0.4", "0.2"]),
            ("dict", {"a": 1}),
        ]
    if kind == "methods":
        first = list(current)[0]
        return [
            ("unknown", ["bogus"]),
            ("empty", []),
            ("duplicate", [first, first]),
            ("nested", [[first]]),
            ("dict", {first: 1}),
            ("int", 5),
            ("none", None),
            ("unknown_str", "bogus"),
            ("true", True),
        ]
    raise AssertionError(kind)


def _names_field(msg, section, field):
    if not section:
        return f"config.{field}" in msg
    return f"{section}.{field}" in msg or (section in msg and field in msg)


def _set(config, section, field, value):
    if section:
        config[section][field] = value
    else:
        config[field] = value


def _field_cases():
    cases = []
    for base, specs in SPECS.items():
        config = BASES[base]()
        for (section, field), spec in specs.items():
            current = config[section][field] if section else config[field]
            for label, value in invalid_values(spec, current):
                cases.append(pytest.param(base, section, field, value, id=f"{base}-{section or 'top'}.{field}-{label}"))
    return cases


FIELD_CASES = _field_cases()


def _as_given(config, index):
    """Every other case goes in as a ConfigDict (as bin/ passes it), the others as a plain dict."""
    return ml_collections.ConfigDict(config) if index % 2 else config


@pytest.mark.parametrize("base", sorted(BASES))
def test_base_configs_are_accepted(base):
    # The control: the unmutated configs pass, so each refusal below is due to its mutation.
    for config in (BASES[base](), ml_collections.ConfigDict(BASES[base]())):
        experiment = Experiment.from_config(config, require=ALL)
        assert experiment.search is not None and experiment.train is not None


@pytest.mark.parametrize("base,section,field,value", FIELD_CASES)
def test_invalid_field_value_is_refused(base, section, field, value, request):
    config = BASES[base]()
    _set(config, section, field, copy.deepcopy(value))
    index = FIELD_CASES_INDEX[request.node.callspec.id]
    with pytest.raises(ValueError) as info:
        Experiment.from_config(_as_given(config, index), require=ALL)
    msg = check_message(info.value)
    assert _names_field(msg, section, field), f"message does not name {section}.{field}: {msg!r}"


FIELD_CASES_INDEX = {case.id: i for i, case in enumerate(FIELD_CASES)}

REQUIRED = {
    "quickstart": [
        ("model", "task"),
        ("model", "num_classes"),
        ("model", "input_size"),
        ("data", "source"),
        ("data", "batch_size"),
        ("train", "steps"),
        ("train", "steps_per_epoch"),
        ("train", "optimizer"),
        ("train", "learning_rate"),
        ("train", "sampler"),
        ("train", "teacher"),
        ("train", "distill_weight"),
    ],
    "scarlet_cpu": [
        ("model", "task"),
        ("model", "num_classes"),
        ("model", "input_size"),
        ("data", "source"),
        ("data", "batch_size"),
        ("train", "steps"),
        ("train", "steps_per_epoch"),
        ("train", "optimizer"),
        ("train", "learning_rate"),
        ("train", "sampler"),
        ("train", "teacher"),
        ("train", "distill_weight"),
    ],
}


@pytest.mark.parametrize(
    "base,section,field",
    [pytest.param(b, s, f, id=f"{b}-{s}.{f}") for b, fields in REQUIRED.items() for s, f in fields],
)
def test_missing_required_field_is_refused(base, section, field):
    config = BASES[base]()
    del config[section][field]
    with pytest.raises(ValueError) as info:
        Experiment.from_config(config, require=ALL)
    assert _names_field(check_message(info.value), section, field)


@pytest.mark.parametrize(
    "base,section", [pytest.param(b, s, id=f"{b}-{s}") for b in BASES for s in ("search_space", "model", *ALL)]
)
def test_missing_section_is_refused(base, section):
    for variant in ("delete", "none"):
        config = BASES[base]()
        if variant == "delete":
            del config[section]
        else:
            config[section] = None
        with pytest.raises(ValueError) as info:
            Experiment.from_config(config, require=ALL)
        check_message(info.value, f"config.{section}")


@pytest.mark.parametrize(
    "base,section,value",
    [
        pytest.param(b, s, v, id=f"{b}-{s}-{label}")
        for b in BASES
        for s in ("search_space", "model", "data", "train", "search", "export")
        for label, v in (("int", 5), ("str", "x"), ("list", [1, 2]), ("true", True), ("float", 1.5))
    ],
)
def test_section_of_wrong_type_is_refused(base, section, value):
    config = BASES[base]()
    config[section] = value
    with pytest.raises(ValueError) as info:
        Experiment.from_config(config, require=ALL)
    check_message(info.value, f"config.{section}", section)


@pytest.mark.parametrize(
    "base,section",
    [
        pytest.param(b, s, id=f"{b}-{s or 'top'}")
        for b in BASES
        for s in ("", "search_space", "model", "data", "train", "search", "export")
    ],
)
def test_unknown_field_is_refused(base, section):
    config = BASES[base]()
    name = f"bogus_field_in_{section or 'top'}"
    _set(config, section, name, 1)
    with pytest.raises(ValueError) as info:
        Experiment.from_config(config, require=ALL)
    check_message(info.value, name)


CROSS_CASES = [
    # (base, {(section, field): value}, a name the message must contain)
    ("quickstart", {("train", "warmup_steps"): 1500}, "warmup_steps"),
    ("quickstart", {("train", "warmup_steps"): 1501}, "warmup_steps"),
    ("quickstart", {("train", "steps"): 50}, "warmup_steps"),
    ("scarlet_cpu", {("train", "warmup_steps"): 1200}, "warmup_steps"),
    ("quickstart", {("train", "teacher"): "static", ("train", "teacher_weights"): ""}, "teacher_weights"),
    ("quickstart", {("search", "population"): 141}, "population"),
    ("quickstart", {("search", "budget"): 59}, "budget"),
    ("scarlet_cpu", {("search", "budget"): 19}, "budget"),
    ("scarlet_cpu", {("search", "tournament_size"): 21}, "tournament_size"),
    ("scarlet_cpu", {("search", "crossover_prob"): 1.5}, "crossover_prob"),
    ("scarlet_cpu", {("search", "mutation_prob"): -0.5}, "mutation_prob"),
    ("scarlet_cpu", {("model", "task"): "seg"}, "model.task"),
    ("scarlet_cpu", {("model", "task"): "pose"}, "model.task"),
    ("scarlet_cpu", {("train", "sampler"): "grouped"}, "train.sampler"),
    ("scarlet_cpu", {("train", "sampler"): "uniform"}, "train.sampler"),
    ("scarlet_cpu", {("search", "methods"): ("evolution",)}, "search.methods"),
    ("scarlet_cpu", {("search", "cost_measure"): "macs"}, "search.cost_measure"),
    ("scarlet_cpu", {("search", "cost_measure"): "params"}, "search.cost_measure"),
    ("scarlet_cpu", {("search", "budget_x"): 1}, "budget_x"),
    ("scarlet_cpu", {("search", "fusion_probs"): (0.5,)}, "fusion_probs"),
    ("scarlet_cpu", {("search_space", "type"): "scalenas"}, "search_space"),
    (
        "scarlet_cpu",
        {("search_space", "identity_everywhere"): True, ("search_space", "identity_op"): "skip"},
        "identity_everywhere",
    ),
    ("scarlet_cpu", {("search_space", "channels"): (8,) * 18}, "channels"),
    ("scarlet_cpu", {("search_space", "strides"): (2,) * 18}, "strides"),
    ("scarlet_cpu", {("search_space", "kernel_sizes"): (3, 4)}, "kernel_sizes"),
    ("scarlet_cpu", {("search_space", "expand_ratios"): (1, 6)}, "expand_ratios"),
    ("quickstart", {("train", "sampler"): "spos"}, "train.sampler"),
    ("quickstart", {("train", "sampler"): "strict_fair"}, "train.sampler"),
    ("quickstart", {("search", "methods"): ("nsga2",)}, "search.methods"),
    ("quickstart", {("search", "cost_measure"): "madds"}, "search.cost_measure"),
    ("quickstart", {("search", "generations"): 5}, "generations"),
    ("quickstart", {("search", "weights"): (0.4, 0.4, 0.2)}, "weights"),
    ("quickstart", {("search_space", "type"): "scarlet"}, "scarlet"),
    ("quickstart", {("search_space", "type"): "SCALENAS"}, "search_space.type"),
    ("quickstart", {("search_space", "type"): ""}, "search_space.type"),
    ("quickstart", {("search_space", "type"): None}, "search_space.type"),
    ("quickstart", {("search_space", "type"): 5}, "search_space.type"),
    ("quickstart", {("search_space", "type"): ["scalenas"]}, "search_space.type"),
    ("quickstart", {("search_space", "type"): {"scalenas": 1}}, "search_space.type"),
    ("quickstart", {("search_space", "depth_choices"): (3, 2, 4)}, "depth_choices"),
    ("quickstart", {("search_space", "depth_choices"): (2, 2, 3)}, "depth_choices"),
    ("quickstart", {("search_space", "num_modules"): (1, 1)}, "num_modules"),
    ("quickstart", {("search_space", "num_branches"): (3, 4, 5)}, "num_branches"),
    ("quickstart", {("search_space", "variant"): "s2"}, "variant"),
    ("quickstart", {("model", "task"): "detection"}, "task"),
    ("quickstart", {("data", "source_kwargs"): {1: 2}}, "source_kwargs"),
    ("quickstart", {("train", "sampler_kwargs"): {("a",): 1}}, "sampler_kwargs"),
]


@pytest.mark.parametrize(
    "base,changes,name", [pytest.param(*c, id=f"{c[0]}-{i}-{c[2]}") for i, c in enumerate(CROSS_CASES)]
)
def test_inconsistent_or_cross_family_config_is_refused(base, changes, name):
    config = BASES[base]()
    for (section, field), value in changes.items():
        _set(config, section, field, value)
    with pytest.raises(ValueError) as info:
        Experiment.from_config(config, require=ALL)
    check_message(info.value, name)


@pytest.mark.parametrize("value", [None, 5, "abc", [1, 2], 1.5, True, object()], ids=repr)
def test_config_of_wrong_type_is_refused(value):
    with pytest.raises(ValueError) as info:
        Experiment.from_config(value, require=ALL)
    check_message(info.value, "config")


def _combination_cases(count=60, seed=1234):
    """Two invalid mutations of different fields at once: the message must name one of them."""
    rng = random.Random(seed)
    by_base = {}
    for case in FIELD_CASES:
        base, section, field, value = case.values
        by_base.setdefault(base, []).append((section, field, value, case.id))
    cases = []
    for i in range(count):
        base = sorted(by_base)[i % len(by_base)]
        first, second = rng.sample(by_base[base], 2)
        while second[:2] == first[:2]:
            second = rng.choice(by_base[base])
        cases.append(pytest.param(base, first[:3], second[:3], id=f"{i}-{first[3]}+{second[3].split('-', 1)[1]}"))
    return cases


@pytest.mark.parametrize("base,first,second", _combination_cases())
def test_two_invalid_fields_are_refused(base, first, second):
    config = BASES[base]()
    for section, field, value in (first, second):
        _set(config, section, field, copy.deepcopy(value))
    with pytest.raises(ValueError) as info:
        Experiment.from_config(ml_collections.ConfigDict(config), require=ALL)
    msg = check_message(info.value)
    assert _names_field(msg, *first[:2]) or _names_field(msg, *second[:2]), msg


# =================================================================================================
# Arch files, official masks and pickles through the cost runner
# =================================================================================================


def _config(base):
    return quickstart.get_config() if base == "quickstart" else scarlet.get_config("cpu")


def _space(base):
    return Experiment.from_config(_config(base)).space


def _truncations(text: str, seed: int, count: int = 6) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    cuts = sorted({1, len(text) // 2, len(text) - 1, *(rng.randrange(1, len(text) - 1) for _ in range(count - 3))})
    return [(f"truncated_at_{cut}", text[:cut].encode()) for cut in cuts]


def _common_garbage() -> list[tuple[str, bytes]]:
    deep = 100_000
    return [
        ("empty", b""),
        ("whitespace", b"  \n\t "),
        ("non_utf8", b"\xff\xfe\xfa\x80garbage"),
        ("non_utf8_in_json", b'{"modules": "\xff"}'),
        ("deep_lists", b"[" * deep + b"]" * deep),
        ("deep_objects", b'{"a":' * deep + b"1" + b"}" * deep),
        ("deep_unclosed", b"[" * deep),
        ("number", b"5"),
        ("null", b"null"),
        ("true", b"true"),
        ("string", b'"largest"'),
        ("empty_list", b"[]"),
        ("empty_object", b"{}"),
        ("nan", b"NaN"),
        ("nul_bytes", b"\x00" * 64),
        ("binary", bytes(range(256))),
    ]


def _scalenas_arch_cases():
    space = _space("quickstart")
    good = space.largest().to_dict()
    cases = _common_garbage() + _truncations(json.dumps(good), seed=1)

    def variant(label, edit):
        arch = copy.deepcopy(good)
        edit(arch)
        cases.append((label, json.dumps(arch).encode()))

    variant("modules_int", lambda a: a.update(modules=5))
    variant("modules_str", lambda a: a.update(modules="abc"))
    variant("modules_of_ints", lambda a: a.update(modules=[5, 5, 5]))
    variant("modules_missing", lambda a: a.pop("modules"))
    variant("module_dropped", lambda a: a["modules"].pop())
    variant("module_extra", lambda a: a["modules"].append(a["modules"][-1]))
    variant("no_modules", lambda a: a.update(modules=[]))
    variant("format_unknown", lambda a: a.update(format="other/v9"))
    variant("format_int", lambda a: a.update(format=5))
    variant("depths_missing", lambda a: a["modules"][0].pop("depths"))
    variant("fusion_missing", lambda a: a["modules"][1].pop("fusion"))
    variant("depths_str", lambda a: a["modules"][0].update(depths="ab"))
    variant("depths_fractions", lambda a: a["modules"][0].update(depths=[2.5, 2.0]))
    variant("depths_bools", lambda a: a["modules"][0].update(depths=[True, True]))
    variant("depths_strs", lambda a: a["modules"][0].update(depths=["5", "5"]))
    variant("depths_too_many", lambda a: a["modules"][0].update(depths=[5, 5, 5]))
    variant("depths_too_few", lambda a: a["modules"][2].update(depths=[5]))
    variant("depth_not_a_choice", lambda a: a["modules"][0].update(depths=[7, 5]))
    variant("depth_negative", lambda a: a["modules"][0].update(depths=[-1, 5]))
    variant("depth_huge", lambda a: a["modules"][0].update(depths=[10**40, 5]))
    variant("depth_null", lambda a: a["modules"][0].update(depths=[None, 5]))
    variant("fusion_int", lambda a: a["modules"][0].update(fusion=5))
    variant("fusion_strs", lambda a: a["modules"][0].update(fusion=[["ab"], ["cd"]]))
    variant("fusion_targets_missing", lambda a: a["modules"][1]["fusion"].pop())
    variant("fusion_steps_missing", lambda a: a["modules"][1]["fusion"][0].pop())
    variant("fusion_bits_short", lambda a: a["modules"][1]["fusion"][0][0].pop())
    variant("fusion_bit_two", lambda a: a["modules"][1]["fusion"][0][0].__setitem__(1, 2))
    variant("fusion_bit_negative", lambda a: a["modules"][1]["fusion"][0][0].__setitem__(1, -1))
    variant("fusion_bit_float", lambda a: a["modules"][1]["fusion"][0][0].__setitem__(1, 0.5))
    variant("fusion_self_bit_zero", lambda a: a["modules"][1]["fusion"][0][0].__setitem__(0, 0))
    variant("fusion_dict", lambda a: a["modules"][1].update(fusion={"0": 1}))
    variant("module_list", lambda a: a["modules"].__setitem__(0, [1, 2]))
    return cases


def _scarlet_arch_cases():
    space = _space("scarlet_cpu")
    good = space.largest().to_dict()
    choices = list(good["choices"])
    cases = _common_garbage() + _truncations(json.dumps(good), seed=2) + _truncations(json.dumps(choices), seed=3)

    def dumps(obj):
        return json.dumps(obj).encode()

    n = len(choices)
    cases += [
        ("choices_int", dumps({"choices": 5})),
        ("choices_missing", dumps({"format": good["format"]})),
        ("format_unknown", dumps({"format": "scalenas_tf.arch/v1", "choices": choices})),
        ("too_few", dumps(choices[:-1])),
        ("too_many", dumps(choices + choices[:1])),
        ("one", dumps(choices[:1])),
        ("bad_name", dumps(["K4E3"] * n)),
        ("lowercase", dumps([c.lower() for c in choices])),
        ("identity_everywhere", dumps(["id"] * n)),
        ("kernel_not_in_space", dumps(["K9E6"] * n)),
        ("expand_not_in_space", dumps(["K7E9"] * n)),
        ("ints", dumps(list(range(n)))),
        ("nested", dumps([[c] for c in choices])),
        ("nulls", dumps([None] * n)),
        ("trailing_space", dumps([c + " " for c in choices])),
        ("dict_of_choices", dumps({"choices": {str(i): c for i, c in enumerate(choices)}})),
        ("modules_format", dumps(_space("quickstart").largest().to_dict())),
    ]
    return cases


ARCH_CASES = [pytest.param("quickstart", label, data, id=f"scalenas-{label}") for label, data in _scalenas_arch_cases()]
ARCH_CASES += [pytest.param("scarlet_cpu", label, data, id=f"scarlet-{label}") for label, data in _scarlet_arch_cases()]


@pytest.fixture
def sandbox(tmp_path):
    """A directory with sentinel files beside and above the files a test writes; checked afterwards."""
    work = tmp_path / "work"
    work.mkdir()
    sentinels = {tmp_path / "above.txt": b"above the workdir\n", work / "beside.txt": b"beside\n"}
    for path, data in sentinels.items():
        path.write_bytes(data)
    yield work
    for path, data in sentinels.items():
        assert path.read_bytes() == data, f"sentinel {path} changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"above.txt", "work", *_created_above(tmp_path)})


def _created_above(tmp_path):
    return {p.name for p in tmp_path.iterdir() if p.name.startswith("marker")}


@pytest.mark.parametrize("base", ["quickstart", "scarlet_cpu"])
def test_named_and_file_archs_are_accepted(base, sandbox):
    # The control: a good arch file and the default arch are counted.
    space = _space(base)
    path = sandbox / "good.json"
    path.write_text(space.smallest().to_json())
    summary = cost_runner.run(_config(base), arch=str(path))
    assert summary["arch_hash"] == space.smallest().hash()
    assert cost_runner.run(_config(base))["params"] > summary["params"]


@pytest.mark.parametrize("base,label,data", ARCH_CASES)
def test_malformed_arch_file_is_refused(base, label, data, sandbox):
    path = sandbox / f"arch_{label}.json"
    path.write_bytes(data)
    with pytest.raises(ValueError) as info:
        cost_runner.run(_config(base), arch=str(path))
    check_message(info.value, *shown(path))
    assert path.read_bytes() == data


def _odd_paths(sandbox):
    subdir = sandbox / "a_directory.json"
    subdir.mkdir(exist_ok=True)
    newline = sandbox / "new\nline.json"
    newline.write_bytes(b"garbage")
    tab = sandbox / "tab\there.json"
    tab.write_bytes(b"[1, 2")
    return {
        "directory": str(subdir),
        "dev_null": "/dev/null",
        "missing": str(sandbox / "missing.json"),
        "missing_dir": "/nonexistent_dir_for_fuzz/arch.json",
        "nul_char": str(sandbox / "nul\x00char.json"),
        "newline_file": str(newline),
        "tab_file": str(tab),
        "root": "/",
        "dot": ".",
        "empty_name_like": " ",
        "very_long": "x" * 5000,
    }


ODD_PATHS = [
    "directory",
    "dev_null",
    "missing",
    "missing_dir",
    "nul_char",
    "newline_file",
    "tab_file",
    "root",
    "dot",
    "empty_name_like",
    "very_long",
]


@pytest.mark.parametrize("base", ["quickstart", "scarlet_cpu"])
@pytest.mark.parametrize("kind", ODD_PATHS)
def test_arch_path_that_is_not_an_arch_file_is_refused(base, kind, sandbox):
    path = _odd_paths(sandbox)[kind]
    with pytest.raises(ValueError) as info:
        cost_runner.run(_config(base), arch=path)
    check_message(info.value, *shown(path), echoed=len(path))


# --- official masks (ScaleNAS) ---


def _mask_cases():
    space = _space("quickstart")
    good = space.to_official_mask(space.largest())
    cases = _common_garbage() + _truncations(json.dumps(good), seed=4)

    def variant(label, edit):
        mask = copy.deepcopy(good)
        edit(mask)
        cases.append((label, json.dumps(mask).encode()))

    variant("module_dropped", lambda m: m.pop())
    variant("module_extra", lambda m: m.append(m[0]))
    variant("entry_int", lambda m: m.__setitem__(0, 5))
    variant("entry_list", lambda m: m.__setitem__(0, [1, 2]))
    variant("d_missing", lambda m: m[0].pop("d"))
    variant("f_missing", lambda m: m[1].pop("f"))
    variant("d_str", lambda m: m[0].update(d="55"))
    variant("d_too_long", lambda m: m[0].update(d=[5, 5, 5]))
    variant("d_not_a_choice", lambda m: m[0].update(d=[6, 5]))
    variant("d_bools", lambda m: m[0].update(d=[True, True]))
    variant("d_fractions", lambda m: m[0].update(d=[5.0, 4.5]))
    variant("f_int", lambda m: m[0].update(f=5))
    variant("f_targets_missing", lambda m: m[1]["f"].pop())
    variant("f_too_many_steps", lambda m: m[0]["f"][0].extend([[0, 0]] * 3))
    variant("f_padding_nonzero", lambda m: m[0].update(d=[2, 2]) or m[0]["f"][0].__setitem__(4, [1, 1]))
    variant("f_bits_short", lambda m: m[1]["f"][0][0].pop())
    variant("f_bit_two", lambda m: m[1]["f"][0][0].__setitem__(1, 2))
    variant("f_bit_str", lambda m: m[1]["f"][0][0].__setitem__(1, "1"))
    variant("f_step_int", lambda m: m[1]["f"][0].__setitem__(0, 1))
    variant("no_modules", lambda m: m.__setitem__(slice(None), []))
    return cases


@pytest.mark.parametrize("label,data", [pytest.param(*c, id=c[0]) for c in _mask_cases()])
def test_malformed_official_mask_is_refused(label, data, sandbox):
    path = sandbox / f"mask_{label}.json"
    path.write_bytes(data)
    with pytest.raises(ValueError) as info:
        cost_runner.run(_config("quickstart"), official_mask=str(path))
    check_message(info.value, *shown(path))
    assert path.read_bytes() == data


def test_official_mask_control_and_conflicts(sandbox):
    space = _space("quickstart")
    path = sandbox / "mask.json"
    path.write_text(json.dumps(space.to_official_mask(space.largest())))
    assert cost_runner.run(_config("quickstart"), official_mask=str(path))["arch_hash"] == space.largest().hash()
    with pytest.raises(ValueError) as info:
        cost_runner.run(_config("quickstart"), arch="largest", official_mask=str(path))
    check_message(info.value, "arch")
    for option in ({"official_mask": str(path)}, {"allow_pickle": True}):
        with pytest.raises(ValueError) as info:
            cost_runner.run(_config("scarlet_cpu"), **option)
        check_message(info.value, *option)
    with pytest.raises(ValueError) as info:
        cost_runner.run(_config("quickstart"), as_extracted=True)
    check_message(info.value, "as_extracted")
    for missing in (str(sandbox / "missing.json"), str(sandbox)):
        with pytest.raises(ValueError) as info:
            cost_runner.run(_config("quickstart"), official_mask=missing)
        check_message(info.value, missing)


class _TouchOnLoad:
    """Unpickling this creates `path` (the harm a malicious pickle could do, made visible)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _pickle_files(directory, marker):
    raw = directory / "raw_pickle.npy"
    raw.write_bytes(pickle.dumps(_TouchOnLoad(marker)))
    inside_npy = directory / "object_array.npy"
    np.save(inside_npy, np.array([_TouchOnLoad(marker)], dtype=object), allow_pickle=True)
    disguised = directory / "pickle_as.json"
    disguised.write_bytes(pickle.dumps(_TouchOnLoad(marker)))
    return {"raw": raw, "object_array": inside_npy, "disguised_json": disguised}


@pytest.mark.parametrize("kind", ["raw", "object_array", "disguised_json"])
def test_pickle_mask_without_allow_pickle_runs_no_code(kind, sandbox, tmp_path):
    marker = tmp_path / "marker_created_by_pickle"
    path = _pickle_files(sandbox, marker)[kind]
    before = path.read_bytes()
    with pytest.raises(ValueError) as info:
        cost_runner.run(_config("quickstart"), official_mask=str(path))
    check_message(info.value, *shown(path))
    assert not marker.exists(), "the pickle ran although allow_pickle was not given"
    assert path.read_bytes() == before


@pytest.mark.parametrize("kind", ["raw", "object_array"])
def test_non_mask_pickle_with_allow_pickle_is_refused_in_one_line(kind, sandbox, tmp_path):
    marker = tmp_path / "marker_created_by_pickle"
    path = _pickle_files(sandbox, marker)[kind]
    with pytest.raises(ValueError) as info:
        cost_runner.run(_config("quickstart"), official_mask=str(path), allow_pickle=True)
    check_message(info.value, *shown(path))
    # allow_pickle means "run the file's code": the payload ran, and it still is no mask.
    assert marker.exists()


def _bad_npy_files(directory):
    space = _space("quickstart")
    good = np.array(space.to_official_mask(space.largest()), dtype=object)
    ok = directory / "ok.npy"
    np.save(ok, good, allow_pickle=True)
    whole = ok.read_bytes()
    files = {
        "empty": b"",
        "garbage": b"\x80\x04garbage that is not a pickle",
        "random_bytes": np.random.default_rng(5).integers(0, 256, 512, dtype=np.uint8).tobytes(),
        "truncated_npy": whole[: len(whole) // 2],
        "header_only": whole[:64],
        "bad_magic_version": b"\x93NUMPY\x09\x00" + whole[8:],
        "numbers": None,
        "pickled_dict": pickle.dumps({"d": [5, 5]}),
        "pickle_after_junk": b"((" + pickle.dumps([[[[[]]]]]),
    }
    paths = {}
    for label, data in files.items():
        path = directory / f"{label}.npy"
        if data is None:
            np.save(path, np.arange(6.0))
        else:
            path.write_bytes(data)
        paths[label] = path
    return ok, paths


BAD_NPY = [
    "empty",
    "garbage",
    "random_bytes",
    "truncated_npy",
    "header_only",
    "bad_magic_version",
    "numbers",
    "pickled_dict",
    "pickle_after_junk",
]


@pytest.mark.parametrize("label", BAD_NPY)
def test_malformed_npy_mask_with_allow_pickle_is_refused(label, sandbox):
    ok, paths = _bad_npy_files(sandbox)
    path = paths[label]
    before = path.read_bytes()
    with pytest.raises(ValueError) as info:
        cost_runner.run(_config("quickstart"), official_mask=str(path), allow_pickle=True)
    check_message(info.value, *shown(path))
    assert path.read_bytes() == before
    # The control: the authors' format as an object .npy loads with the opt-in.
    assert cost_runner.run(_config("quickstart"), official_mask=str(ok), allow_pickle=True)["params"] > 0


# =================================================================================================
# Search logs
# =================================================================================================

HEADER = {"search_space": {"width": 8}, "cost_measure": "macs", "weights_sha256": "0" * 64}


def _valid_log(path):
    log = EvaluationLog(path, HEADER)
    for i in range(3):
        log.append({"method": "random", "hash": f"h{i}", "metric": 0.25 * i, "arch": {"i": i}, "cost": 0.01})
    return path.read_bytes().split(b"\n")[:-1]


def _record_variants():
    good = {"method": "random", "hash": "hx", "metric": 0.5, "arch": {"i": 9}}

    def edit(**changes):
        record = dict(good)
        for key, value in changes.items():
            if value is _DROP:
                record.pop(key)
            else:
                record[key] = value
        return json.dumps(record).encode()

    deep = 50_000
    return [
        ("missing_metric", edit(metric=_DROP)),
        ("missing_hash", edit(hash=_DROP)),
        ("missing_method", edit(method=_DROP)),
        # `arch` may be absent (records appended directly need none); when present it must be an object.
        ("metric_str", edit(metric="0.5")),
        ("metric_bool", edit(metric=True)),
        ("metric_null", edit(metric=None)),
        ("metric_list", edit(metric=[0.5])),
        ("hash_int", edit(hash=5)),
        ("hash_null", edit(hash=None)),
        ("method_list", edit(method=["random"])),
        ("method_bool", edit(method=False)),
        ("arch_list", edit(arch=[1, 2])),
        ("arch_str", edit(arch="largest")),
        ("list_line", b"[1, 2]"),
        ("number_line", b"5"),
        ("string_line", b'"record"'),
        ("null_line", b"null"),
        ("empty_line", b""),
        ("garbage", b'{"metric": '),
        ("binary", b"\xff\xfe\x00\x01"),
        ("deep", b"[" * deep + b"]" * deep),
        (
            "deep_in_record",
            b'{"method": "random", "hash": "h", "metric": 1, "arch": ' + b"[" * deep + b"]" * deep + b"}",
        ),
        ("two_objects", edit() + b" " + edit()),
    ]


_DROP = object()


@pytest.mark.parametrize("line_number", [2, 3, 4])
@pytest.mark.parametrize("label,line", [pytest.param(*c, id=c[0]) for c in _record_variants()])
def test_corrupt_record_line_is_refused(label, line, line_number, sandbox):
    path = sandbox / "evaluations.jsonl"
    lines = _valid_log(path)
    lines[line_number - 1] = line
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(data)
    with pytest.raises(SearchStateError) as info:
        EvaluationLog(path, HEADER)
    check_message(info.value, str(path))
    assert f"line {line_number}" in str(info.value)
    assert path.read_bytes() == data


def _header_variants():
    deep = 50_000
    return [
        ("list", b"[1, 2]", "line 1"),
        ("garbage", b'{"format": ', "line 1"),
        ("binary", b"\xff\xfe", "line 1"),
        ("empty", b"", "line 1"),
        ("deep", b"[" * deep + b"]" * deep, "line 1"),
        ("no_format", json.dumps({"header": HEADER}).encode(), "not a search log"),
        ("wrong_format", json.dumps({"format": "scalenas_tf.search_log/v0", "header": HEADER}).encode(), "format"),
        ("format_int", json.dumps({"format": 1, "header": HEADER}).encode(), "format"),
        ("header_list", json.dumps({"format": LOG_FORMAT, "header": [1]}).encode(), "different settings"),
        ("header_null", json.dumps({"format": LOG_FORMAT, "header": None}).encode(), "different settings"),
        ("header_missing", json.dumps({"format": LOG_FORMAT}).encode(), "different settings"),
        (
            "header_other",
            json.dumps({"format": LOG_FORMAT, "header": {**HEADER, "cost_measure": "params"}}).encode(),
            "cost_measure",
        ),
        ("header_extra", json.dumps({"format": LOG_FORMAT, "header": {**HEADER, "x": 1}}).encode(), "different"),
        (
            "header_multiline_value",
            json.dumps({"format": LOG_FORMAT, "header": {**HEADER, "cost_measure": "a\nb"}}).encode(),
            "cost_measure",
        ),
        ("a_record", json.dumps({"method": "random", "hash": "h", "metric": 1, "arch": {}}).encode(), "format"),
    ]


@pytest.mark.parametrize("label,line,needle", [pytest.param(*c, id=c[0]) for c in _header_variants()])
def test_corrupt_or_foreign_header_is_refused(label, line, needle, sandbox):
    path = sandbox / "evaluations.jsonl"
    lines = _valid_log(path)
    lines[0] = line
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(data)
    with pytest.raises(SearchStateError) as info:
        EvaluationLog(path, HEADER)
    check_message(info.value, str(path))
    assert needle in str(info.value), str(info.value)
    assert path.read_bytes() == data


def test_valid_log_reopens_and_directory_log_is_refused(sandbox):
    path = sandbox / "evaluations.jsonl"
    _valid_log(path)
    before = path.read_bytes()
    assert len(EvaluationLog(path, HEADER).records) == 3  # the control
    assert path.read_bytes() == before
    directory = sandbox / "dir.jsonl"
    directory.mkdir()
    (directory / "x").write_bytes(b"x")
    with pytest.raises((ValueError, OSError)) as info:
        EvaluationLog(directory, HEADER)
    msg = str(info.value)
    assert "\n" not in msg and str(directory) in msg


# =================================================================================================
# Search outputs read by the export: pareto_front.json and search_summary.json
# =================================================================================================


def _experiment(base):
    return Experiment.from_config(_config(base), require=("data", "search"))


UNITS = {"quickstart": ("gmacs", "miou"), "scarlet_cpu": ("madds_m", "top1")}


def _good_point(base, arch=None):
    unit, metric = UNITS[base]
    space = _experiment(base).space
    return {"arch": (arch or space.smallest()).to_dict(), unit: 0.01, metric: 0.5, "hash": "h", "method": "random"}


def _front_cases(base):
    unit, metric = UNITS[base]
    good = _good_point(base)
    other_base = "scarlet_cpu" if base == "quickstart" else "quickstart"
    other_arch = _experiment(other_base).space.largest().to_dict()

    def point(**changes):
        p = dict(good)
        for key, value in changes.items():
            if value is _DROP:
                p.pop(key)
            else:
                p[key] = value
        return p

    objects = [
        ("object", {}),
        ("number", 5),
        ("string", "x"),
        ("null", None),
        ("true", True),
        ("empty_list", []),
        ("list_of_ints", [5]),
        ("list_of_lists", [[]]),
        ("list_of_nulls", [None]),
        ("missing_arch", [point(arch=_DROP)]),
        ("missing_unit", [point(**{unit: _DROP})]),
        ("missing_metric", [point(**{metric: _DROP})]),
        ("arch_list", [point(arch=[1, 2])]),
        ("arch_str", [point(arch="largest")]),
        ("arch_null", [point(arch=None)]),
        ("unit_str", [point(**{unit: "0.01"})]),
        ("unit_bool", [point(**{unit: True})]),
        ("unit_null", [point(**{unit: None})]),
        ("metric_str", [point(**{metric: "0.5"})]),
        ("metric_bool", [point(**{metric: False})]),
        ("metric_dict", [point(**{metric: {"v": 1}})]),
        ("arch_empty", [point(arch={})]),
        ("arch_other_space", [point(arch=other_arch)]),
        ("arch_format", [point(arch={**good["arch"], "format": "nope/v0"})]),
        ("second_point_bad", [good, point(arch=_DROP)]),
        ("second_point_int", [good, 7]),
        ("deep_arch", [point(arch=json.loads('{"a":' * 70 + "1" + "}" * 70))]),
    ]
    cases = [(label, json.dumps(obj).encode()) for label, obj in objects]
    cases += _truncations(json.dumps([good, good]), seed=6)
    cases += [
        ("empty_file", b""),
        ("non_utf8", b"[\xff]"),
        ("deep_lists", b"[" * 100_000 + b"]" * 100_000),
        ("nan_literal", b"[NaN"),
        ("two_documents", b"[] []"),
    ]
    return cases


FRONT_CASES = [pytest.param(b, *c, id=f"{b}-{c[0]}") for b in ("quickstart", "scarlet_cpu") for c in _front_cases(b)]


@pytest.mark.parametrize("base", ["quickstart", "scarlet_cpu"])
def test_valid_front_is_read(base, sandbox):
    # The control: a good front gives its best point; no front is an error naming the file.
    work = Workdir(str(sandbox))
    with pytest.raises(ValueError) as info:
        export_runner.choose_arch(_experiment(base), work, "", None)
    check_message(info.value, work.pareto_json)
    os.makedirs(work.search_dir)
    space = _experiment(base).space
    pathlib.Path(work.pareto_json).write_text(json.dumps([_good_point(base), _good_point(base, space.largest())]))
    chosen, how = export_runner.choose_arch(_experiment(base), work, "", None)
    assert chosen == space.smallest() and "best Pareto point" in how


@pytest.mark.parametrize("base,label,data", FRONT_CASES)
def test_malformed_front_is_refused_by_export(base, label, data, sandbox):
    work = Workdir(str(sandbox))
    os.makedirs(work.search_dir)
    pathlib.Path(work.pareto_json).write_bytes(data)
    with pytest.raises(ValueError) as info:
        export_runner.choose_arch(_experiment(base), work, "", None)
    check_message(info.value, work.pareto_json)
    assert pathlib.Path(work.pareto_json).read_bytes() == data


def test_front_that_is_a_directory_is_refused(sandbox):
    work = Workdir(str(sandbox))
    os.makedirs(work.pareto_json)
    with pytest.raises(ValueError) as info:
        export_runner.choose_arch(_experiment("quickstart"), work, "", None)
    check_message(info.value, work.pareto_json)


GOOD_SUMMARY = {
    "metric": "miou",
    "cost_unit": "gmacs",
    "front": [],
    "methods": {},
    "constant_baseline": {"metric": 0.1},
}


def _summary_cases():
    cases = []
    for key, value in GOOD_SUMMARY.items():
        cases.append((f"missing_{key}", json.dumps({k: v for k, v in GOOD_SUMMARY.items() if k != key}).encode()))
        wrong = {str: 5, list: {}, dict: []}[type(value)]
        for label, bad in (("wrong_type", wrong), ("null", None), ("bool", True)):
            cases.append((f"{key}_{label}", json.dumps({**GOOD_SUMMARY, key: bad}).encode()))
    cases += [
        (label, json.dumps(obj).encode())
        for label, obj in (("list", [GOOD_SUMMARY]), ("number", 1), ("null", None), ("string", "summary"))
    ]
    cases += _truncations(json.dumps(GOOD_SUMMARY), seed=7)
    cases += [
        ("empty_file", b""),
        ("non_utf8", b"{\xff}"),
        ("deep", b"[" * 100_000 + b"]" * 100_000),
        ("deep_65", b"[" * 65 + b"]" * 65),
        ("utf16", json.dumps(GOOD_SUMMARY).encode("utf-16")),
    ]
    return cases


@pytest.mark.parametrize("label,data", [pytest.param(*c, id=c[0]) for c in _summary_cases()])
def test_malformed_search_summary_is_refused(label, data, sandbox):
    work = Workdir(str(sandbox))
    os.makedirs(work.search_dir)
    pathlib.Path(work.search_summary).write_bytes(data)
    with pytest.raises(ValueError) as info:
        search_runner.load_summary(str(sandbox))
    check_message(info.value, work.search_summary)
    assert pathlib.Path(work.search_summary).read_bytes() == data


def test_valid_search_summary_is_read(sandbox):
    assert search_runner.load_summary(str(sandbox)) is None  # no search finished there
    work = Workdir(str(sandbox))
    os.makedirs(work.search_dir)
    pathlib.Path(work.search_summary).write_text(json.dumps(GOOD_SUMMARY))
    assert search_runner.load_summary(str(sandbox)) == GOOD_SUMMARY


# =================================================================================================
# Export names
# =================================================================================================

BAD_NAMES = [
    "..",
    ".",
    "/abs",
    "/",
    "a/b",
    "a\\b",
    "..\\x",
    "../x",
    "x/..",
    "",
    ".hidden",
    "-flag",
    "a\x00b",
    "a\nb",
    "\n",
    "a\rb",
    "tab\tname",
    " lead",
    "trail ",
    "a b",
    "x" * 129,
    "é",
    "名前",
    "a:b",
    "a*b",
    "~",
    "$HOME",
    "a;rm",
    "`x`",
    "a|b",
    "..." + "/" * 3,
    "C:\\x",
    "\x7f",
    "\u200b",
]
BAD_NAME_TYPES = [None, 5, 1.5, True, b"name", ["a"], {"a": 1}, pathlib.Path("p")]


@pytest.mark.parametrize("name", BAD_NAMES + BAD_NAME_TYPES, ids=[repr(n)[:40] for n in BAD_NAMES + BAD_NAME_TYPES])
def test_bad_export_name_is_refused(name, sandbox):
    with pytest.raises(WorkdirError) as info:
        Workdir(str(sandbox)).export_dir(name)
    check_message(info.value, "export name")


def test_random_export_names_are_refused_or_stay_inside(sandbox):
    work = Workdir(str(sandbox))
    rng = random.Random(99)
    alphabet = "aZ09_.+-/\\ \t\n\x00:~é*?$" + "."
    refused = accepted = 0
    for _ in range(500):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        try:
            path = work.export_dir(name)
        except WorkdirError as e:
            check_message(e, "export name")
            refused += 1
            continue
        accepted += 1
        assert os.path.dirname(path) == work.export_root and os.path.basename(path) == name
        assert not name.startswith((".", "-")) and all(c.isalnum() or c in "_.+-" for c in name)
        assert os.path.realpath(path).startswith(os.path.realpath(work.export_root) + os.sep)
    assert refused > 100 and accepted > 10
    assert work.export_dir("good_name-1.0+x").endswith(os.path.join("export", "good_name-1.0+x"))


def test_case_count():
    # The fast fuzz set is meant to be large: keep it so when editing the generators.
    total = (
        len(FIELD_CASES)
        + len(ARCH_CASES)
        + len(FRONT_CASES)
        + len(_mask_cases())
        + 3 * len(_record_variants())
        + len(_header_variants())
        + len(_summary_cases())
        + len(BAD_NAMES)
    )
    assert total >= 600, total

"""The family registry: lookup, what every family provides, and that generic code never imports a family."""

import ast
import dataclasses
import pathlib

import numpy as np
import pytest

from scalenas_tf import registry
from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scarlet.space import ScarletSpace

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "scalenas_tf"
# Small spaces per family (the registry's generic calls must work on any space of the family).
SMALL = {
    "scalenas": dict(
        width=4, depth_choices=(3, 4), num_modules=(1, 1), num_branches=(2, 3), stem_channels=8, layer1_blocks=1
    ),
    "scarlet": dict(
        variant="s1", channels=(8, 8, 16), strides=(2, 1, 2), stem_channels=8, first_channels=8, head_channels=16
    ),
    "scalenet": dict(
        stem_channels=4,
        stage_channels=(4, 4, 8, 8, 8, 12, 12),
        max_blocks=(1, 2, 2, 1, 1, 1, 1),
        head_channels=16,
        depth_multipliers=((1.0,), (1.5,), (2.0,)),
        width_multipliers=((1.0,), (1.5,), (2.0,)),
        resolutions=((32,), (36,), (40,)),
        resolution_multipliers=((1.0,), (1.125,), (1.25,)),
        base_resolution=32,
    ),
}
TASKS = {"scalenas": "seg", "scarlet": "cls", "scalenet": "cls"}
SEARCH_SETTINGS = {
    "scalenas": {"budget": 6},
    "scarlet": {"generations": 1, "num_outputs": 2},
    # f0 and tolerances sized to this space's costs (GMACs): every base and strategy is feasible.
    "scalenet": {
        "iterations": 1,
        "generations": 1,
        "initial_bases": 2,
        "f0": 0.001,
        "base_tolerance": 1.0,
        "stage_tolerance": 1.0,
        "budget": 12,
    },
}


def test_names_and_lookup():
    assert registry.names() == ("scalenas", "scalenet", "scarlet")  # import order (families/__init__.py)
    assert registry.get("scarlet").space_class is ScarletSpace
    with pytest.raises(
        ValueError,
        match=r"config.search_space.type must be one of \['scalenas', 'scalenet', 'scarlet'\]. Received: 'nope'",
    ):
        registry.get("nope")
    assert registry.family_of(ScaleNASSpace(width=8)).name == "scalenas"
    with pytest.raises(TypeError, match="No registered search-space family serves a dict"):
        registry.family_of({})


def test_a_second_family_of_the_same_name_is_refused():
    family = registry.get("scalenas")
    assert registry.register(family) is family  # registering the same object again is harmless
    clone = registry.Family(**{f: getattr(family, f) for f in family.__dataclass_fields__})
    with pytest.raises(ValueError, match="already registered"):
        registry.register(clone)


@pytest.mark.parametrize("name", ["scalenas", "scarlet", "scalenet"])
def test_every_family_provides_what_generic_code_asks_for(name):
    family = registry.get(name)
    space = family.build_space(SMALL[name])
    assert registry.family_of(space) is family
    with pytest.raises(ValueError, match=r"Unknown field\(s\) in config.search_space"):
        family.build_space({**SMALL[name], "typo": 1})
    # Named archs resolve; an unknown name says what exists.
    for arch_name in ("largest", "smallest", family.default_arch):
        arch, label = family.resolve_arch(space, arch_name)
        assert label == arch_name and space.from_vector(space.to_vector(arch)) == arch
    with pytest.raises(ArchError, match=f"Not found.*{name} space"):
        family.resolve_arch(space, "no_such_arch")
    # Cost: one record type with the objectives a search compares.
    task = TASKS[name]
    record = family.count(space, space.largest(), task, 4, (32, 32))
    assert record.params > 0 and record.macs > 0 and record.gmacs == record.macs / 1e9
    for measure in family.cost_measures:
        # latency_ms needs a predicted latency on the record (Experiment.cost_of attaches it).
        counted = dataclasses.replace(record, latency_ms=1.5) if measure == "latency_ms" else record
        value = family.search_cost(counted, measure)
        first = value[0] if isinstance(value, tuple) else value
        assert first == pytest.approx(counted.measure(measure))
    entry = family.export_cost(space, space.smallest(), task, 4, (32, 32), family.cost_measures[0])
    assert entry["params"] > 0 and entry["input_size"] == [32, 32]
    arch, summary = family.cost_report(family, space, task, 4, (32, 32), arch="largest")
    assert summary["arch_hash"] == arch.hash() and "params" in family.format_cost(summary)
    # Searches and their settings: every method runs on a synthetic metric and respects the budget.
    settings = family.settings({"population": 4, "seed": 1, **SEARCH_SETTINGS[name]})
    rng = np.random.default_rng(0)
    scores = {}

    def evaluate(a):
        return scores.setdefault(a.hash(), float(rng.random()))

    def cost_of(a):
        return family.search_cost(family.count(space, a, task, 4, (32, 32)), family.cost_measures[0])

    for method in family.searches:
        result = family.search(method)(space, evaluate, cost_of, settings)
        assert 0 < len(result.results) <= settings.evaluations
        assert result.front() and isinstance(result.summary_extras(lambda r: r["hash"]), dict)
    with pytest.raises(ValueError, match="Unknown search method"):
        family.search("grid")


@pytest.mark.parametrize("name", ["scalenas", "scarlet", "scalenet"])
def test_every_sampler_name_builds_and_draws_archs_of_the_space(name):
    family = registry.get(name)
    space = family.build_space(SMALL[name])
    for sampler_name in family.sampler_names():
        sampler = family.make_sampler(sampler_name, space, seed=3)
        vectors, _ = sampler(0)
        for vector in vectors.numpy():
            space.from_vector(vector)  # raises if a drawn arch is outside the space
    with pytest.raises(ValueError, match="is not a sampler of the"):
        family.make_sampler("magic", space)
    with pytest.raises(ValueError, match="do not fit sampler"):
        family.make_sampler("sandwich", space, nonsense=1)


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_generic_code_never_imports_a_family():
    """Runners, trainer, evaluator, search, export, models, config and the CLI reach families only
    through the registry, so adding a family edits none of them."""
    generic = [
        p for p in PACKAGE.rglob("*.py") if "families" not in p.relative_to(PACKAGE).parts and p.name != "__init__.py"
    ]
    assert len(generic) > 20
    offenders = {
        str(p.relative_to(PACKAGE)): m for p in generic for m in _imports(p) if m.startswith("scalenas_tf.families")
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "name, fields",
    [
        ("scalenas", {}),
        ("scalenas", {"fusion_upsampling": "bilinear"}),
        ("scarlet", {}),
        ("scalenet", {}),  # extracted at 32x32, the largest arch's 40 px: a Resizing layer first
    ],
)
def test_a_plain_call_of_an_extracted_model_leaves_its_statistics(name, fields):
    """`model(x)` with no `training` is inference: Keras layers that default to training=True (e.g.
    `Resizing`) must not hand that on to the BN layers after them."""
    import keras

    family = registry.get(name)
    space = family.build_space({**SMALL[name], **fields})
    supernet = family.build_supernet(space, TASKS[name], 4)
    supernet(np.zeros((1, 32, 32, 3), np.float32))
    model = family.extract(supernet, space.largest(), (32, 32)).model
    before = [w.numpy().copy() for w in model.non_trainable_weights]
    model(keras.random.uniform((2, 32, 32, 3), seed=1))
    assert before and all(np.array_equal(b, w.numpy()) for b, w in zip(before, model.non_trainable_weights))

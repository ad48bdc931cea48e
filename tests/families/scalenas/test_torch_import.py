"""timm HRNet checkpoints -> ScaleNAS `cls` supernet and extracted model: logits equal timm's (no torch needed).

The fixture (tests/reference/timm_hrnet_parity.py dump_tiny, torch 2.14.1, timm 1.0.31) is a 4-wide
timm `HighResolutionNet` (one module per stage, two BasicBlocks per branch) saved with torch.save in
float16; timm's fixed-width classification head is drawn from numpy by the same script's
`head_tensors` (8.4M parameters would not fit a small fixture).
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from scalenas_tf import registry
from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas import torch_import
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.models import extraction
from scalenas_tf.models import torch_checkpoint
from scalenas_tf.models import weight_import
from scalenas_tf.models.weight_import import WeightImportError

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
CHECKPOINT = os.path.join(FIXTURES, "timm_hrnet_tiny.pth")
# The fixture's timm cfg as a space: stem 64, one layer1 Bottleneck, one module per stage, width 4.
SPACE = ScaleNASSpace(width=4, depth_choices=(2, 3), num_modules=(1, 1, 1), layer1_blocks=1, stem_channels=64)
ARCH = SPACE.hrnet(depth=2)
NUM_CLASSES = 10


def _parity_script():
    spec = importlib.util.spec_from_file_location(
        "timm_hrnet_parity", os.path.join(ROOT, "tests", "reference", "timm_hrnet_parity.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference():
    data = np.load(os.path.join(FIXTURES, "timm_hrnet_tiny.npz"))
    head = _parity_script().head_tensors(json.loads(str(data["head_spec"])))
    state = torch_checkpoint.load_state_dict(CHECKPOINT)
    return {"tensors": {**state.tensors, **head}, "input": data["input"], "logits": data["logits"]}


@pytest.fixture(scope="module")
def imported_supernet(reference):
    supernet = ScaleNASSupernet(SPACE, task="cls", num_classes=NUM_CLASSES)
    imported = torch_import.timm_hrnet(reference["tensors"], supernet, ARCH)
    weight_import.apply(supernet, imported)
    return supernet, imported


def _close(ours, reference):
    expected = reference["logits"]
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=0, atol=1e-4 * np.max(np.abs(expected)))


def test_supernet_and_extracted_logits_equal_timm(reference, imported_supernet):
    supernet, imported = imported_supernet
    assert imported.missing == () and imported.unmapped_source == ()
    assert {k for k in reference["tensors"] if k.endswith("num_batches_tracked")} == set(imported.ignored)
    # Blocks at step 2 and the fusion edges of steps 0 and 2 are outside the arch: left as they were.
    assert "s2m0_b0_k2_conv1" in imported.unmapped_target and "s2m0_f0s0k1_conv0" in imported.unmapped_target
    assert imported.sources["head_classifier"] == {"kernel": "classifier.weight", "bias": "classifier.bias"}
    x = reference["input"]
    _close(supernet(x, arch=ARCH, training=False), reference)
    _close(extraction.extract_subnet(supernet, ARCH, input_size=x.shape[1:3])(x, training=False), reference)


def test_import_into_an_extracted_model(reference):
    static = extraction.extract_subnet(ScaleNASSupernet(SPACE, task="cls", num_classes=NUM_CLASSES), ARCH, (32, 32))
    imported = torch_import.timm_hrnet(reference["tensors"], static, ARCH)
    assert imported.unmapped_target == ()
    weight_import.apply(static, imported)
    _close(static(reference["input"], training=False), reference)


def test_shape_mismatch_names_both_sides(reference):
    tensors = dict(reference["tensors"])
    tensors["classifier.weight"] = np.zeros((11, 2048), np.float32)
    supernet = ScaleNASSupernet(SPACE, task="cls", num_classes=NUM_CLASSES)
    with pytest.raises(
        WeightImportError, match=r"classifier\.weight \(11, 2048\) -> head_classifier/kernel.*\(2048, 10\)"
    ):
        torch_import.timm_hrnet(tensors, supernet, ARCH)


def test_arch_timm_cannot_express_is_refused(reference):
    supernet = ScaleNASSupernet(SPACE, task="cls", num_classes=NUM_CLASSES)
    with pytest.raises(ArchError, match="timm_hrnet: module 0, target branch 0, step 0"):
        torch_import.timm_hrnet(reference["tensors"], supernet, SPACE.largest())


def test_strict_apply_refuses_missing_and_left_over_tensors(reference, imported_supernet):
    supernet, _ = imported_supernet
    backbone = {k: v for k, v in reference["tensors"].items() if not k.startswith("classifier.")}
    partial = torch_import.timm_hrnet(backbone, supernet, ARCH)
    assert partial.missing == ("head_classifier <- classifier (no classifier.weight, classifier.bias)",)
    with pytest.raises(WeightImportError, match="lacks 1 layer"):
        weight_import.apply(supernet, partial)
    extra = torch_import.timm_hrnet({**reference["tensors"], "aux.weight": np.zeros(3)}, supernet, ARCH)
    assert extra.unmapped_source == ("aux.weight",)
    with pytest.raises(WeightImportError, match=r"map to no layer.*aux\.weight"):
        weight_import.apply(supernet, extra)


def test_registered_and_unknown_sources():
    family = registry.get("scalenas")
    assert family.weight_importer("timm_hrnet") is torch_import.timm_hrnet
    assert family.weight_importer("hrnet_official") is torch_import.hrnet_official
    assert family.weight_importer("scalenas_official") is torch_import.scalenas_official
    with pytest.raises(
        ValueError, match=r"Unknown weight source 'mmseg'.*\['hrnet_official', 'scalenas_official', 'timm_hrnet'\]"
    ):
        family.weight_importer("mmseg")


def test_hrnet_official_reads_classification_names_as_timm(reference):
    """HRNet-Image-Classification and timm share their names: both sources map alike."""
    supernet = ScaleNASSupernet(SPACE, task="cls", num_classes=NUM_CLASSES)
    official = torch_import.hrnet_official(reference["tensors"], supernet, ARCH)
    timm = torch_import.timm_hrnet(reference["tensors"], supernet, ARCH)
    assert official.sources == timm.sources and official.unmapped_source == ()


def _config():
    import ml_collections

    config = ml_collections.ConfigDict()
    config.search_space = dict(width=4, depth_choices=(2, 3), num_modules=(1, 1, 1), layer1_blocks=1, stem_channels=64)
    config.model = dict(task="cls", num_classes=NUM_CLASSES, input_size=(32, 32))
    return config


def test_runner_writes_weights_that_reproduce_timm(tmp_path, reference):
    from scalenas_tf.runners import import_weights

    out = tmp_path / "w" / "supernet.weights.h5"
    # The fixture's head is not in the file: import with it merged, through safetensors.
    from safetensors.numpy import save_file

    merged = tmp_path / "tiny.safetensors"
    save_file(reference["tensors"], str(merged))
    config = _config()
    with pytest.raises(ValueError, match="Checkpoint not found"):
        import_weights.run(config, "timm_hrnet", str(tmp_path / "absent.pth"), str(out))
    with pytest.raises(ValueError, match="Unknown weight source 'mmseg'"):
        import_weights.run(config, "mmseg", str(merged), str(out))
    with pytest.raises(ArchError, match="timm_hrnet: module 0"):  # depth 3, fusion at every step
        import_weights.run(config, "timm_hrnet", str(merged), str(out), arch="largest")
    arch_file = tmp_path / "hrnet2.json"
    arch_file.write_text(ARCH.to_json())
    summary = import_weights.run(config, "timm_hrnet", str(merged), str(out), arch=str(arch_file))
    assert summary["mapping"]["num_missing"] == 0 and summary["checkpoint"]["format"] == "safetensors"
    assert sorted(os.listdir(out.parent)) == ["supernet.weights.h5"]  # no temporary file left
    supernet = ScaleNASSupernet(SPACE, task="cls", num_classes=NUM_CLASSES)
    supernet.build((None, None, None, 3))
    supernet.load_weights(str(out))
    _close(supernet(reference["input"], arch=ARCH, training=False), reference)


@pytest.mark.slow
def test_binary_refuses_a_missing_checkpoint(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bin", "import_weights.py"),
            f"--config={os.path.join(ROOT, 'configs', 'scalenas_cls.py')}:w18",
            "--source=timm_hrnet",
            f"--checkpoint={tmp_path / 'absent.pth'}",
            f"--out={tmp_path / 'out.weights.h5'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "import_weights.py: error: Checkpoint not found" in result.stderr
    assert not os.path.exists(tmp_path / "out.weights.h5")

"""The ScaleNAS authors' seg supernet checkpoints (`scalenas_official`) -> ScaleNAS seg models: logits equal PyTorch's.

The fixture (tests/reference/scalenas_official_parity.py dump_tiny, torch 2.14.1) is a 2-wide
`SuperScaleNet_Seg` built with the authors' `superscalenet_seg.py` (DEPTH_LIST 2-3, so three
BasicBlocks and three fuse layers `fuse_layers_{1,2,3}` per module, one module per stage, nearest
upsampling inside the modules, HRNetV2's bilinear head), saved with torch.save in float16 with its
float32 logits (NHWC) at the parity script's `TINY_MASK` and at the largest subnet. No torch is
needed here.
"""

import importlib.util
import os

import numpy as np
import pytest

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


def _parity_script():
    path = os.path.join(ROOT, "tests", "reference", "scalenas_official_parity.py")
    spec = importlib.util.spec_from_file_location("scalenas_official_parity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PARITY = _parity_script()


class _Case:
    def __init__(self):
        self.space = ScaleNASSpace(**PARITY.TINY_SPACE)
        self.mask_arch = self.space.from_official_mask(PARITY.TINY_MASK)
        self.state = torch_checkpoint.load_state_dict(os.path.join(FIXTURES, "scalenas_official_seg_tiny.pth"))
        data = np.load(os.path.join(FIXTURES, "scalenas_official_seg_tiny.npz"))
        self.input = data["input"]
        self.outputs = {"mask": data["output_mask"], "largest": data["output_largest"]}

    def supernet(self, space=None):
        return ScaleNASSupernet(space or self.space, task="seg", num_classes=PARITY.TINY_CLASSES)

    def assert_close(self, ours, which):
        expected = self.outputs[which]
        np.testing.assert_allclose(np.asarray(ours), expected, rtol=0, atol=1e-4 * np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def case():
    return _Case()


@pytest.fixture(scope="module")
def imported_supernet(case):
    supernet = case.supernet()
    imported = torch_import.scalenas_official(case.state, supernet, case.mask_arch)
    weight_import.apply(supernet, imported)
    return supernet, imported


def test_whole_supernet_is_imported_and_every_subnet_equals_pytorch(case, imported_supernet):
    supernet, imported = imported_supernet
    assert imported.missing == () and imported.unmapped_source == () and imported.unmapped_target == ()
    assert set(imported.ignored) == {k for k in case.state.tensors if k.endswith("num_batches_tracked")}
    assert imported.notes == ()
    case.assert_close(supernet(case.input, arch=case.mask_arch, training=False), "mask")
    case.assert_close(supernet(case.input, arch=case.space.largest(), training=False), "largest")
    static = extraction.extract_subnet(supernet, case.mask_arch, input_size=case.input.shape[1:3])
    case.assert_close(static(case.input, training=False), "mask")


def test_per_step_fuse_layers_map_onto_per_step_edges(imported_supernet):
    _, imported = imported_supernet
    assert imported.sources["s2m0_f1s0k0_conv0"]["kernel"] == "stage2.0.fuse_layers_1.1.0.0.0.weight"
    assert imported.sources["s4m0_f0s2k3_conv0"]["kernel"] == "stage4.0.fuse_layers_3.0.3.0.weight"
    assert imported.sources["s4m0_f3s1k0_bn2"]["moving_variance"] == "stage4.0.fuse_layers_2.3.0.2.1.running_var"
    assert imported.sources["s3m0_b2_k2_conv2"]["kernel"] == "stage3.0.branches.2.2.conv2.weight"
    assert imported.sources["head_conv2"] == {"kernel": "last_layer.3.weight", "bias": "last_layer.3.bias"}


def test_import_into_a_model_extracted_at_the_mask(case):
    static = extraction.extract_subnet(case.supernet(), case.mask_arch, input_size=case.input.shape[1:3])
    imported = torch_import.scalenas_official(case.state, static, case.mask_arch)
    assert imported.missing == () and imported.unmapped_source == () and imported.unmapped_target == ()
    # Module 0 runs branch 1 for 2 of 3 steps and edge 1 <- 0 at step 0 only.
    assert "stage2.0.branches.1.2.conv1.weight" in imported.ignored
    assert "stage2.0.fuse_layers_2.1.0.0.0.weight" in imported.ignored
    assert "stage2.0.fuse_layers_1.1.0.0.0.weight" not in imported.ignored
    weight_import.apply(static, imported)
    case.assert_close(static(case.input, training=False), "mask")
    with pytest.raises(WeightImportError, match="no layer 's2m0_b1_k2_conv1'"):
        torch_import.scalenas_official(case.state, static, case.space.largest())


def test_full_model_wrapper_of_the_training(case):
    """Their training saves FullModel(model, loss): `model.` names and the loss's class weights."""
    wrapped = {f"model.{k}": v for k, v in case.state.tensors.items()}
    wrapped["loss.criterion.weight"] = np.ones(PARITY.TINY_CLASSES, np.float32)
    supernet = case.supernet()
    imported = torch_import.scalenas_official(wrapped, supernet, case.mask_arch)
    assert imported.unmapped_source == () and imported.missing == ()
    assert "loss.criterion.weight" in imported.ignored
    assert imported.sources["s2m0_f0s1k1_conv0"] == {"kernel": "model.stage2.0.fuse_layers_2.0.1.0.weight"}
    weight_import.apply(supernet, imported)
    case.assert_close(supernet(case.input, arch=case.mask_arch, training=False), "mask")


def test_shape_mismatch_names_both_sides(case):
    tensors = dict(case.state.tensors)
    tensors["stage3.0.fuse_layers_2.2.0.1.0.weight"] = np.zeros((8, 4, 3, 3), np.float16)
    with pytest.raises(
        WeightImportError,
        match=r"stage3\.0\.fuse_layers_2\.2\.0\.1\.0\.weight \(8, 4, 3, 3\) -> s3m0_f2s1k0_conv1/kernel "
        r"\(3, 3, 4, 8\) \(after OIHW -> HWIO\), but the layer expects \(3, 3, 2, 8\)",
    ):
        torch_import.scalenas_official(tensors, case.supernet(), case.mask_arch)
    wider = ScaleNASSpace(**{**PARITY.TINY_SPACE, "width": 3})
    with pytest.raises(WeightImportError, match=r"Shape mismatch: checkpoint transition1\.0\.0\.weight"):
        torch_import.scalenas_official(case.state, case.supernet(wider), wider.largest())


def test_deeper_space_reports_the_missing_steps(case):
    deeper = ScaleNASSpace(**{**PARITY.TINY_SPACE, "depth_choices": (2, 3, 4)})
    supernet = case.supernet(deeper)
    imported = torch_import.scalenas_official(case.state, supernet, deeper.largest())
    assert imported.unmapped_source == ()
    assert any("s2m0_b0_k3_conv1 <- stage2.0.branches.0.3" in m for m in imported.missing)
    assert any("<- stage4.0.fuse_layers_4.3.0.2" in m for m in imported.missing)
    with pytest.raises(WeightImportError, match="lacks"):
        weight_import.apply(supernet, imported)


def test_bilinear_space_is_noted_and_other_heads_or_archs_refused(case):
    bilinear = ScaleNASSpace(**{**PARITY.TINY_SPACE, "fusion_upsampling": "bilinear"})
    imported = torch_import.scalenas_official(case.state, case.supernet(bilinear), bilinear.largest())
    assert len(imported.notes) == 1 and "nearest" in imported.notes[0]
    pose = ScaleNASSupernet(case.space, task="pose", num_classes=3)
    with pytest.raises(WeightImportError, match="no 'head_conv1' layer"):
        torch_import.scalenas_official(case.state, pose, case.mask_arch)
    other = ScaleNASSpace(**{**PARITY.TINY_SPACE, "num_modules": (1, 2, 1)})
    with pytest.raises(ArchError):
        torch_import.scalenas_official(case.state, case.supernet(), other.largest())

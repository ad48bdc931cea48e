"""Official HRNet checkpoints (`hrnet_official`) -> ScaleNAS seg and pose supernets: outputs equal PyTorch's.

The fixtures (tests/reference/hrnet_official_parity.py dump_tiny, torch 2.14.1) are 2-wide networks
built with the official files, HRNet-Semantic-Segmentation's `seg_hrnet.py` (HRNetV2, bilinear
fusion, `ALIGN_CORNERS: False`) and deep-high-resolution-net.pytorch's `pose_hrnet.py` (nearest
fusion, single-output last module), one module per stage and two BasicBlocks per branch, saved with
torch.save in float16 with their float32 outputs (NHWC). No torch is needed here.
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
    spec = importlib.util.spec_from_file_location(
        "hrnet_official_parity", os.path.join(ROOT, "tests", "reference", "hrnet_official_parity.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PARITY = _parity_script()


class _Case:
    def __init__(self, task):
        self.task = task
        self.space = ScaleNASSpace(**PARITY.TINY_SPACES[task])
        self.arch = self.space.hrnet(depth=2)
        self.num_classes = PARITY.TINY_CLASSES[task]
        self.state = torch_checkpoint.load_state_dict(os.path.join(FIXTURES, f"hrnet_official_{task}_tiny.pth"))
        data = np.load(os.path.join(FIXTURES, f"hrnet_official_{task}_tiny.npz"))
        self.input, self.output = data["input"], data["output"]

    def supernet(self):
        return ScaleNASSupernet(self.space, task=self.task, num_classes=self.num_classes)

    def assert_close(self, ours):
        scale = np.max(np.abs(self.output))
        np.testing.assert_allclose(np.asarray(ours), self.output, rtol=0, atol=1e-4 * scale)


@pytest.fixture(scope="module", params=["seg", "pose"])
def case(request):
    return _Case(request.param)


@pytest.fixture(scope="module")
def seg():
    return _Case("seg")


def test_supernet_and_extracted_outputs_equal_pytorch(case):
    supernet = case.supernet()
    imported = torch_import.hrnet_official(case.state, supernet, case.arch)
    assert imported.missing == () and imported.unmapped_source == ()
    assert set(imported.ignored) == {k for k in case.state.tensors if k.endswith("num_batches_tracked")}
    weight_import.apply(supernet, imported)
    case.assert_close(supernet(case.input, arch=case.arch, training=False))
    static = extraction.extract_subnet(supernet, case.arch, input_size=case.input.shape[1:3])
    case.assert_close(static(case.input, training=False))


def test_heads_and_single_output_last_module(case):
    imported = torch_import.hrnet_official(case.state, case.supernet(), case.arch)
    if case.task == "seg":
        assert imported.sources["head_conv2"] == {"kernel": "last_layer.3.weight", "bias": "last_layer.3.bias"}
        assert imported.sources["s4m0_f3s1k0_conv2"]["kernel"] == "stage4.0.fuse_layers.3.0.2.0.weight"
    else:
        assert imported.sources["head_conv"] == {"kernel": "final_layer.weight", "bias": "final_layer.bias"}
        # pose HRNet's last module fuses into branch 0 only: no fuse_layers.1.. in the file.
        assert "s4m0_f1s1k0_conv0" in imported.unmapped_target
        assert imported.sources["s4m0_f0s1k3_conv0"]["kernel"] == "stage4.0.fuse_layers.0.3.0.weight"


def test_import_into_an_extracted_model(case):
    static = extraction.extract_subnet(case.supernet(), case.arch, input_size=case.input.shape[1:3])
    imported = torch_import.hrnet_official(case.state, static, case.arch)
    assert imported.unmapped_target == () and imported.unmapped_source == ()
    weight_import.apply(static, imported)
    case.assert_close(static(case.input, training=False))


def test_full_model_wrapper_of_the_seg_training(seg):
    """HRNet-Semantic-Segmentation saves FullModel(model, loss): `model.` names and the loss's class weights."""
    wrapped = {f"model.{k}": v for k, v in seg.state.tensors.items()}
    wrapped["loss.criterion.weight"] = np.ones(seg.num_classes, np.float32)
    supernet = seg.supernet()
    imported = torch_import.hrnet_official(wrapped, supernet, seg.arch)
    assert imported.unmapped_source == () and "loss.criterion.weight" in imported.ignored
    assert imported.sources["stem_conv1"] == {"kernel": "model.conv1.weight"}
    weight_import.apply(supernet, imported)
    seg.assert_close(supernet(seg.input, arch=seg.arch, training=False))


def test_shape_mismatch_names_both_sides(seg):
    tensors = dict(seg.state.tensors)
    tensors["last_layer.3.weight"] = np.zeros((seg.num_classes, 30, 3, 3), np.float32)  # FINAL_CONV_KERNEL: 3
    with pytest.raises(
        WeightImportError, match=r"last_layer\.3\.weight \(5, 30, 3, 3\) -> head_conv2/kernel \(3, 3, 30, 5\)"
    ):
        torch_import.hrnet_official(tensors, seg.supernet(), seg.arch)
    wider = ScaleNASSpace(**{**PARITY.TINY_SPACES["seg"], "width": 3})
    with pytest.raises(WeightImportError, match=r"Shape mismatch: checkpoint transition1\.0\.0\.weight"):
        torch_import.hrnet_official(seg.state, ScaleNASSupernet(wider, task="seg", num_classes=5), wider.hrnet(2))


def test_unmapped_and_missing_tensors_are_reported_and_refused(case):
    supernet = case.supernet()
    extra = torch_import.hrnet_official({**case.state.tensors, "aux_head.weight": np.zeros(3)}, supernet, case.arch)
    assert extra.unmapped_source == ("aux_head.weight",)
    with pytest.raises(WeightImportError, match=r"map to no layer.*aux_head\.weight"):
        weight_import.apply(supernet, extra)
    head = "last_layer.3" if case.task == "seg" else "final_layer"
    partial = {k: v for k, v in case.state.tensors.items() if not k.startswith(head + ".")}
    lacking = torch_import.hrnet_official(partial, supernet, case.arch)
    assert len(lacking.missing) == 1 and head in lacking.missing[0]
    with pytest.raises(WeightImportError, match="lacks 1 layer"):
        weight_import.apply(supernet, lacking)
    assert weight_import.apply(supernet, lacking, strict=False) == len(lacking.assignments)


def test_arch_hrnet_cannot_express_is_refused(case):
    with pytest.raises(ArchError, match="hrnet_official: module 0, target branch 0, step 0"):
        torch_import.hrnet_official(case.state, case.supernet(), case.space.largest())


def test_seg_import_into_a_nearest_space_notes_the_other_function(seg):
    assert torch_import.hrnet_official(seg.state, seg.supernet(), seg.arch).notes == ()
    nearest = ScaleNASSpace(**{**PARITY.TINY_SPACES["seg"], "fusion_upsampling": "nearest"})
    supernet = ScaleNASSupernet(nearest, task="seg", num_classes=seg.num_classes)
    imported = torch_import.hrnet_official(seg.state, supernet, seg.arch)
    assert len(imported.notes) == 1 and "fusion_upsampling='bilinear'" in imported.notes[0]
    assert imported.report()["notes"] == list(imported.notes)
    weight_import.apply(supernet, imported)  # the weights fit; only the fusion differs
    outputs = np.asarray(supernet(seg.input, arch=seg.arch, training=False))
    assert np.max(np.abs(outputs - seg.output)) > 1e-3 * np.max(np.abs(seg.output))

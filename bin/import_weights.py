r"""Imports a PyTorch checkpoint (timm HRNet, official HRNet, ...) into a config's supernet; writes its .weights.h5.

  python bin/import_weights.py --config=configs/scalenas_cls.py:w18 --source=timm_hrnet \
      --checkpoint=hrnet_w18.pth --out=/runs/hrnet_w18/supernet.weights.h5
  python bin/import_weights.py --config=configs/scalenas_pose.py:w32 --source=hrnet_official \
      --checkpoint=pose_hrnet_w32_256x192.pth --out=/runs/pose_w32/supernet.weights.h5
  python bin/import_weights.py --config=configs/scalenas_seg.py:w32 --source=scalenas_official \
      --checkpoint=superscalenet_seg_w32.pth --out=/runs/seg_w32/supernet.weights.h5

The checkpoint is a `.safetensors` file or a torch.save file (`.pth`, `.pth.tar`, `.bin`; the zip
format or the legacy one of PyTorch < 1.6), read without torch: only plain state dicts load (any
other pickled object is refused; convert such files to safetensors). `{"state_dict": ...}` /
`{"model": ...}` nesting and a `module.` prefix are undone. --source names the family's importer
(ScaleNAS: timm_hrnet, timm's hrnet_w18/w32/w48/... for configs/scalenas_cls.py:wN at --arch=hrnet;
hrnet_official, HRNet-Semantic-Segmentation's HRNetV2 for configs/scalenas_seg.py:wN (with
--config.search_space.fusion_upsampling=bilinear for HRNetV2's own function) and
deep-high-resolution-net.pytorch's pose HRNet for configs/scalenas_pose.py:wN; scalenas_official, the
ScaleNAS authors' segmentation supernet superscalenet_seg for configs/scalenas_seg.py:wN). The supernet
layers the arch runs receive the checkpoint's weights; the others keep their initial values. A
scalenas_official checkpoint is a supernet itself: every block and fusion edge receives its weights
whatever --arch (which is only checked against the space), and any subnet, e.g. an official mask's,
then runs as in the authors' code. Writing goes
through a temporary file in the same directory, renamed into place. The last line of standard output
is one JSON object.
Exit codes: 0 ok; 1 bad flags or bad input (a missing or unsafe checkpoint, a shape mismatch, left-over
tensors without --allow_unmapped), with a one-line message on standard error.
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from scalenas_tf import cli
from scalenas_tf.runners import import_weights as import_runner

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Python config file[:variant], e.g. configs/scalenas_cls.py:w18."
)
_SOURCE = flags.DEFINE_string("source", None, "Where the checkpoint comes from: an importer of the config's family.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A .safetensors or torch.save (.pth, .pth.tar, .bin) file.")
_OUT = flags.DEFINE_string("out", None, "The supernet weights file to write (ends in .weights.h5).")
_ARCH = flags.DEFINE_string("arch", None, "The arch the checkpoint holds: a named arch or an arch JSON path.")
_ALLOW_UNMAPPED = flags.DEFINE_bool(
    "allow_unmapped", False, "Import even if the checkpoint lacks layers of the arch or has tensors left over."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    summary = import_runner.run(
        _CONFIG.value,
        source=_SOURCE.value,
        checkpoint=_CHECKPOINT.value,
        out=_OUT.value,
        arch=_ARCH.value,
        allow_unmapped=_ALLOW_UNMAPPED.value,
    )
    mapping = summary["mapping"]
    print(
        f"{summary['checkpoint']['path']}: {mapping['tensors_mapped']} tensors into {mapping['layers_mapped']} layers "
        f"(arch {summary['arch']}); wrote {summary['out']}"
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    cli.run(main, "import_weights.py", required=["config", "source", "checkpoint", "out"])

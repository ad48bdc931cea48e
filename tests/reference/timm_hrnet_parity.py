r"""Forward parity of imported timm HRNet checkpoints: timm (PyTorch) logits vs the ScaleNAS `cls` supernet.

Not a pytest module: timm needs torch, which is not a dependency of this library. Run it in two
environments, a scratch one with torch + timm and the project's own:

  /path/to/scratch/python tests/reference/timm_hrnet_parity.py dump /tmp/hrnet [hrnet_w18_small_v2]
  python tests/reference/timm_hrnet_parity.py compare /tmp/hrnet [hrnet_w18_small_v2]

`dump` builds timm's `hrnet_w18` with random weights and random BN parameters and statistics (the
statistics of a random batch, perturbed: every tensor matters and the activations keep their
scale; the classifier is scaled by 30 for logits of magnitude ~10-100), writes its state dict with
`torch.save` (`hrnet_w18.pth`, a zip checkpoint) and the logits of a fixed random batch in eval
mode (`hrnet_w18_reference.npz`). `compare` reads the
checkpoint with `scalenas_tf.models.torch_checkpoint` (no torch), maps it onto the supernet of
`configs/scalenas_cls.py:w18` with the family's `timm_hrnet` importer, and prints one JSON line:
the max abs logit difference of the supernet at arch `hrnet` and of the extracted model.

  /path/to/scratch/python tests/reference/timm_hrnet_parity.py dump_tiny tests/fixtures

writes the CI fixture of tests/families/scalenas/test_torch_import.py: a 4-wide HRNet built with
timm's `HighResolutionNet` and a custom cfg (stem 64, one layer1 Bottleneck, one module per stage,
two BasicBlocks per branch), whose backbone is saved with `torch.save` in float16
(`timm_hrnet_tiny.pth`, ~0.3 MB; the model runs the same float16-rounded values in float32). timm's
classification head has fixed widths (8.4M parameters whatever the backbone), so it is not stored:
`head_tensors` draws it from numpy with a fixed seed, in both environments.
"""

import json
import os
import sys

import numpy as np

TINY_CFG = dict(
    stem_width=64,
    stage1=dict(num_modules=1, num_branches=1, block_type="BOTTLENECK", num_blocks=(1,), num_channels=(64,)),
    stage2=dict(num_modules=1, num_branches=2, block_type="BASIC", num_blocks=(2, 2), num_channels=(4, 8)),
    stage3=dict(num_modules=1, num_branches=3, block_type="BASIC", num_blocks=(2,) * 3, num_channels=(4, 8, 16)),
    stage4=dict(num_modules=1, num_branches=4, block_type="BASIC", num_blocks=(2,) * 4, num_channels=(4, 8, 16, 32)),
)
for _stage in TINY_CFG.values():
    if isinstance(_stage, dict):
        _stage["fuse_method"] = "SUM"
TINY_CLASSES = 10
TINY_SIZE = 32
HEAD_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
_BN_RANGES = {"weight": (0.5, 1.5), "bias": (-0.5, 0.5), "running_mean": (-0.5, 0.5), "running_var": (0.5, 2.0)}


def head_tensors(spec, seed=0):
    """`{name: float32 array}` for `spec`, a list of `[name, shape, kind]` (kind: "conv", "bn", "dense"),
    drawn in order from one numpy generator: He-normal kernels, BN values in the ranges of `dump`."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape, kind in spec:
        field = name.rsplit(".", 1)[1]
        if kind == "bn":
            low, high = _BN_RANGES[field]
            value = rng.uniform(low, high, size=shape)
        elif field == "bias":
            value = rng.uniform(-0.1, 0.1, size=shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(size=shape) * np.sqrt(2.0 / fan_in)
        out[name] = value.astype(np.float32)
    return out


def _randomize_bn(model, torch, x, skip=()):
    """Random BN affine parameters; moving statistics from a train-mode pass over `x` (so activations
    keep a sane scale through the deep network), then perturbed so that every tensor matters.
    Modules whose name starts with one of `skip` are left untouched."""
    norms = [m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and not n.startswith(skip)]
    with torch.no_grad():
        for module in norms:
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.5, 0.5)
            module.momentum = 1.0  # the running statistics become this batch's
        model.train()
        model(x)
        model.eval()
        for module in norms:
            module.momentum = 0.1
            module.running_mean.add_(torch.empty_like(module.running_mean).uniform_(-0.2, 0.2))
            module.running_var.mul_(torch.empty_like(module.running_var).uniform_(0.7, 1.4))


def dump(out_dir, name="hrnet_w18", batch=2, size=224):
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(batch, 3, size, size)
    _randomize_bn(model, torch, torch.randn(8, 3, size, size))
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)  # logits of magnitude ~10-100 rather than ~1
        logits = model(x).numpy()
    os.makedirs(out_dir, exist_ok=True)
    checkpoint = os.path.join(out_dir, f"{name}.pth")
    torch.save(model.state_dict(), checkpoint)
    np.savez(os.path.join(out_dir, f"{name}_reference.npz"), input=x.numpy().transpose(0, 2, 3, 1), logits=logits)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"model": name, "params": params, "checkpoint": checkpoint, "torch": torch.__version__}))


def dump_tiny(out_dir, batch=2):
    import torch
    from timm.models.hrnet import HighResolutionNet

    torch.manual_seed(0)
    model = HighResolutionNet(TINY_CFG, num_classes=TINY_CLASSES).eval()
    x = torch.randn(batch, 3, TINY_SIZE, TINY_SIZE)
    _randomize_bn(model, torch, torch.randn(8, 3, TINY_SIZE, TINY_SIZE), skip=HEAD_PREFIXES)
    state = model.state_dict()
    bn_params = {
        f"{n}.{f}" for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) for f in _BN_RANGES
    }
    spec = [
        [k, list(v.shape), "bn" if k in bn_params else ("dense" if k.startswith("classifier.") else "conv")]
        for k, v in state.items()
        if k.startswith(HEAD_PREFIXES) and not k.endswith("num_batches_tracked")
    ]
    head = head_tensors(spec)
    backbone = {
        k: (v.half() if v.is_floating_point() else v) for k, v in state.items() if not k.startswith(HEAD_PREFIXES)
    }
    # The model runs exactly what the files hold: the float16 backbone (in float32) and the numpy head.
    model.load_state_dict({**backbone, **{k: torch.from_numpy(v) for k, v in head.items()}}, strict=False)
    model.float()
    with torch.no_grad():
        logits = model(x).numpy()
    os.makedirs(out_dir, exist_ok=True)
    checkpoint = os.path.join(out_dir, "timm_hrnet_tiny.pth")
    torch.save(backbone, checkpoint)
    np.savez(
        os.path.join(out_dir, "timm_hrnet_tiny.npz"),
        input=x.numpy().transpose(0, 2, 3, 1),
        logits=logits,
        head_spec=np.array(json.dumps(spec)),
    )
    print(json.dumps({"checkpoint": checkpoint, "bytes": os.path.getsize(checkpoint), "torch": torch.__version__}))


def compare(out_dir, name="hrnet_w18"):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from configs import scalenas_cls
    from scalenas_tf.experiment import Experiment
    from scalenas_tf.families.scalenas import torch_import
    from scalenas_tf.models import extraction
    from scalenas_tf.models import torch_checkpoint
    from scalenas_tf.models import weight_import

    reference = np.load(os.path.join(out_dir, f"{name}_reference.npz"))
    state = torch_checkpoint.load_state_dict(os.path.join(out_dir, f"{name}.pth"))
    width, depth = int(name.split("_")[1][1:]), 4
    config = scalenas_cls.get_config(f"w{width}")
    if name.endswith("_small_v2"):  # fewer modules, 2 layer1 Bottlenecks, 2 BasicBlocks per branch
        config.search_space.update(num_modules=(1, 3, 2), layer1_blocks=2)
        depth = 2
    experiment = Experiment.from_config(config)
    supernet = experiment.build_supernet()
    arch = experiment.space.hrnet(depth)
    imported = torch_import.timm_hrnet(state, supernet, arch)
    weight_import.apply(supernet, imported)
    x = reference["input"]
    ours = np.asarray(supernet(x, arch=arch, training=False))
    static = extraction.extract_subnet(supernet, arch, input_size=x.shape[1:3])
    extracted = np.asarray(static(x, training=False))
    expected = reference["logits"]
    print(
        json.dumps(
            {
                "model": name,
                "tensors_mapped": imported.num_tensors,
                "unmapped_source": len(imported.unmapped_source),
                "missing": len(imported.missing),
                "supernet_max_abs_diff": float(np.max(np.abs(ours - expected))),
                "extracted_max_abs_diff": float(np.max(np.abs(extracted - expected))),
                "max_abs_logit": float(np.max(np.abs(expected))),
                "top1_agreement": float(np.mean(ours.argmax(-1) == expected.argmax(-1))),
            }
        )
    )


if __name__ == "__main__":
    command, path, *model = sys.argv[1:]  # an optional timm model name: hrnet_w18 (default), hrnet_w32, ...
    {"dump": dump, "dump_tiny": dump_tiny, "compare": compare}[command](path, *model)

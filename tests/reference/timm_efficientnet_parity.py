r"""Forward parity of the `efficientnet_b0` preset against timm's `efficientnet_b0` (an independent implementation).

Not a pytest module: timm needs torch, which is not a dependency of this library. Run it in two
environments, a scratch one with torch + timm and the project's own:

  /path/to/scratch/python tests/reference/timm_efficientnet_parity.py dump /tmp/b0.npz
  python tests/reference/timm_efficientnet_parity.py compare /tmp/b0.npz

`dump` builds timm's model with random weights and random BN statistics (so every weight matters),
runs a fixed random batch in eval mode and saves weights, input and logits. `compare` copies the
weights into the Keras model of the `efficientnet_b0` preset (configs/scalenet.py:efficientnet_b0
conventions: swish, SE from the block input with a sigmoid gate, PyTorch padding) and prints the
max abs difference of the logits as one JSON line.
"""

import json
import sys

import numpy as np


def dump(path, name="efficientnet_b0", batch=2, size=224):
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
        x = torch.randn(batch, 3, size, size)
        logits = model(x).numpy()
    arrays = {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    np.savez(path, __input=x.numpy().transpose(0, 2, 3, 1), __logits=logits, **arrays)
    print(json.dumps({"model": name, "params": sum(p.numel() for p in model.parameters()), "saved": path}))


def _conv(w):
    return w.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)


def _depthwise(w):
    return w.transpose(2, 3, 0, 1)  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)


def _bn(arrays, prefix):
    return [arrays[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def compare(path):
    import os

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from configs import scalenet
    from scalenas_tf import registry
    from scalenas_tf.families.scalenet import network

    arrays = dict(np.load(path))
    config = scalenet.get_config("efficientnet_b0")
    fields = dict(config.search_space)
    fields.pop("type")
    space = registry.get("scalenet").build_space(fields) if "scalenet" in registry.names() else None
    if space is None:
        from scalenas_tf.families.scalenet.space import ScaleNetSpace

        space = ScaleNetSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    net = space.generate(space.named("efficientnet_b0"))
    model = network.build_network(space, net)
    weights = {
        "stem_conv": [_conv(arrays["conv_stem.weight"])],
        "stem_bn": _bn(arrays, "bn1"),
        "head_conv": [_conv(arrays["conv_head.weight"])],
        "head_bn": _bn(arrays, "bn2"),
        "classifier": [arrays["classifier.weight"].T, arrays["classifier.bias"]],
    }
    for block in net.blocks:
        ours, theirs = network.block_name(block), f"blocks.{block.stage}.{block.slot}"
        if block.has_expand:  # timm InvertedResidual: conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3
            weights[f"{ours}_expand"] = [_conv(arrays[f"{theirs}.conv_pw.weight"])]
            weights[f"{ours}_expand_bn"] = _bn(arrays, f"{theirs}.bn1")
            dw_bn, project, project_bn = "bn2", "conv_pwl", "bn3"
        else:  # DepthwiseSeparableConv: conv_dw, bn1, se, conv_pw, bn2
            dw_bn, project, project_bn = "bn1", "conv_pw", "bn2"
        weights[f"{ours}_dw"] = [_depthwise(arrays[f"{theirs}.conv_dw.weight"])]
        weights[f"{ours}_dw_bn"] = _bn(arrays, f"{theirs}.{dw_bn}")
        for side in ("reduce", "expand"):
            key = f"{theirs}.se.conv_{side}"
            weights[f"{ours}_se_{side}"] = [_conv(arrays[f"{key}.weight"]), arrays[f"{key}.bias"]]
        weights[f"{ours}_project"] = [_conv(arrays[f"{theirs}.{project}.weight"])]
        weights[f"{ours}_project_bn"] = _bn(arrays, f"{theirs}.{project_bn}")
    loaded = 0
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(weights.pop(layer.name))
            loaded += 1
    if weights:
        raise ValueError(f"timm weights without a Keras layer: {sorted(weights)}")
    logits = np.asarray(model(arrays["__input"], training=False))
    diff = float(np.max(np.abs(logits - arrays["__logits"])))
    scale = float(np.max(np.abs(arrays["__logits"])))
    agree = float(np.mean(logits.argmax(-1) == arrays["__logits"].argmax(-1)))
    print(json.dumps({"layers_loaded": loaded, "max_abs_diff": diff, "max_abs_logit": scale, "top1_agreement": agree}))


if __name__ == "__main__":
    command, path = sys.argv[1], sys.argv[2]
    dump(path) if command == "dump" else compare(path)

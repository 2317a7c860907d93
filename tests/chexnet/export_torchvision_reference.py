#!/usr/bin/env python3
"""Writes the torchvision reference files kolo's CheXNet model tests compare against.

Usage: export_torchvision_reference.py OUT_DIR

For densenet121 and vgg16 (num_classes=14, randomly initialised with a fixed
seed; batch norm statistics and biases perturbed so that every tensor matters):
  <arch>.pt            torch.save(model.state_dict(), f), the format users have
  <arch>_input.bin     a fixed input batch, float32 little-endian
  <arch>_logits.bin    model.eval() logits for it, float32 little-endian
  <arch>.json          shapes, named_parameters() and named_buffers() names and
                       shapes in order, state_dict key order, parameter count
Variants of the densenet121 file for the loader's special cases:
  densenet121_imagenet.pt       a 1000-class (ImageNet-head) model
  densenet121_legacy.pth        legacy (pre-1.6, non-zip) format, legacy key
                                names (norm.1, conv.2), no num_batches_tracked:
                                the shape of torchvision's downloadable files
  densenet121_checkpoint.pth.tar  a training checkpoint dict (protocol 4) whose
                                "state_dict" has DataParallel "module." keys
  densenet121_chexnet_release.pth.tar  shaped like the original CheXNet
                                release (arnoweng/CheXNet model.pth.tar): legacy
                                format and names, a checkpoint dict, keys
                                "module.densenet121.*", head in
                                nn.Sequential(Linear, Sigmoid)
  unsupported_opcode.pt         a dict holding a set (pickle opcode EMPTY_SET)
  whole_module.pt               torch.save of an nn.Module, not a state_dict

Exits with 77 (CTest's skip code here) when torch or torchvision is missing.
Never used at run time: only the tests need Python.
"""

import collections
import json
import os
import re
import sys

try:
    import torch
    import torchvision
except ImportError as error:
    print(f"SKIP: python3 with torch and torchvision is needed for the reference files ({error})")
    sys.exit(77)

INPUT_SHAPES = {
    "densenet121": (2, 3, 64, 64),
    "vgg16": (2, 3, 32, 32),
}


def perturb(model, generator):
    """Random batch-norm statistics and biases: a wrong name would show in the logits."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.num_batches_tracked.fill_(7)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
                module.bias.normal_(0.0, 0.1, generator=generator)


def write_floats(path, tensor):
    tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(path)


def export(arch, out_dir):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = getattr(torchvision.models, arch)(num_classes=14)
    perturb(model, generator)
    model.eval()
    images = torch.randn(*INPUT_SHAPES[arch], generator=generator)
    with torch.no_grad():
        logits = model(images)
    state = model.state_dict()
    torch.save(state, os.path.join(out_dir, f"{arch}.pt"))
    write_floats(os.path.join(out_dir, f"{arch}_input.bin"), images)
    write_floats(os.path.join(out_dir, f"{arch}_logits.bin"), logits)
    info = {
        "input_shape": list(images.shape),
        "logits_shape": list(logits.shape),
        "parameters": [[n, list(p.shape)] for n, p in model.named_parameters()],
        "buffers": [[n, list(b.shape)] for n, b in model.named_buffers()],
        "state_dict_keys": list(state.keys()),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    with open(os.path.join(out_dir, f"{arch}.json"), "w") as f:
        json.dump(info, f, indent=1)
    return state


def legacy_name(key):
    # The inverse of torchvision's rename: denselayerN.norm1.weight -> norm.1.weight.
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


def export_variants(state, out_dir):
    torch.manual_seed(2)
    imagenet = torchvision.models.densenet121()
    torch.save(imagenet.state_dict(), os.path.join(out_dir, "densenet121_imagenet.pt"))

    legacy = {legacy_name(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in legacy)
    torch.save(legacy, os.path.join(out_dir, "densenet121_legacy.pth"),
               _use_new_zipfile_serialization=False)

    parallel = collections.OrderedDict(("module." + k, v) for k, v in state.items())
    parallel._metadata = collections.OrderedDict(
        ("module." + k if k else "module", v) for k, v in state._metadata.items())
    tiny = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(tiny.parameters(), lr=1e-3)
    tiny(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    checkpoint = {"epoch": 3, "arch": "densenet121", "state_dict": parallel,
                  "best_loss": 0.25, "optimizer": optimizer.state_dict()}
    torch.save(checkpoint, os.path.join(out_dir, "densenet121_checkpoint.pth.tar"),
               pickle_protocol=4)

    release = collections.OrderedDict()
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        k = k.replace("classifier.", "classifier.0.")
        release["module.densenet121." + legacy_name(k)] = v
    torch.save({"epoch": 100, "arch": "DenseNet121", "state_dict": release,
                "best_prec1": 0.0},
               os.path.join(out_dir, "densenet121_chexnet_release.pth.tar"),
               _use_new_zipfile_serialization=False)

    torch.save({"weight": torch.zeros(2), "labels": {1, 2}},
               os.path.join(out_dir, "unsupported_opcode.pt"), pickle_protocol=4)
    torch.save(torch.nn.Linear(2, 2), os.path.join(out_dir, "whole_module.pt"))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    state = export("densenet121", out_dir)
    export("vgg16", out_dir)
    export_variants(state, out_dir)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: "
          f"reference files written to {out_dir}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the Grad-CAM and ten-crop references kolo's clinical tests compare against.

Usage: export_clinical_reference.py REFERENCE_DIR

Reads densenet121.pt and vgg16.pt (written into REFERENCE_DIR by
export_torchvision_reference.py), loads them into torchvision's models and
writes, for ARCH in densenet121, vgg16:
  gradcam_ARCH_input.bin          one input image [1, 3, S, S]
  gradcam_ARCH_maps.bin           Grad-CAM of all 14 findings [14, h, w]
  gradcam_ARCH_upsampled.bin      the same, resized to the input [14, S, S]
  gradcam_ARCH_probabilities.bin  sigmoid of the logits [14]
  tencrop_ARCH_input.bin          two resized images [2, 3, R, R]
  tencrop_ARCH_probabilities.bin  torchvision TenCrop averaged [2, 14]
  clinical.json                   the shapes
all float32 little-endian. Grad-CAM here follows Selvaraju et al. directly on
torchvision's modules: the target layer's output A stays in the autograd
graph of the whole forward pass, torch.autograd.grad gives dlogit/dA, alpha = mean of dlogit/dA over positions, map = ReLU(sum_k alpha_k A_k).

Exits with 77 (CTest's skip code here) when torch or torchvision is missing.
"""

import json
import os
import sys

try:
    import torch
    import torch.nn.functional as F
    import torchvision
    import torchvision.transforms.functional as TF
except ImportError as error:
    print(f"SKIP: python3 with torch and torchvision is needed ({error})")
    sys.exit(77)

# Input side for Grad-CAM, ten-crop crop side and resize side per arch.
SIZES = {"densenet121": (96, 64, 73), "vgg16": (64, 32, 37)}


def write_floats(path, tensor):
    tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(path)


def split_forward(arch, model, images):
    """The target layer's output and the logits computed from it."""
    if arch == "densenet121":
        target = F.relu(model.features(images))
        logits = model.classifier(torch.flatten(F.adaptive_avg_pool2d(target, (1, 1)), 1))
    else:
        target = model.features[:30](images)  # up to the ReLU after the last conv
        pooled = model.avgpool(model.features[30](target))
        logits = model.classifier(torch.flatten(pooled, 1))
    return target, logits


def grad_cam(arch, model, image):
    target, logits = split_forward(arch, model, image)
    with torch.no_grad():
        assert torch.allclose(logits, model(image), atol=1e-5), "split forward != model(x)"
    maps = []
    for c in range(logits.shape[1]):
        gradient, = torch.autograd.grad(logits[0, c], target, retain_graph=True)
        alpha = gradient[0].mean(dim=(1, 2))
        maps.append(F.relu((alpha[:, None, None] * target[0]).sum(0)).detach())
    return torch.sigmoid(logits[0]).detach(), torch.stack(maps)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ref_dir = sys.argv[1]
    torch.set_num_threads(1)
    info = {}
    for arch, (side, crop, resized) in SIZES.items():
        model = getattr(torchvision.models, arch)(num_classes=14)
        model.load_state_dict(torch.load(os.path.join(ref_dir, f"{arch}.pt")))
        model.eval()
        generator = torch.Generator().manual_seed(11)
        image = torch.randn(1, 3, side, side, generator=generator)
        probabilities, maps = grad_cam(arch, model, image)
        upsampled = F.interpolate(maps[None], size=(side, side), mode="bilinear",
                                  align_corners=False)[0]
        write_floats(os.path.join(ref_dir, f"gradcam_{arch}_input.bin"), image)
        write_floats(os.path.join(ref_dir, f"gradcam_{arch}_maps.bin"), maps)
        write_floats(os.path.join(ref_dir, f"gradcam_{arch}_upsampled.bin"), upsampled)
        write_floats(os.path.join(ref_dir, f"gradcam_{arch}_probabilities.bin"), probabilities)

        batch = torch.randn(2, 3, resized, resized, generator=generator)
        with torch.no_grad():
            crops = torch.stack([torch.stack(TF.ten_crop(img, crop)) for img in batch])
            scores = torch.sigmoid(model(crops.view(-1, 3, crop, crop)))
            averaged = scores.view(2, 10, -1).mean(1)
        write_floats(os.path.join(ref_dir, f"tencrop_{arch}_input.bin"), batch)
        write_floats(os.path.join(ref_dir, f"tencrop_{arch}_probabilities.bin"), averaged)
        info[arch] = {"gradcam_input_shape": list(image.shape),
                      "gradcam_maps_shape": list(maps.shape),
                      "nonzero_maps": int((maps.flatten(1).max(1).values > 0).sum()),
                      "tencrop_input_shape": list(batch.shape),
                      "tencrop_crop": crop}
    with open(os.path.join(ref_dir, "clinical.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"Grad-CAM and ten-crop references written to {ref_dir}: {info}")


if __name__ == "__main__":
    main()

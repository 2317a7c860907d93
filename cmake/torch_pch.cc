// Carries the precompiled <torch/torch.h> that kolo's LibTorch targets reuse.

"""The reference loader's per-sample work, timed on the benchmark's files: np.load, keep 10
B-scans at floor(linspace(0, D-1, 10)), torch bilinear resize to 224, per-slice z-score; SLO
resized to 224 and ImageNet-normalised. Prints samples/s (one torch thread, as one loader worker).
Usage: python reference_loader.py DATA_DIR"""
import glob
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
files = sorted(glob.glob(os.path.join(sys.argv[1], "train", "*.npz")))
mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def load(path):
    data = np.load(path)
    oct_ = data["oct_bscans"]
    idx = np.floor(np.linspace(0, oct_.shape[0] - 1, 10)).astype(int)
    slices = torch.from_numpy(oct_[idx].astype(np.float32)).unsqueeze(1)
    slices = F.interpolate(slices, size=(224, 224), mode="bilinear", align_corners=False).squeeze(1)
    flat = slices.view(10, -1)
    slices = ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-6)).view(10, 224, 224)
    slo = torch.from_numpy(data["slo_fundus"].astype(np.float32) / 255.0)[None, None]
    slo = F.interpolate(slo, size=(224, 224), mode="bilinear", align_corners=False)[0].expand(3, -1, -1)
    return slices, (slo - mean) / std


for path in files[:2]:
    load(path)  # warm-up
best = float("inf")
for _ in range(5):
    start = time.perf_counter()
    for path in files:
        load(path)
    best = min(best, time.perf_counter() - start)
print(f"reference (numpy + torch, 1 thread): {len(files) / best:.1f} samples/s")

"""One training step of the two-modality FairVision model in PyTorch, with the shapes and
layers of `multifair`'s (ViT fundus encoder; ViT per OCT slice, the grey slice on three
channels, slice positions and a 2-layer aggregator; projections; fusion transformer; the
MultiFair head; auxiliary heads on detached features; cross-entropy; clipping to 0.8 over the
model; AdamW for the model and for the heads), random weights and inputs. Prints the same JSON
fields as `multifair time-step`, for `just bench-paper-step`.

    python benches/paper_step.py --model paper --batch 2 --steps 2 --threads 2
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = {
    # hidden, layers, heads, mlp, patch, image, slices, fusion (p, heads, layers), eps, dropout
    "paper": dict(d=768, layers=12, heads=12, mlp=3072, patch=16, image=224, slices=10,
                  fusion=(128, 4, 2), eps=1e-12, dropout=0.0, slice_channels=3),
    "tiny": dict(d=64, layers=2, heads=4, mlp=128, patch=8, image=32, slices=8,
                 fusion=(64, 4, 1), eps=1e-6, dropout=0.1, slice_channels=1),
}


class Vit(nn.Module):
    def __init__(self, s, channels, image):
        super().__init__()
        n = (image // s["patch"]) ** 2
        self.patch = nn.Conv2d(channels, s["d"], s["patch"], s["patch"])
        self.cls = nn.Parameter(torch.randn(1, 1, s["d"]) * 0.02)
        self.position = nn.Parameter(torch.randn(1, n + 1, s["d"]) * 0.02)
        layer = nn.TransformerEncoderLayer(s["d"], s["heads"], s["mlp"], s["dropout"], "gelu",
                                           layer_norm_eps=s["eps"], batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, s["layers"], enable_nested_tensor=False)
        self.norm = nn.LayerNorm(s["d"], eps=s["eps"])
        self.pooler = nn.Linear(s["d"], s["d"])

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.position
        return torch.tanh(self.pooler(self.norm(self.encoder(x))[:, 0]))


class Model(nn.Module):
    def __init__(self, s, image, slices):
        super().__init__()
        d, (p, fh, fl) = s["d"], s["fusion"]
        self.fundus = Vit(s, 3, image)
        self.slice = Vit(s, s["slice_channels"], image)
        self.slice_channels = s["slice_channels"]
        self.slice_position = nn.Parameter(torch.zeros(1, slices, d))
        agg = nn.TransformerEncoderLayer(d, 4, 4 * d, 0.1, "gelu", batch_first=True)
        self.aggregator = nn.TransformerEncoder(agg, 2, enable_nested_tensor=False)
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(d, p), nn.LayerNorm(p), nn.Dropout(0.1)) for _ in range(2))
        fusion = nn.TransformerEncoderLayer(p, fh, 4 * p, 0.1, "gelu", batch_first=True)
        self.fusion = nn.TransformerEncoder(fusion, fl, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(p, p), nn.LayerNorm(p), nn.GELU(), nn.Dropout(0.1),
                                  nn.Linear(p, 2))

    def forward(self, fundus, oct):
        b, s, h, w = oct.shape
        slices = oct.reshape(b * s, 1, h, w).repeat(1, self.slice_channels, 1, 1)
        per_slice = self.slice(slices).reshape(b, s, -1) + self.slice_position
        tokens = [self.projections[0](self.fundus(fundus)),
                  self.projections[1](self.aggregator(per_slice)[:, 0])]
        fused = self.fusion(torch.stack(tokens, 1))[:, 0]
        return self.head(fused), tokens


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="paper", choices=SIZES)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--slices", type=int)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    s = SIZES[args.model]
    image, slices = args.image_size or s["image"], args.slices or s["slices"]
    model = Model(s, image, slices)
    p = s["fusion"][0]
    aux = nn.ModuleList(nn.Sequential(nn.Linear(p, p), nn.ReLU(), nn.Dropout(0.1), nn.Linear(p, 2))
                        for _ in range(2))
    lr = 3e-5 if args.model == "paper" else 3e-4
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=6e-3)
    aux_optimizer = torch.optim.AdamW(aux.parameters(), lr=lr / 3, weight_decay=3e-3)
    fundus = torch.randn(args.batch, 3, image, image)
    oct = torch.randn(args.batch, slices, image, image)
    labels = torch.arange(args.batch) % 2

    def step():
        optimizer.zero_grad(set_to_none=True)
        aux_optimizer.zero_grad(set_to_none=True)
        logits, tokens = model(fundus, oct)
        loss = F.cross_entropy(logits, labels)
        aux_loss = sum(F.cross_entropy(head(t.detach()), labels) for head, t in zip(aux, tokens))
        (loss + aux_loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.8)
        optimizer.step()
        aux_optimizer.step()
        return loss.item()

    start = time.perf_counter()
    step()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        last = step()
    per_step = (time.perf_counter() - start) / max(args.steps, 1)
    print(json.dumps({
        "model": args.model, "method": "erm", "device": f"pytorch-cpu ({args.threads} threads)",
        "batch": args.batch, "image_size": image, "slices": slices, "steps": args.steps,
        "warmup_seconds": warmup, "seconds_per_step": per_step,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "last_loss": last,
    }, indent=2))


if __name__ == "__main__":
    main()

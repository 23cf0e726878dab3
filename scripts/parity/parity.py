"""Parity experiment: the authors' MultiFair code and ours, side by side, on the same synthetic
FairVision-format data, the same small ViT (the same initial weights), the same settings and
attribute, several seeds; prints both implementations' validation AUC per epoch and test AUC /
ES-AUC (gender) as a table.

    python scripts/parity/parity.py --original PATH/TO/MultiFair --multifair target/debug/multifair

PATH/TO/MultiFair is a checkout of the authors' repository (Zubair063/MultiFair); its code is
imported from there, never copied here. It needs torch, torchvision, transformers,
scikit-learn, tqdm, matplotlib and Pillow (`scripts/parity/setup.sh` installs them beside the
libtorch environment). What the harness changes around the original code, and nothing else:

- its ViTs: `ViTModel.from_pretrained` loads a small ViT written here (hidden 64, 2 layers,
  4 heads, MLP 128, 32 px, patch 8; the same folder our runs load as `--weights-dir`), instead
  of downloading `google/vit-base-patch16-224-in21k`;
- its fundus `Resize((224, 224))` resizes to the data's 32 px, and its OCT transform keeps
  8 slices at 32 px;
- `libauc` (imported, never called) is replaced by an empty module;
- ERM: the original has no ERM script, so its ERM rows train the original's model on the
  original's loaders with the original's optimizer, loss, clipping and selection, without the
  modulation (a loop written here).

Ours runs `multifair train --profile paper` (the original's protocol) with the same weights
folder, `--set image_size=32 --set slices=8`.
"""
import argparse
import contextlib
import io
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
import types

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
# The original asks for CUDA autocast and a CUDA gradient scaler; on the CPU both disable
# themselves with a warning per step.
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=".*CUDA is not available.*")
warnings.filterwarnings("ignore", message=".*torch.cuda.amp.GradScaler is enabled.*")

SIZE, SLICES, EPOCHS = 32, 8, 10


def small_vit(folder):
    from transformers import ViTConfig, ViTModel

    if os.path.exists(os.path.join(folder, "model.safetensors")):
        return
    torch.manual_seed(1234)
    config = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, image_size=SIZE, patch_size=8,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ViTModel(config).save_pretrained(folder)


def es_auc(scores, labels, groups):
    from sklearn.metrics import roc_auc_score

    overall = roc_auc_score(labels, scores)
    gaps = 0.0
    for g in np.unique(groups):
        mask = groups == g
        if len(np.unique(labels[mask])) == 2:
            gaps += abs(overall - roc_auc_score(labels[mask], scores[mask]))
    return overall, overall / (1 + gaps)


def original_modules(checkout, vit_folder):
    """The original's FairVision modules, imported from the checkout, with the changes above."""
    sys.modules.setdefault("libauc", types.ModuleType("libauc"))
    metrics = types.ModuleType("libauc.metrics")
    metrics.auc_roc_score = None
    sys.modules["libauc.metrics"] = metrics
    sys.path.insert(0, os.path.join(checkout, "implementation", "FairVision"))
    import oct_fundus_dataloader as loader
    import multifair_models as models
    import multiFair_FairVision as training
    from torchvision import transforms
    from transformers import ViTModel

    class Resize(transforms.Resize):
        def __init__(self, size, *args, **kwargs):
            super().__init__((SIZE, SIZE) if tuple(size) == (224, 224) else size, *args, **kwargs)

    class SmallViT(ViTModel):
        @classmethod
        def from_pretrained(cls, name, *args, **kwargs):
            return ViTModel.from_pretrained(vit_folder)

    loader.transforms.Resize = Resize
    models.ViTModel = SmallViT
    return loader, models, training


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def evaluate(model, data_loader, raw):
    """Scores, labels and groups: the raw class-1 logit (`raw`, what the original's validation
    reads in `eval_glaucoma`) or softmax's class-1 probability (its test evaluation,
    `fair_metrics.evaluate_test_model`)."""
    model.eval()
    scores, labels, groups = [], [], []
    with torch.no_grad():
        for fundus, oct, demo, y in data_loader:
            logits, _ = model(fundus, oct)
            score = logits[:, 1] if raw else torch.softmax(logits, 1)[:, 1]
            scores.append(score.numpy())
            labels.append(y.numpy())
            groups.append(demo.squeeze(1).numpy())
    return np.concatenate(scores), np.concatenate(labels), np.concatenate(groups)


def run_original(checkout, vit_folder, data, method, seed, out):
    loader, models, training = original_modules(checkout, vit_folder)
    seed_everything(seed)
    train, val, test = loader.build_oct_fundus_dataloaders(
        data_root=data, batch_size=32, num_workers=0, pin_memory=False, demographic_key="male",
        transform_oct=loader.OCTTransform(target_size=(SIZE, SIZE), num_slices=SLICES))
    path = os.path.join(out, f"original-{method}-{seed}.pth")
    if method == "multifair_ref":
        # Its main()'s arguments (multiFair_FairVision.py, main()). It prints and skips a batch
        # that raises: those lines are counted.
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            model, history = training.MultiFair(
            train, val, num_epochs=EPOCHS, lr=3e-5, cls_lr=1e-5, proj_dim=128, num_heads=4,
                layers=2, cls_layers=1, rou=1.2, lambda_gm=0.15, fairness_threshold=0.04,
                fairness_coeff=0.5, fairness_modulation=0.3, clip=0.8, relu_dropout=0.1,
                embed_dropout=0.2, res_dropout=0.1, out_dropout=0.1, attn_dropout=0.2,
                model_save_path=path)
        skipped = printed.getvalue().count("Error in training batch")
        curve = history["val_auc"]
    else:
        from sklearn.metrics import roc_auc_score

        model = models.GlaucomaViTModel(output_dim=2, proj_dim=128, fusion_heads=4,
                                        fusion_layers=2, dropout=0.1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=6e-3)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min", patience=10,
                                                               factor=0.1)
        best, curve, skipped = -1.0, [], 0
        for _ in range(EPOCHS):
            model.train()
            for fundus, oct, _, y in train:
                optimizer.zero_grad()
                logits, _ = model(fundus, oct)
                torch.nn.functional.cross_entropy(logits, y).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.8)
                optimizer.step()
            scores, labels, _ = evaluate(model, val, raw=True)
            model.eval()
            with torch.no_grad():
                val_loss = sum(torch.nn.functional.cross_entropy(model(f, o)[0], y).item()
                               for f, o, _, y in val) / len(val)
            scheduler.step(val_loss)
            auc = roc_auc_score(labels, scores)
            curve.append(auc)
            if auc > best:
                best = auc
                torch.save(model.state_dict(), path)
    model.load_state_dict(torch.load(path))
    auc, es = es_auc(*evaluate(model, test, raw=False))
    return {"val_auc": [float(a) for a in curve], "test_auc": auc, "test_es_auc": es,
            "skipped_batches": skipped}


def run_ours(binary, weights, data, method, seed, out, fast):
    folder = os.path.join(out, f"ours-{method}-{seed}")
    subprocess.run([binary, "train", "--dataset", "fairvision", "--data-dir", data, "--method",
                    method, "--profile", "paper", "--weights-dir", weights, "--seed", str(seed),
                    "--set", f"image_size={SIZE}", "--set", f"slices={SLICES}", "--set",
                    "workers=1", "--out", folder]
                   + ([] if fast else ["--set", "dropout_mask=sampled", "--set", "linear_op=burn"]),
                   check=True, stdout=subprocess.DEVNULL)
    # The validation AUC of the raw class-1 logit, which the paper profile selects on.
    curve = [json.loads(line)["val"]["auc_logit"]
             for line in open(os.path.join(folder, "metrics.jsonl")) if '"val"' in line]
    test = json.load(open(os.path.join(folder, "test.json")))
    gender = test["attributes"]["gender"]
    return {"val_auc": curve, "test_auc": test["auc"], "test_es_auc": gender["es_auc"]}


def permutation_p(a, b):
    """Two-sided p of the difference of means under exchangeable labels: the share of all ways
    to split the pooled runs into groups of len(a) and len(b) whose difference is at least as
    large as the observed one (seed noise alone explains a difference with a large p)."""
    pooled, observed = a + b, abs(statistics.mean(a) - statistics.mean(b))
    splits = list(itertools.combinations(range(len(pooled)), len(a)))
    extreme = 0
    for chosen in splits:
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        extreme += abs(statistics.mean(x) - statistics.mean(y)) >= observed - 1e-12
    return extreme / len(splits)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--original", required=True, help="a checkout of Zubair063/MultiFair")
    parser.add_argument("--multifair", required=True, help="the multifair binary")
    parser.add_argument("--out", default="results/parity")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=["original", "ours"])
    parser.add_argument("--threads", type=int,
                        help="torch's threads for the original (default: torch's own choice)")
    parser.add_argument("--fast", action="store_true",
                        help="ours with the engine's faster defaults (hashed dropout masks, fused "
                             "linear layers) instead of burn's dropout and linear layers, which "
                             "docs/fidelity.md's table was measured with")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = os.path.abspath(args.out)
    data, weights = os.path.join(out, "data"), os.path.join(out, "weights")
    os.makedirs(out, exist_ok=True)
    vit = os.path.join(weights, "vit-base-patch16-224-in21k")
    small_vit(vit)
    if not os.path.exists(os.path.join(data, "meta.json")):
        subprocess.run([args.multifair, "generate", "--kind", "fairvision", "--out", data,
                        "--seed", "0", "--size", str(SIZE), "--depth", "16"], check=True)
    results_path = os.path.join(out, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    for impl in ["original", "ours"]:
        if args.only and impl != args.only:
            continue
        for method in ["erm", "multifair_ref"]:
            for seed in range(args.seeds):
                key = f"{impl}/{method}/{seed}"
                if key in results:
                    continue
                print(f"running {key}", file=sys.stderr, flush=True)
                start = time.perf_counter()
                if impl == "original":
                    results[key] = run_original(args.original, vit, data, method, seed, out)
                else:
                    results[key] = run_ours(args.multifair, weights, data, method, seed, out,
                                            args.fast)
                # Wall time per epoch, evaluation included (ours: a process of its own, from
                # start to its test metrics).
                results[key]["seconds_per_epoch"] = (time.perf_counter() - start) / EPOCHS
                json.dump(results, open(results_path, "w"), indent=1)
    print("| implementation | method | test AUC | test ES-AUC (gender) | validation AUC by epoch (mean) |")
    print("|---|---|---|---|---|")
    for impl in ["original", "ours"]:
        for method in ["erm", "multifair_ref"]:
            runs = [v for k, v in results.items() if k.startswith(f"{impl}/{method}/")]
            if not runs:
                continue
            def show(key):
                values = [r[key] for r in runs]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                return f"{statistics.mean(values):.3f} ± {spread:.3f}"
            epochs = min(len(r["val_auc"]) for r in runs)
            curve = " ".join(f"{statistics.mean(r['val_auc'][e] for r in runs):.2f}"
                             for e in range(epochs))
            print(f"| {impl} | {method} | {show('test_auc')} | {show('test_es_auc')} | {curve} |")
    print("\n| method | metric | ours − original | exact permutation p (two-sided) |")
    print("|---|---|---|---|")
    for method in ["erm", "multifair_ref"]:
        for key in ["test_auc", "test_es_auc"]:
            a, b = ([v[key] for k, v in results.items() if k.startswith(f"{impl}/{method}/")]
                    for impl in ["ours", "original"])
            if a and b:
                print(f"| {method} | {key} | {statistics.mean(a) - statistics.mean(b):+.3f} "
                      f"| {permutation_p(a, b):.2f} |")
    print("\n| method | seconds per epoch, ours | original | ours / original |")
    print("|---|---|---|---|")
    for method in ["erm", "multifair_ref"]:
        a, b = ([v["seconds_per_epoch"] for k, v in results.items()
                 if k.startswith(f"{impl}/{method}/") and "seconds_per_epoch" in v]
                for impl in ["ours", "original"])
        if a and b:
            print(f"| {method} | {statistics.mean(a):.2f} | {statistics.mean(b):.2f} "
                  f"| {statistics.mean(a) / statistics.mean(b):.2f} |")
    skipped = sum(r.get("skipped_batches", 0) for r in results.values())
    print(f"\nbatches the original skipped after an error: {skipped}")


if __name__ == "__main__":
    main()

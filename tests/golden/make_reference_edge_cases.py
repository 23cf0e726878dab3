"""Edge cases of the reference step, computed from the original MultiFair training function's
formulas (FairVision, two groups): a batch without one group and a batch where a group has a
single sample. Writes reference-edge-cases.json beside this file; pure Python, no packages.

The rules these cases pin down: every declared group's EMA is updated each step (0.5 when the
batch cannot score it), the mean and the gap run over every declared group, and a fused group
AUC needs more than one sample (without both groups scored there is no fairness priority)."""
import json
import math
import os


def auc(scores, labels):
    """ROC-AUC with ties counted half; None without both classes."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def surrogate(scores, labels):
    """1 - mean log(1 + exp(-(s_i - s_j))) over positive i, negative j; 0.5 unless the group
    has more than one sample and both classes."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if len(scores) < 2 or not pos or not neg:
        return 0.5
    loss = sum(math.log1p(math.exp(-(p - n))) for p in pos for n in neg) / (len(pos) * len(neg))
    return 1.0 - loss


def step(hp, aux, fused, labels, groups, auc_prev, ema):
    codes = [0, 1]
    batch_auc = [auc(p, labels) if auc(p, labels) is not None else prev for p, prev in zip(aux, auc_prev)]
    diff = [a - p for a, p in zip(batch_auc, auc_prev)]
    s = sum(abs(d) for d in diff) + 1e-8
    coeff = [(s - abs(d)) / s for d in diff]
    ema = [dict(e) for e in ema]
    for m, probs in enumerate(aux):
        for g in codes:
            sel = [(p, y) for p, y, c in zip(probs, labels, groups) if c == g]
            value = surrogate([p for p, _ in sel], [y for _, y in sel])
            ema[m][g] = hp["ema"] * ema[m][g] + (1 - hp["ema"]) * value
    mean = [sum(e[g] for g in codes) / len(codes) for e in ema]
    gap = sum(abs(e[g] - mean[m]) for m, e in enumerate(ema) for g in codes) / (len(ema) * len(codes))
    factors = [{g: 1 + hp["beta"] * (mean[m] - e[g]) / max(1e-4, hp["tau"]) for g in codes} for m, e in enumerate(ema)]
    counts = {g: sum(1 for c in groups if c == g) for g in codes}
    total = sum(counts.values()) or 1
    batch_factor = [sum(counts[g] / total * f[g] for g in codes) for f in factors]
    fused_aucs = {}
    for g in codes:
        sel = [(p, y) for p, y, c in zip(fused, labels, groups) if c == g]
        if len(sel) > 1:
            a = auc([p for p, _ in sel], [y for _, y in sel])
            fused_aucs[g] = 0.5 if a is None else a
    priority = len(fused_aucs) == 2 and abs(max(fused_aucs.values()) - min(fused_aucs.values())) > hp["tau"]
    scale = [c * hp["rho"] * (bf if priority else 1.0) for c, bf in zip(coeff, batch_factor)]
    return {
        "batch_auc": batch_auc, "coeff": coeff, "ema": [{str(g): v for g, v in e.items()} for e in ema],
        "fairness_gap": gap, "batch_factor": batch_factor,
        "fused_group_auc": {str(g): v for g, v in fused_aucs.items()},
        "fairness_priority": priority, "encoder_grad_scale": scale,
    }


hp = {"rho": 1.2, "beta": 0.3, "tau": 0.04, "ema": 0.9}
before = {"auc_prev": [0.55, 0.6], "ema": [{0: 0.62, 1: 0.48}, {0: 0.51, 1: 0.57}]}
cases = [
    {   # group 1 absent: its EMA moves towards 0.5 and stays in the mean and the gap
        "name": "absent-group",
        "labels": [1, 0, 1, 0, 1, 0],
        "groups": [0, 0, 0, 0, 0, 0],
        "aux": [[0.9, 0.2, 0.7, 0.4, 0.6, 0.3], [0.6, 0.5, 0.8, 0.1, 0.4, 0.45]],
        "fused": [0.8, 0.3, 0.7, 0.2, 0.65, 0.35],
    },
    {   # group 1 has a single sample: no surrogate (0.5), no fused AUC, so no priority
        "name": "single-sample-group",
        "labels": [1, 0, 1, 0, 1, 0, 1],
        "groups": [0, 0, 0, 0, 0, 0, 1],
        "aux": [[0.9, 0.2, 0.7, 0.4, 0.6, 0.3, 0.1], [0.6, 0.5, 0.8, 0.1, 0.4, 0.45, 0.2]],
        "fused": [0.9, 0.1, 0.2, 0.8, 0.65, 0.35, 0.05],
    },
]
out = []
for case in cases:
    expected = step(hp, case["aux"], case["fused"], case["labels"], case["groups"], before["auc_prev"], before["ema"])
    out.append({**case, "hparams": hp,
                "state_before": {"auc_prev": before["auc_prev"], "ema": [{str(g): v for g, v in e.items()} for e in before["ema"]]},
                "expected": expected})
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference-edge-cases.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")

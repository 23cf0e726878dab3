"""Writes predictions.csv: synthetic glaucoma-screening scores in `multifair evaluate`'s input
format, for the demo and the docs. Race 0 Asian / 1 Black / 2 White (about 8/15/77%), male 0/1,
hispanic 0/1, a few -1 unknowns; the scores separate the classes less well for race 1.
Run: python3 make_predictions.py (standard library only; output is committed)."""
import csv
import math
import random

rng = random.Random(2026)
rows = []
for _ in range(800):
    race = rng.choices([0, 1, 2, -1], weights=[8, 15, 75, 2])[0]
    male = rng.choices([0, 1, -1], weights=[54, 45, 1])[0]
    hispanic = rng.choices([0, 1, -1], weights=[93, 5, 2])[0]
    label = int(rng.random() < 0.485)
    signal = 0.6 if race == 1 else 1.6
    logit = (signal if label else -signal) + rng.gauss(0.0, 1.2)
    prob = 1.0 / (1.0 + math.exp(-logit))
    rows.append((f"{prob:.6f}", label, race, male, hispanic))

with open("predictions.csv", "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["prob", "label", "race", "male", "hispanic"])
    writer.writerows(rows)

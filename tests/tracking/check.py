"""Reads a sweep back with the tracking tools' own readers and compares it with the files.

    check.py mlflow URI RESULTS EXPERIMENT EXPECTED_RUNS
    check.py tensorboard RESULTS

Exits non-zero, saying what differs, when anything does."""
import json
import math
import os
import sys
import tempfile


def flatten(prefix, value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value


def numbers(prefix, value, out):
    if isinstance(value, bool):
        out[prefix] = float(value)
    elif isinstance(value, (int, float)):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            numbers(f"{prefix}/{k}" if prefix else k, v, out)


def close(a, b, tol=0.0):
    return a == b or abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def planned(results):
    with open(os.path.join(results, "sweep.json")) as f:
        return json.load(f)["runs"]


def check_mlflow(uri, results, experiment, expected):
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == expected, f"{len(children)} seed runs, expected {expected}"
    assert len(parents) == len({(r["label"], r["attribute"]) for r in planned(results)}), f"{len(parents)} row runs"
    parent_ids = {p.info.run_id for p in parents}
    for parent in parents:
        names = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert {"table.md", "table.csv"} <= names, names
        assert "test/auc/mean" in parent.data.metrics, parent.data.metrics
    by_hash = {r["id"]: r for r in planned(results)}
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] in parent_ids
        planned_run = by_hash[run.data.tags["multifair.config_hash"]]
        folder = os.path.join(results, planned_run["folder"])
        with open(os.path.join(folder, "run.json")) as f:
            run_json = json.load(f)
        leaves = {}
        flatten("", run_json, leaves)
        params = run.data.params
        assert len(params) == len(leaves), f"{len(params)} params, {len(leaves)} leaves"
        for key, value in leaves.items():
            got = params[key]
            if isinstance(value, str):
                assert got == value, (key, got, value)
            else:
                assert json.loads(got) == value, (key, got, value)
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            lines = [json.loads(l) for l in f if l.strip()]
        epochs = [l for l in lines if "step" not in l]
        for key in ["train_loss", "lr", "val/auc", "val/loss", "val/es_auc"]:
            history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            want = []
            for l in epochs:
                flat = {}
                numbers("", {k: l[k] for k in ["train_loss", "lr", "val"]}, flat)
                if key in flat:
                    want.append((l["epoch"], flat[key], l["time"]))
            got = [(m.step, m.value, m.timestamp) for m in history]
            assert got == want, (key, got, want)
        with open(os.path.join(folder, "test.json")) as f:
            test = json.load(f)
        flat = {}
        numbers("test", test, flat)
        for key, value in flat.items():
            assert close(run.data.metrics[key], value), (key, run.data.metrics[key], value)
        with tempfile.TemporaryDirectory() as tmp:
            for name in ["run.json", "test.json", "predictions.csv", "metrics.jsonl"]:
                path = client.download_artifacts(run.info.run_id, name, tmp)
                with open(path, "rb") as a, open(os.path.join(folder, name), "rb") as b:
                    assert a.read() == b.read(), f"artifact {name} differs"
    print(f"mlflow: {len(parents)} row run(s), {len(children)} seed run(s) match the files")


def check_tensorboard(results):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in planned(results):
        folder = os.path.join(results, run["folder"])
        acc = EventAccumulator(os.path.join(folder, "tb"), size_guidance={"scalars": 0})
        acc.Reload()
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            lines = [json.loads(l) for l in f if l.strip()]
        tags = set(acc.Tags()["scalars"])
        checked = 0
        for line in lines:
            flat = {}
            if "step" in line:
                numbers("step", line["stats"], flat)
                step = line["step"]
            else:
                numbers("", {k: line[k] for k in ["train_loss", "lr", "val", "method"]}, flat)
                step = line["epoch"]
            for key, value in flat.items():
                assert key in tags, f"{folder}: no scalar {key}"
                events = [e for e in acc.Scalars(key) if e.step == step]
                assert len(events) == 1, (key, step, events)
                # TensorBoard keeps scalars as float32.
                assert close(events[0].value, value, 1e-6) or (math.isnan(value) and math.isnan(events[0].value)), (key, events[0].value, value)
                checked += 1
        assert checked > 0, folder
    print("tensorboard: every scalar of metrics.jsonl read back")


if __name__ == "__main__":
    if sys.argv[1] == "mlflow":
        check_mlflow(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        check_tensorboard(sys.argv[2])

"""The CIFAR benchmark's cost accounting (benchmarks/classifier_cifar.py), from the runs' stored records: the models'
training times, a section's method minutes, and a tuning study's trial runs."""
from __future__ import annotations

import json

from unlearnlab.store import Store


def model_times(store: Store, name: str, scenarios: dict[str, str], seeds: list[int]) -> dict[str, list[float]]:
    """Training seconds of the models behind the reported rows of `scenarios` ({scenario: its dataset}; every
    scenario of the doc, not only the latest run's): "original <dataset>" holds the originals of `seeds` on each
    dataset (one per seed, shared by the dataset's scenarios and their validation forms) from the store's model
    index; "oracle <scenario>" each scenario's oracles, from the retrain records of experiment `name` (their wall
    time is the oracle's training). The index alone also holds the validation oracles and models of other seeds."""
    datasets = list(dict.fromkeys(scenarios.values()))
    out: dict[str, list[float]] = {f"original {d}": [] for d in datasets}
    for index in (store.root / "models").glob("*/*.json"):
        meta = json.loads(index.read_text()).get("meta", {})
        if meta.get("role") == "original" and meta.get("seed") in seeds and meta.get("train_s") and \
                meta.get("dataset") in datasets:
            out[f"original {meta['dataset']}"].append(float(meta["train_s"]))
    runs = [r for r in store.list_runs(method="retrain") if r["spec"].get("name") == name
            and r["spec"].get("seed") in seeds and r.get("status", "completed") == "completed"]
    for forget, dataset in scenarios.items():
        out[f"oracle {forget}"] = [float(r["timings"]["wall_s"]) for r in runs if r["spec"].get("forget") == forget
                                   and r["spec"].get("dataset") == dataset and (r.get("timings") or {}).get("wall_s")]
    return out


def _trial_runs(store: Store, name: str, forget: str, method: str | None = None) -> list[dict]:
    """The stored tuning-trial runs on val:<forget> under the benchmark's experiment `name` (of `method`)."""
    return [r for r in store.list_runs(method=method) if r["spec"].get("forget") == f"val:{forget}"
            and str(r["spec"].get("name", "")).startswith(f"{name}:") and r["spec"]["method"] not in
            ("original", "retrain")]


def _cost(rows: list[dict]) -> tuple[int, float]:
    return len(rows), sum(float((r.get("timings") or {}).get("wall_s") or 0.0) for r in rows)


def study_cost(store: Store, name: str, forget: str, method: str, trials: list[dict]) -> list:
    """[runs, summed wall seconds] of one method's study: its stored trial runs on val:<forget> whose config holds
    one of `trials`' settings (runs of superseded studies, another sampler or search space, do not count; a trial
    answered from the store counts the compute it took when it ran)."""
    wanted = [t["params"] for t in trials]
    return list(_cost([r for r in _trial_runs(store, name, forget, method) if any(
        all((r["spec"].get("config") or {}).get(k) == v for k, v in p.items()) for p in wanted)]))


def trial_cost(store: Store, name: str, forget: str) -> tuple[int, float]:
    """(trial runs, their summed method wall seconds) on val:<forget>, from the stored trial records: the tuning's
    compute whatever number of invocations (resumed runs) it took (for outcomes kept without per-study costs)."""
    return _cost(_trial_runs(store, name, forget))


def run_minutes(records: list[dict]) -> float:
    """Summed method wall time of a section's runs (not the originals', oracles' or floors' evaluations)."""
    return sum(float((r.get("timings") or {}).get("wall_s") or 0.0) for r in records
               if r["spec"]["method"] not in ("original", "retrain", "oracle-floor")) / 60

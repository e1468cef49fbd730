"""The heavy part of the dashboard: one JSON-ready analysis per run, computed once from its rebuilt models and then
cached in the store (web/cache.py). Class level (per-class accuracy, prediction matrices), instance level (2-D
projections of penultimate features, probabilities, thumbnails of a fixed sample), layer level (linear CKA per layer
to the original and to the oracle on forget vs retain) and the Comparator attack simulation on the forget set."""
from __future__ import annotations

import base64
import importlib.util
import struct
import zlib
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UnlearnLabError
from ..eval.outputs import softmax, split_outputs
from ..eval.privacy_score import CONFIDENCE_RANGE, ENTROPY_RANGE, N_THRESHOLDS, comparator_statistics, privacy_score
from ..eval.representation import linear_cka
from .models import RunModels

VERSION = 1
SAMPLE = {"forget": 40, "retain": 40, "test": 40}  # instance view: points per split
CKA_N = 200  # examples per split for the layer view
HIST_BINS = 25
LEAKS = 8
SPLITS = ("forget", "retain", "test")


def png_data_uri(img: np.ndarray) -> str:
    """A data: URI of a PNG of `img` ([C, H, W] or [H, W], any range: min-max scaled), written with zlib only."""
    a = np.asarray(img, dtype=np.float64)
    a = a[0] if a.ndim == 3 and a.shape[0] == 1 else a
    if a.ndim == 3:
        a = np.transpose(a[:3], (1, 2, 0))
    lo, hi = float(a.min()), float(a.max())
    px = np.round(255 * (a - lo) / (hi - lo if hi > lo else 1.0)).astype(np.uint8)
    h, w = px.shape[:2]
    colour = 2 if px.ndim == 3 else 0
    raw = b"".join(b"\x00" + px[r].tobytes() for r in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def sample_positions(n: int, k: int, salt: int) -> np.ndarray:
    """`k` sorted positions out of `n`, the same for every run of a scenario (a fixed generator per split)."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(1234 + salt).choice(n, size=k, replace=False))


def _rows(ds, pos: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    items = [ds[int(i)] for i in pos]
    x = torch.stack([torch.as_tensor(it[0]) for it in items])
    y = np.array([int(it[1]) for it in items])
    return x, y


@torch.no_grad()
def _layer_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Outputs of every Linear / Conv layer of `model` on `x`, flattened per example, by module name."""
    got: dict[str, np.ndarray] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: got.__setitem__(
        name, out.detach().float().reshape(out.shape[0], -1).cpu().numpy()))
        for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    was = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return got


def _cka_or_nan(a: np.ndarray, b: np.ndarray) -> float | None:
    try:
        v = linear_cka(a, b)
    except (UnlearnLabError, ValueError, FloatingPointError):  # a constant layer: no CKA
        return None
    return float(v) if np.isfinite(v) else None


def layer_view(rm: RunModels) -> dict[str, Any]:
    """Linear CKA of each layer of the unlearned model to the same layer of the original and of the oracle, on
    (up to CKA_N) forget and retain examples."""
    out: dict[str, Any] = {"layers": [], "cka": {}}
    for k, split in enumerate(("forget", "retain")):
        ds = rm.data.splits()[split]
        x, _ = _rows(ds, sample_positions(len(ds), CKA_N, 100 + k))
        mine = _layer_outputs(rm.model, x)
        refs = {"original": _layer_outputs(rm.original, x), "retrained": _layer_outputs(rm.oracle, x)}
        out["layers"] = list(mine)
        for ref, feats in refs.items():
            out["cka"][f"{ref}/{split}"] = [_cka_or_nan(mine[n], feats[n]) if n in feats else None for n in mine]
    return out


def class_view(outs: dict[str, dict[str, np.ndarray]], k: int) -> dict[str, Any]:
    """Per-class accuracy (%) on train (forget + retain) and test, and the true x predicted count matrix per split."""
    def per_class(labels: np.ndarray, correct: np.ndarray) -> list[float | None]:
        return [float(100 * correct[labels == c].mean()) if (labels == c).any() else None for c in range(k)]

    res: dict[str, Any] = {"accuracy": {}, "matrix": {}}
    lab = {s: o["labels"].astype(int) for s, o in outs.items()}
    pred = {s: o["logits"].argmax(1) for s, o in outs.items()}
    train_l = np.concatenate([lab["forget"], lab["retain"]])
    train_c = np.concatenate([outs["forget"]["correct"], outs["retain"]["correct"]])
    res["accuracy"]["train"] = per_class(train_l, train_c)
    res["accuracy"]["test"] = per_class(lab["test"], outs["test"]["correct"])
    for s in SPLITS:
        m = np.zeros((k, k), dtype=np.int64)
        np.add.at(m, (lab[s], pred[s]), 1)
        res["matrix"][s] = m.tolist()
    return res


def _projection(feats: np.ndarray) -> dict[str, list]:
    from sklearn.decomposition import PCA

    f = feats.reshape(len(feats), -1).astype(np.float64)
    proj = {"pca": PCA(n_components=2, random_state=0).fit_transform(f) if f.shape[1] >= 2 else
            np.c_[f, np.zeros(len(f))]}
    if importlib.util.find_spec("umap") is not None:
        import umap

        proj["umap"] = umap.UMAP(n_components=2, random_state=0).fit_transform(f)
    return {name: np.round(p, 4).tolist() for name, p in proj.items()}


@torch.no_grad()
def instance_view(rm: RunModels) -> dict[str, Any]:
    """A fixed sample of forget / retain / test points: label, prediction, probabilities, 2-D projections of the
    penultimate features and a thumbnail (image data only)."""
    xs, meta = [], []
    for k, split in enumerate(SPLITS):
        ds = rm.data.splits()[split]
        pos = sample_positions(len(ds), SAMPLE[split], k)
        x, y = _rows(ds, pos)
        xs.append(x)
        meta += [(split, int(p), int(lab)) for p, lab in zip(pos, y)]
    x = torch.cat(xs)
    rm.model.eval()
    feats = rm.task.features(rm.model, (x, torch.zeros(len(x), dtype=torch.long))).float().cpu().numpy()
    probs = softmax(rm.model(x.to(rm.task.device)).float().cpu().numpy())
    image = x.ndim == 4 or (x.ndim == 3 and x.shape[1] > 1)
    points = [{"key": f"{s}:{p}", "split": s, "index": p, "label": lab, "pred": int(pr.argmax()),
               "probs": np.round(pr, 4).tolist(), "thumb": png_data_uri(x[i].numpy()) if image else None}
              for i, ((s, p, lab), pr) in enumerate(zip(meta, probs))]
    return {"points": points, "projection": _projection(feats)}


def attack_view(rm: RunModels, forget_logits: np.ndarray, oracle_logits: np.ndarray,
                forget_thumbs: list[str | None]) -> dict[str, Any]:
    """Comparator attack simulation on the forget set (unlearned = positive): histograms of entropy and confidence
    for unlearned vs retrained, per-threshold FPR / FNR / attack success, the privacy score, the leakiest examples."""
    su, sr = comparator_statistics(forget_logits), comparator_statistics(oracle_logits)
    res: dict[str, Any] = {"n": int(len(forget_logits)), "privacy": privacy_score(forget_logits, oracle_logits)}
    for k, (name, (lo, hi)) in enumerate((("entropy", ENTROPY_RANGE), ("confidence", CONFIDENCE_RANGE))):
        a, b = np.clip(su[k], lo, hi), np.clip(sr[k], lo, hi)
        edges = np.linspace(lo, hi, HIST_BINS + 1)
        t = np.linspace(lo, hi, N_THRESHOLDS)
        # entropy is LOW for memorised examples: the attack calls "unlearned" below the threshold; confidence above
        pos_u = (a[None, :] <= t[:, None]) if name == "entropy" else (a[None, :] >= t[:, None])
        pos_r = (b[None, :] <= t[:, None]) if name == "entropy" else (b[None, :] >= t[:, None])
        tpr, fpr = pos_u.mean(1), pos_r.mean(1)
        res[name] = {"edges": edges.tolist(), "unlearned": np.histogram(a, edges)[0].tolist(),
                     "retrained": np.histogram(b, edges)[0].tolist(), "thresholds": np.round(t, 4).tolist(),
                     "fpr": fpr.tolist(), "fnr": (1 - tpr).tolist(), "success": ((tpr + 1 - fpr) / 2).tolist()}
    gap = su[1] - sr[1]
    top = np.argsort(-np.abs(gap))[:LEAKS]
    labels = rm.data.splits()["forget"]
    res["leaks"] = [{"index": int(i), "label": int(labels[int(i)][1]), "confidence_unlearned": float(su[1][i]),
                     "confidence_retrained": float(sr[1][i]), "gap": float(gap[i]),
                     "thumb": forget_thumbs[int(i)] if int(i) < len(forget_thumbs) else None} for i in top]
    return res


def analyse(rm: RunModels, record: dict) -> dict[str, Any]:
    """Every view's data for one run (JSON-ready); `reproduced` says whether the rebuilt model's UA equals the
    stored one (methods are deterministic given the seed; a mismatch is shown, not hidden)."""
    outs = {s: split_outputs(rm.model, rm.data.splits()[s], rm.task) for s in SPLITS}
    oracle_forget = split_outputs(rm.oracle, rm.data.forget, rm.task)
    ua = float(100 * (1 - outs["forget"]["correct"].mean()))
    stored = (record.get("metrics") or {}).get("UA")
    forget = rm.data.forget
    thumbs: list[str | None] = []
    first = torch.as_tensor(forget[0][0]) if len(forget) else None
    if first is not None and first.ndim >= 2:
        top = np.argsort(-np.abs(comparator_statistics(outs["forget"]["logits"])[1]
                                 - comparator_statistics(oracle_forget["logits"])[1]))[:LEAKS]
        wanted = set(int(i) for i in top)
        thumbs = [png_data_uri(torch.as_tensor(forget[i][0]).numpy()) if i in wanted else None
                  for i in range(len(forget))]
    return {"version": VERSION, "run_id": record.get("id"), "classes": rm.classes,
            "reproduced": {"UA": ua, "stored_UA": stored,
                           "ok": stored is None or abs(ua - float(stored)) < 1e-3},
            "class": class_view(outs, len(rm.classes)), "instance": instance_view(rm), "layer": layer_view(rm),
            "attack": attack_view(rm, outs["forget"]["logits"], oracle_forget["logits"], thumbs)}


__all__ = ["SAMPLE", "VERSION", "analyse", "attack_view", "class_view", "instance_view", "layer_view",
           "png_data_uri", "sample_positions"]

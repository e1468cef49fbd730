"""Ours vs the official implementations (issue 13): FT, GA, RL, SalUn (mask included), l1-sparse, SSD, SCRUB and
the evaluation of one classifier, on the same work, in one interleaved run (ours, official, ours, official ...).

    .venv/bin/python benchmarks/peer_speed.py --peer-python /tmp/peer-venv/bin/python \\
        --salun ~/src/Unlearn-Saliency --ssd ~/src/selective-synaptic-dampening --scrub ~/src/SCRUB \\
        --dataset digits --model cnn --forget class:3 --epochs 5 --repeats 5 --threads 1

The official code is what you cloned: OPTML-Group/Unlearn-Saliency (FT, GA, RL, SalUn, l1 = FT_l1 and the SVC
MIA evaluation), if-loops/selective-synaptic-dampening (SSD), meghdadk/SCRUB (SCRUB); each checkout's commit is
recorded. It runs in its own interpreter (`--peer-python`, one with torch and torchvision) through
benchmarks/peer_runner.py, which imports it unedited; nothing of it is copied here.

Same work: the same architecture and original weights (our model class, state dict handed over), the same data,
forget set and hyper-parameters (peer_common.method_work), the same torch thread count and seed, the same number of
optimiser steps and of examples forwarded with autograd (asserted per run; examples forwarded without autograd, e.g.
SCRUB's teacher, are reported). The outcome is reported as forget / retain accuracy after each side: batch orders
and random labels come from different generators, so they agree within seed noise, not bit for bit.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_common as pc  # noqa: E402

from unlearnlab.api import as_spec, unlearn  # noqa: E402
from unlearnlab.data import load_dataset, make_split  # noqa: E402
from unlearnlab.eval.evaluate import evaluate_model  # noqa: E402
from unlearnlab.eval.outputs import OutputCache  # noqa: E402
from unlearnlab.models import ClassifierTask, build_model, data_init, precision  # noqa: E402
from unlearnlab.train import train  # noqa: E402

EVAL_METRICS = ["UA", "RA", "TA", "MIA-Eff", "MIA-Eff-entropy", "MIA-Eff-m_entropy"]


def commit(path: str) -> str:
    """`git rev-parse HEAD` of a checkout ('unknown' if it is not a git work tree)."""
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Ours:
    """Our side: the split, the original model and one timed call per request."""

    def __init__(self, a: argparse.Namespace, workdir: Path):
        spec = as_spec({"dataset": a.dataset, "model": a.model, "forget": a.forget})
        bundle = load_dataset(spec.dataset, seed=0)
        fp32 = ClassifierTask(bundle.num_classes)  # the original is trained in float32 either way
        self.task = ClassifierTask(bundle.num_classes, amp=a.amp)  # --amp: our methods and evaluation in bf16
        self.arch = spec.model_spec()
        net = data_init(build_model(self.arch, tuple(bundle.train.x.shape[1:]), bundle.num_classes, seed=0),
                        bundle.train)
        rec = spec.train_config()
        if a.original_epochs:
            import dataclasses

            rec = dataclasses.replace(rec, epochs=a.original_epochs)
        self.net = train(net, bundle.train, rec, fp32, seed=0).eval()
        self.data = make_split(bundle.train, bundle.test, a.forget, 0, num_classes=bundle.num_classes,
                               name=bundle.name)
        self.data_path, self.model_path = workdir / "data.pt", workdir / "model.pt"
        torch.save({"x_train": bundle.train.x, "y_train": bundle.train.y, "x_test": bundle.test.x,
                    "y_test": bundle.test.y, "forget_idx": torch.from_numpy(self.data.forget_idx),
                    "retain_idx": torch.from_numpy(self.data.retain_idx),
                    "num_classes": torch.tensor(bundle.num_classes)}, self.data_path)
        torch.save(self.net.state_dict(), self.model_path)

    def run(self, method: str, cfg: dict, seed: int) -> dict:
        """One timed request, with the counts and forget / retain accuracy (or metric values for 'eval')."""
        counter = pc.Counter()
        counter.attach(self.net)
        if method == "eval":
            values, secs = pc.timed(lambda: evaluate_model(self.net, self.data, self.task, cache=OutputCache(),
                                                           names=EVAL_METRICS))
            return {"seconds": secs, "counts": counter.detach(), "values": values}
        name = pc.OURS_NAME.get(method, method)
        model, secs = pc.timed(lambda: unlearn(self.net, self.data, name, task=self.task, seed=seed, **cfg))
        counts = counter.detach()
        return {"seconds": secs, "counts": counts,
                "acc": [accuracy(model, self.data.forget), accuracy(model, self.data.retain)]}


@torch.no_grad()
def accuracy(model, ds) -> float:
    """% correct (outside the timed work; the runner computes it the same way)."""
    model.eval()
    x, y = ds.x, ds.y
    return 100.0 * float(sum((model(x[i:i + 512]).argmax(1) == y[i:i + 512]).sum() for i in range(0, len(y), 512))
                         / max(len(y), 1))


class Peer:
    """The official side: a peer_runner.py process in the peers' interpreter, one JSON request per line."""

    def __init__(self, a: argparse.Namespace, ours: Ours):
        runner = Path(__file__).resolve().parent / "peer_runner.py"
        src = Path(__file__).resolve().parent.parent / "src"
        cmd = [a.peer_python, str(runner), "--data", str(ours.data_path), "--model", str(ours.model_path),
               "--arch", ours.arch, "--src", str(src), "--salun", a.salun, "--ssd", a.ssd, "--scrub", a.scrub,
               "--threads", str(a.threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        hello = self._read()
        self.torch, self.torchvision = hello["torch"], hello.get("torchvision")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer runner exited (code {self.proc.wait()}); its stderr is above")
        return json.loads(line)

    def run(self, method: str, cfg: dict, seed: int) -> dict:
        self.proc.stdin.write(json.dumps({"method": method, "cfg": cfg, "seed": seed}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def measure(ours: Ours, peer: Peer, names: list[str], work: dict, repeats: int, warmup: int) -> list[dict]:
    """Interleaved repeats of every requested work item, after `warmup` untimed runs of it on each side (first
    calls pay lazy imports and allocations); one table row each."""
    rows = []
    for name in names:
        cfg = work.get(name, {})
        for _ in range(warmup):
            ours.run(name, cfg, seed=0)
            peer.run(name, cfg, seed=0)
        times: dict[str, list[float]] = {"ours": [], "peer": []}
        last: dict[str, dict] = {}
        for r in range(repeats):
            for side, impl in (("ours", ours), ("peer", peer)):
                res = impl.run(name, cfg, seed=r)
                times[side].append(res["seconds"])
                last[side] = res
            if name != "eval":
                diff = pc.same_work(last["ours"]["counts"], last["peer"]["counts"])
                assert not diff, f"{name}: not the same work: {'; '.join(diff)}"
            print(f"{name} repeat {r + 1}/{repeats}: ours {times['ours'][-1]:.3f} s, official "
                  f"{times['peer'][-1]:.3f} s", file=sys.stderr, flush=True)
        rows.append(row(name, times, last))
    return rows


def row(name: str, times: dict, last: dict) -> dict:
    """A table row from the repeats' times and the last repeat's results."""
    o, p = last["ours"], last["peer"]
    if name == "eval":
        acc_o = (100.0 - o["values"]["UA"], o["values"]["RA"])  # UA = 100 - forget accuracy on both sides
        acc_p = (100.0 - p["values"]["UA"], p["values"]["RA"])
        print(f"eval values ours {o['values']}\neval values official {p['values']}", file=sys.stderr)
    else:
        acc_o, acc_p = tuple(o["acc"]), tuple(p["acc"])
    return {"name": name, "ours": pc.median(times["ours"]), "peer": pc.median(times["peer"]),
            "steps": f"{o['counts']['steps']} / {p['counts']['steps']}",
            "forwards": f"{o['counts']['nograd_examples']} / {p['counts']['nograd_examples']}",
            "ours_acc": acc_o, "peer_acc": acc_p}


def main() -> None:
    """Prepare the shared work, start the official side, measure interleaved, print the markdown report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", required=True, help="an interpreter with torch and torchvision")
    ap.add_argument("--salun", required=True, help="checkout of OPTML-Group/Unlearn-Saliency")
    ap.add_argument("--ssd", required=True, help="checkout of if-loops/selective-synaptic-dampening")
    ap.add_argument("--scrub", required=True, help="checkout of meghdadk/SCRUB")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--forget", default="class:3")
    ap.add_argument("--epochs", type=int, default=5, help="epochs of FT, GA, RL, SalUn, l1 (SCRUB: its 3)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--original-epochs", type=int, default=0, help="override the dataset recipe's epochs")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per work item and side before the repeats")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on each side")
    ap.add_argument("--amp", action="store_true", help="our side under bf16 autocast (recipe amp: the forward "
                    "passes of our methods and evaluation, where the CPU has bf16 units); the official code has no "
                    "such option and runs in float32")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(pc.METHODS) + ",eval")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    names = a.only.split(",") if a.only else [*pc.METHODS, "eval"]
    with tempfile.TemporaryDirectory(prefix="peer-speed-") as tmp:
        ours = Ours(a, Path(tmp))
        peer = Peer(a, ours)
        load0 = os.getloadavg()[0]
        try:
            rows = measure(ours, peer, names, pc.method_work(a.epochs, a.batch_size), a.repeats,
                           a.warmup)
        finally:
            peer.close()
    print(f"{a.dataset} {ours.arch}, forget {a.forget} (|D_f| {len(ours.data.forget)}, |D_r| "
          f"{len(ours.data.retain)}, |test| {len(ours.data.test)}); epochs {a.epochs}, batch {a.batch_size}; "
          f"{a.threads} torch threads each side; medians of {a.repeats} interleaved repeats; load average "
          f"{load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"ours: torch {torch.__version__}, Python {platform.python_version()}, "
          f"{precision.effective(a.amp, 'cpu')}; official: torch {peer.torch}, float32, "
          f"torchvision {peer.torchvision or 'not importable, stubbed (no called function uses it)'}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"commits: Unlearn-Saliency {commit(a.salun)}, selective-synaptic-dampening {commit(a.ssd)}, "
          f"SCRUB {commit(a.scrub)}\n")
    print(pc.table(rows))


if __name__ == "__main__":
    main()

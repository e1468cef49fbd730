"""The official implementations' side of benchmarks/peer_speed.py, run under a separate interpreter that has
torchvision (`--peer-python`). Started by peer_speed.py, never by hand.

It imports the official code from the user's checkouts, unedited, and calls its functions with the model (our
architecture, loaded with the original's weights), data and hyper-parameters that peer_speed.py hands over. The only
shims: `.cuda()` is the identity on a CPU run, imports the called functions never use (matplotlib, wandb, the
Hugging Face `datasets`, ...) resolve to inert stubs when not installed, and argparse namespaces stand in for their
command lines. Where the official code has no function for the whole method (SSD's and SCRUB's drivers live in
scripts and notebooks), a few lines here repeat the driver's calls to their functions.

Protocol: one JSON request per stdin line ({"method": name, "cfg": {...}} or {"method": "eval"}), one JSON reply per
line on the original stdout; the official code's prints go to /dev/null."""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import tempfile
import types
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402

STUBBED = ("matplotlib", "seaborn", "wandb", "tqdm", "datasets", "lmdb")


class _Anything:
    """Stands in for any attribute of a stubbed module; calling it or its attributes does nothing."""

    def __call__(self, *a: Any, **k: Any) -> _Anything:
        return self

    def __getattr__(self, name: str) -> _Anything:
        return self


class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import hook answering `names` (and their submodules) with inert modules."""

    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = types.ModuleType(spec.name)
        mod.__path__ = []
        mod.__getattr__ = lambda name: (_ for _ in ()).throw(AttributeError(name)) if name.startswith("__") \
            else _Anything()
        return mod

    def exec_module(self, module) -> None:
        return None


def _importable(name: str) -> bool:
    """Whether `name` imports; a failed import leaves nothing of it in sys.modules. (The torchvision wheels on the
    build machine are CUDA builds whose C extension does not load next to the CPU torch; none of the official
    functions called here uses torchvision, only their module-level imports name it.)"""
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001 (any import-time failure means: stub it)
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]
        return False


def install_shims(device: str) -> None:
    """Stub the unused imports that are not installed; on the CPU, make .cuda() the identity."""
    missing = {n for n in STUBBED if n == "datasets" or importlib.util.find_spec(n) is None}
    if not _importable("torchvision"):
        missing.add("torchvision")
    sys.meta_path.insert(0, _Stubs(missing))  # 'datasets': SalUn's imagenet.py wants Hugging Face's, never called
    if device == "cpu":
        torch.Tensor.cuda = lambda self, *a, **k: self
        nn.Module.cuda = lambda self, *a, **k: self


def import_ours(src: str):
    """Our model zoo, without importing the rest of our package (only zoo.py and the modules it needs)."""
    sys.path.insert(0, src)
    pkg = types.ModuleType("unlearnlab.models")
    pkg.__path__ = [os.path.join(src, "unlearnlab", "models")]
    importlib.import_module("unlearnlab")
    sys.modules["unlearnlab.models"] = pkg
    return importlib.import_module("unlearnlab.models.zoo")


def _provide_missing_name(root: str, module: str, name: str) -> None:
    """Load `module` from `root` first and give it an inert `name` when it lacks one. (At the recorded commit
    SalUn's trainer/__init__.py imports train_with_rewind, which trainer/train.py no longer defines, so nothing that
    imports `unlearn` loads; only the pruning code would call it.)"""
    path = os.path.join(root, *module.split(".")) + ".py"
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    if not hasattr(mod, name):
        setattr(mod, name, _Anything())


class Peers:
    """The official modules, imported from the checkouts."""

    def __init__(self, salun: str, ssd: str, scrub: str):
        cls_dir = os.path.join(salun, "Classification")
        sys.path.insert(0, cls_dir)
        cwd = os.getcwd()
        os.chdir(cls_dir)  # their modules append "." to sys.path for their own imports
        try:
            _provide_missing_name(cls_dir, "trainer.train", "train_with_rewind")
            self.unlearn = importlib.import_module("unlearn")
            self.generate_mask = importlib.import_module("generate_mask")
            self.evaluation = importlib.import_module("evaluation")
            self.trainer = importlib.import_module("trainer")
        finally:
            os.chdir(cwd)
        spec = importlib.util.spec_from_file_location("peer_ssd", os.path.join(ssd, "src", "ssd.py"))
        self.ssd = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.ssd)
        sys.path.append(scrub)  # last: only its `thirdparty` package is imported from there
        self.loops = importlib.import_module("thirdparty.repdistiller.helper.loops")
        self.util = importlib.import_module("thirdparty.repdistiller.helper.util")
        self.kd = importlib.import_module("thirdparty.repdistiller.distiller_zoo")


class Bench:
    """The shared data and original model, and one adapter per method."""

    def __init__(self, data_path: str, model_path: str, arch: str, src: str, peers: Peers):
        d = torch.load(data_path, weights_only=True)
        self.x, self.y = d["x_train"], d["y_train"]
        self.forget = TensorDataset(self.x[d["forget_idx"]], self.y[d["forget_idx"]])
        self.retain = TensorDataset(self.x[d["retain_idx"]], self.y[d["retain_idx"]])
        self.test = TensorDataset(d["x_test"], d["y_test"])
        self.num_classes = int(d["num_classes"])
        zoo = import_ours(src)
        self.model = zoo.build_model(arch, tuple(self.x.shape[1:]), self.num_classes, seed=0)
        self.model.load_state_dict(torch.load(model_path, weights_only=True))
        self.model.eval()
        self.p = peers
        self.tmp = tempfile.mkdtemp(prefix="peer-salun-")

    def loader(self, ds, bs: int, shuffle: bool = True) -> DataLoader:
        return DataLoader(ds, batch_size=bs, shuffle=shuffle, num_workers=0)

    def salun_args(self, cfg: dict, name: str) -> argparse.Namespace:
        return argparse.Namespace(
            unlearn=name, unlearn_epochs=cfg["epochs"], unlearn_lr=cfg["lr"], lr=cfg["lr"], momentum=cfg["momentum"],
            weight_decay=cfg["weight_decay"], batch_size=cfg["batch_size"], decreasing_lr="91,136", rewind_epoch=0,
            imagenet_arch=False, warmup=0, print_freq=10**9, alpha=cfg.get("gamma", 0.0),
            no_l1_epochs=cfg.get("no_l1_epochs", 0), dataset="cifar10", num_classes=self.num_classes,
            save_dir=self.tmp, arch="ours", gpu=0)

    def loaders(self, cfg: dict) -> dict[str, DataLoader]:
        bs = cfg["batch_size"]
        return {"retain": self.loader(self.retain, bs), "forget": self.loader(self.forget, bs)}

    def run(self, method: str, cfg: dict) -> nn.Module:
        model = copy.deepcopy(self.model)
        crit = nn.CrossEntropyLoss()
        if method in ("ft", "ga", "rl", "l1_sparse"):
            fn = {"ft": self.p.unlearn.FT, "ga": self.p.unlearn.GA, "rl": self.p.unlearn.RL,
                  "l1_sparse": self.p.unlearn.FT_l1}[method]
            fn(self.loaders(cfg), model, crit, self.salun_args(cfg, method.upper()))
        elif method == "salun":
            args = self.salun_args(cfg, "RL")
            mask_loaders = {"forget": self.loader(self.forget, cfg["mask_batch_size"])}
            self.p.generate_mask.save_gradient_ratio(mask_loaders, model, crit, args)  # writes with_{0.1..1.0}.pt
            mask = torch.load(os.path.join(self.tmp, f"with_{cfg['threshold']}.pt"), weights_only=True)
            self.p.unlearn.RL(self.loaders(cfg), model, crit, args, mask=mask)
        elif method == "ssd":
            self.ssd(model, cfg)
        elif method == "scrub":
            self.scrub(model, cfg)
        else:
            raise ValueError(f"unknown method {method!r}")
        return model.eval()

    def ssd(self, model: nn.Module, cfg: dict) -> None:
        """The calls of ssd_tuning (src/forget_*_strategies.py) up to its metric scores."""
        params = {"lower_bound": 1, "exponent": 1, "magnitude_diff": None, "min_layer": -1, "max_layer": -1,
                  "forget_threshold": 1, "dampening_constant": cfg["dampening_constant"],
                  "selection_weighting": cfg["selection_weighting"]}
        three = lambda ds: TensorDataset(*ds.tensors, ds.tensors[1])  # noqa: E731 (their batches are x, _, y)
        forget_dl = self.loader(three(self.forget), cfg["batch_size"])
        full_dl = self.loader(TensorDataset(self.x, self.y, self.y), cfg["batch_size"])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        pp = self.p.ssd.ParameterPerturber(model, optimizer, "cpu", params)
        model.eval()
        sample_importances = pp.calc_importance(forget_dl)
        original_importances = pp.calc_importance(full_dl)
        pp.modify_weight(original_importances, sample_importances)

    def scrub(self, model: nn.Module, cfg: dict) -> None:
        """The SCRUB cells of large_scale_unlearning.ipynb (without their per-epoch validation printouts)."""
        teacher = copy.deepcopy(model)
        module_list = nn.ModuleList([model, teacher])
        criterion_list = nn.ModuleList([nn.CrossEntropyLoss(), self.p.kd.DistillKL(cfg["temperature"]),
                                        self.p.kd.DistillKL(cfg["temperature"])])
        optimizer = torch.optim.SGD(nn.ModuleList([model]).parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                                    weight_decay=cfg["weight_decay"])
        args = argparse.Namespace(distill="kd", gamma=cfg["gamma"], alpha=cfg["alpha"], beta=0.0,
                                  sgda_learning_rate=cfg["lr"], lr_decay_epochs=[3, 5, 9], lr_decay_rate=0.1,
                                  print_freq=10**9, msteps=cfg["msteps"], sgda_epochs=cfg["epochs"])
        forget_loader = self.loader(self.forget, cfg["forget_batch_size"])
        retain_loader = self.loader(self.retain, cfg["retain_batch_size"])
        for epoch in range(1, args.sgda_epochs + 1):
            self.p.util.adjust_learning_rate(epoch, args, optimizer)
            if epoch <= args.msteps:
                self.p.loops.train_distill(epoch, forget_loader, module_list, None, criterion_list, optimizer, args,
                                           "maximize")
            self.p.loops.train_distill(epoch, retain_loader, module_list, None, criterion_list, optimizer, args,
                                       "minimize")

    def evaluate(self, model: nn.Module, bs: int = 512) -> dict[str, Any]:
        """main_forget.py's evaluation: validate() on each loader, then SVC_MIA with |test| retain shadow members."""
        crit, args = nn.CrossEntropyLoss(), argparse.Namespace(imagenet_arch=False, print_freq=10**9)
        acc = {name: float(self.p.trainer.validate(self.loader(ds, bs, False), model, crit, args))
               for name, ds in (("retain", self.retain), ("forget", self.forget), ("test", self.test))}
        shadow = torch.utils.data.Subset(self.retain, list(range(len(self.test))))
        mia = self.p.evaluation.SVC_MIA(shadow_train=self.loader(shadow, bs, False),
                                        shadow_test=self.loader(self.test, bs, False), target_train=None,
                                        target_test=self.loader(self.forget, bs, False), model=model)
        return {"UA": 100.0 - acc["forget"], "RA": acc["retain"], "TA": acc["test"],  # UA = 100 - Acc(D_f)
                **{f"MIA-{k}": 100.0 * float(v) for k, v in mia.items()}}


@torch.no_grad()
def accuracy(model: nn.Module, ds: TensorDataset) -> float:
    """% correct on `ds` (outside the timed work, the same on both sides)."""
    model.eval()
    x, y = ds.tensors
    return 100.0 * float(sum((model(x[i:i + 512]).argmax(1) == y[i:i + 512]).sum() for i in range(0, len(y), 512))
                         / max(len(y), 1))


def serve(bench: Bench, out) -> None:
    """Answer requests until stdin closes."""
    for line in sys.stdin:
        req = json.loads(line)
        torch.manual_seed(req.get("seed", 0))
        counter = pc.Counter()
        counter.attach(bench.model)
        if req["method"] == "eval":
            values, secs = pc.timed(lambda: bench.evaluate(bench.model))
            counts = counter.detach()
            reply = {"seconds": secs, "counts": counts, "values": values}
        else:
            method, cfg = req["method"], req["cfg"]
            model, secs = pc.timed(lambda: bench.run(method, cfg))  # noqa: B023 (called at once)
            counts = counter.detach()
            reply = {"seconds": secs, "counts": counts,
                     "acc": [accuracy(model, bench.forget), accuracy(model, bench.retain)]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> None:
    """Parse the paths, import everything, then serve."""
    ap = argparse.ArgumentParser()
    for name in ("data", "model", "arch", "src", "salun", "ssd", "scrub"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--threads", type=int, required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    install_shims("cpu")
    out = os.fdopen(os.dup(1), "w")
    sys.stdout = open(os.devnull, "w")
    bench = Bench(a.data, a.model, a.arch, a.src, Peers(a.salun, a.ssd, a.scrub))
    tv = sys.modules.get("torchvision")
    out.write(json.dumps({"ready": True, "torch": torch.__version__,
                          "torchvision": getattr(tv, "__version__", None) if tv else None}) + "\n")
    out.flush()
    serve(bench, out)


if __name__ == "__main__":
    main()

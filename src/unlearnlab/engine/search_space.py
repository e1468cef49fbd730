"""Search spaces of the tuner (engine/tune.py): what a method's config declares, narrowed to what can matter for
the model at hand, its default setting over those fields, and how an Optuna trial samples one field."""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError

KINDS = {"classifier": "classifier", "qa": "lm", "diffusion": "diffusion"}  # task -> the methods' kind


def has_batchnorm(run_spec: dict) -> bool:
    """Whether the classifier the trials train has BatchNorm layers; True when that cannot be told (a model that
    cannot be built here fails in the trials themselves, with their error)."""
    import torch

    try:
        from ..api import as_spec
        from ..data import load_dataset
        from ..models import build_model

        spec = as_spec(run_spec)
        bundle = load_dataset(spec.dataset, seed=0)
        model = build_model(spec.model_spec(), tuple(bundle.train[0][0].shape), bundle.num_classes)
    except Exception:  # noqa: BLE001 (only a hint to narrow a search space; the trials report real errors)
        return True
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def method_space(method: str, given: dict[str, tuple] | None, task: str = "classifier",
                 batchnorm: bool = True) -> dict[str, tuple]:
    """The search space of `method`: `given` (checked against its config) or the one its config declares. A
    declared `bn_stats` choice is dropped where there is no BatchNorm (a causal LM, a classifier without it): both
    values would train the same model, and the trials would be wasted on it."""
    import dataclasses

    from ..config import check_search, search_space
    from ..methods import METHODS

    m = METHODS.get(method)
    if method == "retrain" or KINDS[task] not in m.kinds:
        raise ConfigError(f"{method!r} cannot be tuned here: " + ("it is the retrained oracle every method is "
                          "compared with." if method == "retrain" else f"it applies to {m.kinds} models only."))
    if given is None:
        space = search_space(m.config)
        if task != "classifier" or not batchnorm:
            space.pop("bn_stats", None)
    else:
        fields = {f.name: f for f in dataclasses.fields(m.config)}
        space = {}
        for name, s in given.items():
            if name not in fields:
                raise ConfigError(f"search space of {method}: {name!r} is not a config field; fields are "
                                  f"{', '.join(fields)}.")
            meta = fields[name].metadata
            space[name] = check_search(s, choices=meta.get("choices"), low=meta.get("low"), high=meta.get("high"))
    if not space:
        raise ConfigError(f"{method} declares no search space; add search=... to its config fields or pass one.")
    return space


def default_params(method: str, space: dict[str, tuple], overrides: dict | None = None) -> dict[str, Any]:
    """The method's default setting over the fields of `space`: the config a run without tuning would use (its
    defaults under the user's overrides, typed and checked as a run would)."""
    from ..config import build
    from ..methods import METHODS

    cfg = build(METHODS.get(method).config, (overrides or {}).get(method), what=method)
    return {name: getattr(cfg, name) for name in space}


def suggest(trial, name: str, s: tuple) -> Any:
    """Sample field `name` from search tuple `s` with an Optuna trial."""
    kind, *vals = s
    if kind == "choice":
        return trial.suggest_categorical(name, list(vals))
    if kind == "int":
        return trial.suggest_int(name, int(vals[0]), int(vals[1]))
    return trial.suggest_float(name, float(vals[0]), float(vals[1]), log=kind == "log")

"""TOFU (Maini et al. 2024) from the Hugging Face hub: `locuslab/TOFU` read with the `datasets` library.

The hub repository names each file a config with one `train` split: `full` (200 authors x 20 QA) is trained on;
`forget01|05|10` (1/5/10% of the authors, nested) with `retain99|95|90` (the rest); `forget01|05|10_perturbed`
and `retain_perturbed` add paraphrased and perturbed answers for evaluation; `holdout01|05|10` (not trained on)
are MIA non-members; `real_authors_perturbed` and `world_facts_perturbed` are the utility sets. Columns:
question, answer, and for the perturbed sets paraphrased_answer and perturbed_answer (a list).

$UNLEARNLAB_TOFU_HUB names another repository or a local copy of one (a folder with the hub's README.md, whose
`configs` list maps config names to files, and the JSON files): `datasets.load_dataset(FOLDER, name=...)` reads it
without the network. Reading from the hub needs the network once; `datasets` caches what it downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ..errors import DataError
from .tofu import UTILITY_FILES, tofu_rows

HUB_REPO = "locuslab/TOFU"
RETAIN_OF = {"01": "retain99", "05": "retain95", "10": "retain90"}
_FIX = ("Use TOFU's JSON files instead: download them from https://huggingface.co/datasets/locuslab/TOFU into a "
        "folder and pass --dataset tofu:DIR.")


def hub_repo() -> str:
    """The TOFU repository to read: $UNLEARNLAB_TOFU_HUB (a hub id or a local copy), else locuslab/TOFU."""
    return os.environ.get("UNLEARNLAB_TOFU_HUB") or HUB_REPO


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError("--dataset tofu reads locuslab/TOFU with the Hugging Face `datasets` library, which is not "
                        "installed; pip install 'unlearnlab[llm]' (or pip install datasets). " + _FIX) from None
    return datasets


def load_config(name: str, repo: str | None = None, *, required: bool = True) -> list[dict[str, Any]] | None:
    """The rows of TOFU config `name` (its `train` split); None for a missing optional config."""
    datasets, repo = _datasets(), repo or hub_repo()
    try:
        ds = datasets.load_dataset(repo, name=name, split="train")
    except ValueError as e:  # no such config in the README: read the file of that name directly
        try:
            ds = datasets.load_dataset(repo, data_files=f"{name}.json", split="train")
        except Exception:  # noqa: BLE001 - the file is absent too
            if not required:
                return None
            raise DataError(f"The TOFU repository {repo!r} has no config {name!r} ({e}). Check "
                            "$UNLEARNLAB_TOFU_HUB. " + _FIX) from None
    except Exception as e:  # noqa: BLE001 - datasets raises connection, hub and file errors of many types
        raise DataError(f"Could not load config {name!r} of the TOFU repository {repo!r}: {type(e).__name__}: "
                        f"{e}. Reading locuslab/TOFU needs the network the first time (then the datasets cache); "
                        "offline, point $UNLEARNLAB_TOFU_HUB at a local copy of the repository. " + _FIX) from None
    return tofu_rows(list(ds), f"{repo} config {name!r}")


def hub_rows(n: str, validation: bool = False) -> dict[str, list[dict]]:
    """TOFU's rows for forget split `n` ('01', '05', '10'): train (full), forget (forgetNN_perturbed, else
    forgetNN), retain (retainNN), retain_eval (retain_perturbed), holdout (holdoutNN), real_authors and world_facts
    (their perturbed sets), and with `validation` forget01/05/10 (to keep them out of a val: split); the optional
    ones only where the repository has them."""
    rows = {"train": load_config("full")}
    forget = load_config(f"forget{n}_perturbed", required=False)
    rows["forget"] = forget if forget is not None else load_config(f"forget{n}")
    optional = {"retain": RETAIN_OF[n], "retain_eval": "retain_perturbed", "holdout": f"holdout{n}",
                **{k: f.removesuffix(".json") for k, f in UTILITY_FILES.items()}}
    if validation:
        optional |= {f"forget{m}": f"forget{m}" for m in RETAIN_OF}
    for key, name in optional.items():
        got = load_config(name, required=False)
        if got is not None:
            rows[key] = got
    return rows


def rows_digest(rows: dict[str, list[dict]], salt: str = "") -> str:
    """A content hash of loaded rows (so a changed dataset is never answered from the cache)."""
    h = hashlib.sha256(salt.encode())
    h.update(json.dumps(rows, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


__all__ = ["hub_repo", "load_config", "hub_rows", "rows_digest", "HUB_REPO", "RETAIN_OF"]

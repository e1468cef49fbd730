"""`--dataset tofu`: locuslab/TOFU through `datasets`, tested offline on a local copy in the hub's layout."""
from __future__ import annotations

import json
import os
import sys

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # before `datasets` is imported: never the network here
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from unlearnlab.data.lm_sources import lm_source  # noqa: E402
from unlearnlab.data.qa import generate_qa  # noqa: E402
from unlearnlab.errors import ConfigError, DataError  # noqa: E402
from unlearnlab.models.tiny_lm import word_tokenizer  # noqa: E402

pytest.importorskip("datasets")
PERT = ("question", "answer", "paraphrased_answer", "perturbed_answer")
CONFIGS = ("full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90", "forget01_perturbed",
           "forget05_perturbed", "forget10_perturbed", "retain_perturbed", "real_authors_perturbed",
           "world_facts_perturbed")


def _write(path, rows, keys=("question", "answer")):
    path.write_text("\n".join(json.dumps({k: r[k] for k in keys}) for r in rows) + "\n")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A local copy of the hub repository: README.md whose `configs` name the JSON files, as locuslab/TOFU's does.
    10 authors x 3 facts; forget01/05/10 = the last 1/2/3 authors (nested), retainNN the others."""
    qa = generate_qa(10, facts=3, seed=2, style="short")
    d = tmp_path_factory.mktemp("tofu_hub")
    by = {a: [r for r in qa.rows if r["author"] == a] for a in qa.authors}
    for n, k in (("01", 1), ("05", 2), ("10", 3)):
        gone = [r for a in qa.authors[-k:] for r in by[a]]
        _write(d / f"forget{n}.json", gone)
        _write(d / f"forget{n}_perturbed.json", gone, PERT)
        _write(d / f"retain{100 - int(n)}.json", [r for a in qa.authors[:-k] for r in by[a]])
        _write(d / f"holdout{n}.json", qa.holdout_rows[:k * 2], PERT)  # a file without a config, as on the hub
    _write(d / "full.json", qa.rows, ("question", "answer", "author"))  # authors for val: (TOFU: 20 rows each)
    _write(d / "retain_perturbed.json", qa.rows[:18], PERT)
    utility = generate_qa(2, facts=2, seed=8, style="short").rows
    _write(d / "real_authors_perturbed.json", utility, PERT)
    _write(d / "world_facts_perturbed.json", utility[:2], PERT)
    configs = "".join(f"- config_name: {c}\n  data_files: {c}.json\n" for c in CONFIGS)
    (d / "README.md").write_text(f"---\nconfigs:\n{configs}---\n# TOFU (test copy)\n")
    return d, qa


@pytest.fixture()
def offline(hub, monkeypatch, tmp_path):
    import datasets

    monkeypatch.setenv("UNLEARNLAB_TOFU_HUB", str(hub[0]))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    import huggingface_hub.constants

    for module, name in ((datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE"),
                         (huggingface_hub.constants, "HF_HUB_OFFLINE")):  # in case they were imported before
        monkeypatch.setattr(module, name, True, raising=False)
    return hub


def _build(src):
    return src.build(word_tokenizer(src.texts), 64, {})


def test_forget_percent_picks_the_matching_forget_and_retain_splits(offline):
    d, qa = offline
    for pct, k in (("1%", 1), ("5%", 2), ("10%", 3)):
        src = lm_source("tofu", pct)
        data = _build(src)
        rows = data.extra["rows"]
        assert {r["author"] for r in data.forget.rows} == set(qa.authors[-k:])  # full.json's rows
        kept = {r["question"] for r in qa.rows if r["author"] in qa.authors[:-k]}
        assert {r["question"] for r in data.retain.rows} == kept  # trained on: every retainNN row
        # scored on: retain_perturbed's rows (its first 18 rows, 6 authors, all retained), as TOFU scores them
        assert [r["question"] for r in rows["retain"]] == [r["question"] for r in qa.rows[:18]]
        assert all(r["paraphrased_answer"] and len(r["perturbed_answer"]) == 3 for r in rows["forget"])
        assert len(rows["holdout"]) == k * 2 and set(data.extra["utility"]) == {"real_authors", "world_facts"}
        assert all(r["perturbed_answer"] for r in rows["retain"])
    named = lm_source("tofu:forget05", "10%")  # the dataset name fixes the split
    assert named.digest == lm_source("tofu", "5%").digest != lm_source("tofu", "10%").digest
    assert len(_build(named).forget_idx) == 6


def test_validation_split_avoids_every_forget_split_and_the_holdout(offline):
    d, qa = offline
    data = _build(lm_source("tofu", "val:1%"))
    val_authors = {r["author"] for r in data.forget.rows}
    assert len(val_authors) == 1 and not val_authors & set(qa.authors[-3:])
    assert len(data.retain_idx) == len(qa.rows) - 3  # the reported forget author is retained
    assert lm_source("tofu", "val:1%").digest != lm_source("tofu", "1%").digest


def test_bad_splits_missing_configs_and_missing_datasets_fail_clearly(offline, monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="1%, 5% and 10%"):
        lm_source("tofu", "3%")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("---\nconfigs:\n- config_name: other\n  data_files: x.json\n---\n")
    (tmp_path / "empty" / "x.json").write_text('{"question": "Q?", "answer": "A"}\n')
    monkeypatch.setenv("UNLEARNLAB_TOFU_HUB", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="no config 'full'.*tofu:DIR"):
        lm_source("tofu", "10%")
    monkeypatch.setenv("UNLEARNLAB_TOFU_HUB", "locuslab/TOFU")  # offline: the hub cannot be reached
    with pytest.raises(DataError, match="tofu:DIR"):
        lm_source("tofu", "10%")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(DataError, match=r"pip install 'unlearnlab\[llm\]'"):
        lm_source("tofu", "10%")

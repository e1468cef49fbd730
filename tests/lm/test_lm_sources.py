"""LM runs on files: TOFU's JSON layout (tofu:DIR and explicit paths) and MUSE-style corpora (corpus:DIR)."""
from __future__ import annotations

import json

import pytest

from unlearnlab.data.lm_sources import lm_source
from unlearnlab.data.qa import generate_qa
from unlearnlab.errors import ConfigError, DataError
from unlearnlab.store import Store
from unlearnlab.tasks.lm import run_lm

BASE = {"task": "qa", "model": "tiny", "seeds": [0], "recipe": {"epochs": 60}, "epochs": 2, "device": "cpu"}


def _write(path, rows, keys=("question", "answer")):
    path.write_text("\n".join(json.dumps({k: r[k] for k in keys if k in r}) for r in rows))


@pytest.fixture(scope="module")
def tofu_dir(tmp_path_factory):
    """A TOFU-layout folder: full.json (question/answer only), forget10.json and forget10_perturbed.json (one of
    six authors), holdout10.json, retain_perturbed.json (two retain authors: the evaluated retain set)."""
    qa = generate_qa(6, facts=4, seed=0, style="short")
    d = tmp_path_factory.mktemp("tofu")
    forget = [r for r in qa.rows if r["author"] == qa.authors[2]]
    _write(d / "full.json", qa.rows)
    _write(d / "forget10.json", forget)
    _write(d / "forget10_perturbed.json", forget, ("question", "answer", "paraphrased_answer", "perturbed_answer"))
    _write(d / "holdout10.json", qa.holdout_rows, ("question", "answer", "paraphrased_answer", "perturbed_answer"))
    kept = [r for r in qa.rows if r["author"] in qa.authors[:2]]
    _write(d / "retain_perturbed.json", kept, ("question", "answer", "paraphrased_answer", "perturbed_answer"))
    return d, qa, forget


def test_tofu_folder_run_trains_on_full_and_forgets_the_forget_file(tofu_dir, tmp_path):
    d, qa, forget = tofu_dir
    store = Store(tmp_path / "s")
    spec = {**BASE, "dataset": f"tofu:{d}", "forget": "10%", "methods": ["grad_diff"]}
    records = run_lm(spec, store=store)
    by = {r["spec"]["method"]: r["metrics"] for r in records}
    assert by["original"]["forget_ROUGE"] > by["retrain"]["forget_ROUGE"]  # only the target saw D_f
    assert 0 <= by["grad_diff"]["Forget Quality"] <= 1  # perturbed answers came from forget10_perturbed.json
    assert "MIA-LOSS" in by["original"]  # holdout10.json gave the MIA non-members
    assert 0 <= by["original"]["retain_TruthRatio"] <= 1  # retain metrics on retain_perturbed.json, as TOFU
    assert records[0]["spec"]["data_digest"]
    # the digest keys resumption on file content: an edited file is a new run, an unchanged one is reused
    assert len(run_lm(spec, store=store)) == 3 and store.count_runs() == 3
    rows = [json.loads(x) for x in (d / "holdout10.json").read_text().splitlines()]
    _write(d / "holdout10.json", rows[:-1], ("question", "answer", "paraphrased_answer", "perturbed_answer"))
    assert lm_source(f"tofu:{d}", "10%").digest != records[0]["spec"]["data_digest"]
    _write(d / "holdout10.json", rows, ("question", "answer", "paraphrased_answer", "perturbed_answer"))


def test_tofu_explicit_files_and_forget_rows_carry_perturbations(tofu_dir):
    from unlearnlab.models.lm import load_lm

    d, qa, forget = tofu_dir
    src = lm_source(f"tofu:train={d / 'full.json'},forget={d / 'forget10_perturbed.json'}")
    assert src.kind == "tofu" and src.digest
    _, tok = load_lm("tiny", texts=src.texts)
    data = src.build(tok, 64, {})
    assert len(data.forget_idx) == len(forget) == 4
    rows = data.extra["rows"]["forget"]
    assert [r["question"] for r in rows] == [r["question"] for r in forget]
    assert all(r["perturbed_answer"] and r["paraphrased_answer"] for r in rows)
    assert not data.extra["rows"]["holdout"]  # no holdout file given
    # without retain_perturbed.json every retain row is evaluated; with it, exactly its rows (TOFU's 400-row set)
    assert len(data.extra["rows"]["retain"]) == len(qa.rows) - len(forget)
    full = lm_source(f"tofu:{d}", "10%").build(tok, 64, {})
    kept = [r["question"] for r in qa.rows if r["author"] in qa.authors[:2]]
    assert [r["question"] for r in full.extra["rows"]["retain"]] == kept
    assert all(r["perturbed_answer"] for r in full.extra["rows"]["retain"])


def test_tofu_bad_inputs_fail_clearly_and_write_nothing(tofu_dir, tmp_path):
    d, qa, _ = tofu_dir
    with pytest.raises(ConfigError, match="1%, 5% and 10%"):
        lm_source(f"tofu:{d}", "3%")
    with pytest.raises(DataError, match="does not exist"):
        lm_source(f"tofu:{tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match="needs forget=PATH"):
        lm_source(f"tofu:train={d / 'full.json'}")
    with pytest.raises(ConfigError, match="Bad tofu dataset option"):
        lm_source(f"tofu:train={d / 'full.json'},forgot=x")
    other = tmp_path / "other.json"
    _write(other, generate_qa(3, facts=2, seed=7, style="short").rows)  # questions never trained on
    store = Store(tmp_path / "s")
    with pytest.raises(DataError, match="None of the forget questions occur in the training data"):
        run_lm({**BASE, "dataset": f"tofu:train={d / 'full.json'},forget={other}", "methods": ["ga"]}, store=store)
    assert store.count_runs() == 0


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """forget/ (two .txt documents), retain/ (four), holdout.txt (blank-line separated)."""
    qa = generate_qa(8, facts=10, seed=3, style="sentence")
    bios = {}
    for r in qa.rows + qa.holdout_rows:
        bios.setdefault(r["author"], []).append(r["answer"])
    texts = [" ".join(v) for v in bios.values()]
    d = tmp_path_factory.mktemp("corpus")
    (d / "forget").mkdir()
    (d / "retain").mkdir()
    for i, t in enumerate(texts[:2]):
        (d / "forget" / f"{i}.txt").write_text(t)
    for i, t in enumerate(texts[2:6]):
        (d / "retain" / f"{i}.txt").write_text(t)
    (d / "holdout.txt").write_text("\n\n".join(texts[6:]))
    return d


def test_corpus_run_scores_documents_and_ga_lowers_verbatim_memorisation(corpus_dir, tmp_path):
    store = Store(tmp_path / "s")
    errors: list[dict] = []
    spec = {**BASE, "dataset": f"corpus:{corpus_dir}", "methods": ["ga", "idk_nll"], "epochs": 3,
            "recipe": {"epochs": 80}}
    records = run_lm(spec, store=store, errors=errors)
    by = {r["spec"]["method"]: r["metrics"] for r in records}
    assert set(by) == {"original", "retrain", "ga"}
    assert by["original"]["VerbMem"] > by["retrain"]["VerbMem"]  # the target memorised the forget documents
    assert by["ga"]["VerbMem"] < by["original"]["VerbMem"]
    assert "PrivLeak" in by["ga"] and "MIA-MinK" in by["ga"]
    assert errors and errors[0]["method"] == "idk_nll" and "question/answer" in errors[0]["error"]


def test_corpus_bad_inputs(corpus_dir, tmp_path):
    with pytest.raises(ConfigError, match="needs a retain corpus"):
        lm_source(f"corpus:forget={corpus_dir / 'forget'}")
    with pytest.raises(DataError, match="does not exist"):
        lm_source(f"corpus:{tmp_path / 'missing'}")
    store = Store(tmp_path / "s")
    with pytest.raises(ConfigError, match="no QA rows"):
        run_lm({**BASE, "dataset": f"corpus:{corpus_dir}", "methods": ["ga"], "attacks": ["relearn"]}, store=store)
    assert store.count_runs() == 0
    with pytest.raises(ConfigError, match="not a language-model dataset"):
        lm_source("cifar10")


def test_corpus_verbmem_pairs_file_is_used_and_checked(corpus_dir, tmp_path):
    """DIR/verbmem/forget.json (MUSE's fixed prompt/continuation pairs) feeds VerbMem; a bad file is a DataError."""
    import shutil

    from unlearnlab.models.lm import load_lm

    d = tmp_path / "muse"
    shutil.copytree(corpus_dir, d)
    (d / "verbmem").mkdir()
    pairs = [{"prompt": "The first words", "gt": "and the rest of the passage"}]
    (d / "verbmem" / "forget.json").write_text(json.dumps(pairs))
    src = lm_source(f"corpus:{d}")
    assert src.digest != lm_source(f"corpus:{corpus_dir}").digest  # the pairs file is part of the data
    _, tok = load_lm("tiny", texts=src.texts)
    assert src.build(tok, 64, {}).extra["verbmem"] == pairs
    assert "verbmem" not in lm_source(f"corpus:{d}", "val:10%").build(tok, 64, {}).extra  # not for validation
    (d / "verbmem" / "forget.json").write_text(json.dumps([{"prompt": "only a prompt"}]))
    with pytest.raises(DataError, match="verbmem/forget.json"):
        lm_source(f"corpus:{d}")

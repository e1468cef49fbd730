"""Robustness attacks reachable from an LM run (spec key `attacks`), evaluation-row caps and the system prompt."""
from __future__ import annotations

import pytest

from unlearnlab.errors import ConfigError
from unlearnlab.tasks.lm import evaluation_rows, record_spec, run_lm, with_system_prompt
from unlearnlab.tasks.lm_attacks import attack_configs, parse_attacks

SPEC = {"task": "qa", "model": "tiny", "dataset": "qa:authors=8,facts=6", "forget": "10%", "methods": ["ga"],
        "seeds": [0], "recipe": {"epochs": 20}, "epochs": 3, "device": "cpu",
        "attacks": ["relearn", "leak", "paraphrase"], "eval_rows": 12,
        "attack_options": {"leak": {"k": 2, "grid": [[1.0, 1.0]]}, "relearn": {"steps": 8}}}
# relearn at the tiny preset's lr 3e-4: at the former 3e-3, with every fact value unique to its author
# (data/qa.py), 8 steps on 3 forget answers overfit them and lower the held-out ones (Prob 0.109 -> 0.041); at
# 3e-4 they recover (0.109 -> 0.126 of the target's 0.196).


def test_attacks_reach_every_record_and_resume(tmp_path):
    from unlearnlab.store import Store

    store = Store(tmp_path / "store")
    records = run_lm(SPEC, store=store)
    by = {r["spec"]["method"]: r for r in records}
    assert list(by) == ["original", "retrain", "ga"]
    for r in records:
        m = r["metrics"]
        assert {"Relearn-recovery-ROUGE", "Relearn-recovery-Prob", "leak@2", "leak@2[T=1.0,p=1.0]",
                "forget_paraphrased_ROUGE", "forget_paraphrased_Prob"} <= set(m)
        assert r["timings"]["attack_s"] > 0 and r["timings"]["eval_s"] > 0
        assert r["spec"]["attacks"] == ["relearn", "leak", "paraphrase"] and r["spec"]["eval_rows"] == 12
        assert r["spec"]["attack_options"]["relearn"]["steps"] == 8
        # the target/oracle anchors are computed once per seed and shared
        assert m["relearn_ROUGE_target"] == by["original"]["metrics"]["relearn_ROUGE_target"]
    orig, oracle, ga = (by[k]["metrics"] for k in ("original", "retrain", "ga"))
    # on the target itself nothing is forgotten, so there is nothing to recover
    assert orig["relearn_Prob_before"] == pytest.approx(orig["relearn_Prob_target"])
    # GA forgot, and a few relearning steps on the other half of D_f bring the held-out answers back
    assert ga["forget_Prob"] < orig["forget_Prob"] and ga["relearn_Prob_before"] < orig["relearn_Prob_target"]
    assert ga["relearn_Prob_after"] > ga["relearn_Prob_before"]
    assert ga["Relearn-recovery-Prob"] == pytest.approx(
        (ga["relearn_Prob_after"] - ga["relearn_Prob_before"])
        / (ga["relearn_Prob_target"] - ga["relearn_Prob_before"]))
    assert orig["leak@2"] >= oracle["leak@2"] and 0.0 <= ga["leak@2"] <= 1.0
    assert 0.0 <= ga["forget_paraphrased_ROUGE"] <= 1.0
    count = store.count_runs()
    again = run_lm(SPEC, store=store)
    assert store.count_runs() == count and [r["id"] for r in again] == [r["id"] for r in records]


def test_attack_spec_validation():
    assert parse_attacks("leak, relearn") == ("relearn", "leak") and parse_attacks(None) == ()
    with pytest.raises(ConfigError, match="relearn"):
        parse_attacks(["relearnn"])
    with pytest.raises(ConfigError, match="steps"):
        attack_configs(("relearn",), "tiny", {"relearn": {"stepz": 3}})
    with pytest.raises(ConfigError, match="frac"):
        attack_configs(("relearn",), "hf", {"relearn": {"frac": 1.0}})
    with pytest.raises(ConfigError, match="no options"):
        attack_configs(("paraphrase",), "hf", {"paraphrase": {"k": 1}})
    assert attack_configs(("relearn",), "tiny", None)["relearn"].lr == 3e-4  # the family preset
    with pytest.raises(ConfigError, match="attack"):  # fails before anything is trained
        run_lm({**SPEC, "attacks": ["jailbreak"]})
    msgs: list[str] = []
    with pytest.raises(ConfigError, match=">= 2 forget rows"):  # one forget row: caught before any fine-tune
        run_lm({**SPEC, "dataset": "qa:authors=10,facts=1"}, progress=msgs.append)
    assert not any("fine-tuning" in m for m in msgs)
    plain = record_spec({**SPEC, "attacks": [], "eval_rows": 0}, "ga", 0, {})
    assert "attacks" not in plain and "eval_rows" not in plain and "system_prompt" not in plain


def test_evaluation_rows_and_system_prompt():
    from unlearnlab.data.qa import generate_qa, make_qa_data
    from unlearnlab.models.lm_format import prompt_ids
    from unlearnlab.models.tiny_lm import build_tiny_lm

    qa = generate_qa(10, facts=3)
    _, tok = build_tiny_lm("tiny", texts=qa.texts() + ["Answer briefly ."])
    data = make_qa_data(tok, qa, "10%", utility={"world_facts": qa.rows[:20]})
    full, cut = evaluation_rows(data), evaluation_rows(data, 5, seed=1)
    assert len(full["retain"]) == 27 and len(cut["retain"]) == 5 and len(cut["world_facts"]) == 5
    assert cut["forget"] == full["forget"] and cut["holdout"] == full["holdout"] and "test" not in cut
    assert cut == evaluation_rows(data, 5, seed=1) and all(r in full["retain"] for r in cut["retain"])
    before = prompt_ids(tok, "Where was Ari Brann born?")
    with_system_prompt(tok, "Answer briefly .")
    after = prompt_ids(tok, "Where was Ari Brann born?")
    words = tok.convert_ids_to_tokens(after)
    assert len(after) == len(before) + 4 and words[words.index("<|system|>") + 1] == "Answer"
    tok.chat_template = None
    with pytest.raises(ConfigError, match="chat template"):
        with_system_prompt(tok, "x")

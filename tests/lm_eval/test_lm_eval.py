"""evaluate_lm end to end on a tiny Llama, plus the robustness attacks."""
from __future__ import annotations

import copy
import math
import types

import numpy as np
import pytest
import torch

from unlearnlab.errors import UnlearnLabError
from unlearnlab.eval import lm_attacks
from unlearnlab.eval import lm_metrics as M
from unlearnlab.eval.lm_eval import LMOutputCache, evaluate_lm, greedy_answers, split_outputs
from unlearnlab.eval.rouge import rouge_l_batch
from unlearnlab.models.lm_format import collate, encode_qa, pad_id

KEYS = {"forget_Prob", "forget_ROUGE", "forget_TruthRatio", "retain_Prob", "retain_ROUGE", "Forget Quality",
        "Model Utility", "PrivLeak", "MIA-LOSS", "MIA-ZLib", "MIA-MinK", "MIA-MinK++", "ExactMem-forget",
        "ExtractionStrength-forget", "KnowMem-forget", "KnowMem-retain"}
UTIL = ("retain", "real_authors")


@pytest.fixture(scope="module")
def results(lm_target, lm_oracle, lm_tok, lm_rows):
    cache = LMOutputCache()
    data = types.SimpleNamespace(extra={"rows": lm_rows})
    # the fixture has no world_facts rows: Model Utility averages the two sets present, by an explicit choice
    tgt = evaluate_lm(lm_target, lm_tok, data, reference=lm_oracle, cache=cache, utility_sets=UTIL)
    passes = cache.passes
    orc = evaluate_lm(lm_oracle, lm_tok, data, reference=lm_oracle, cache=cache, utility_sets=UTIL)
    return tgt, orc, passes, cache.passes


@pytest.fixture(scope="module")
def unlearned(lm_target, lm_tok, lm_rows):
    """The target after gradient ascent on D_f until its forget answers are gone."""
    m = copy.deepcopy(lm_target).train()
    batch = collate([encode_qa(lm_tok, r["question"], r["answer"]) for r in lm_rows["forget"]], pad_id(lm_tok))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(30):
        loss = -m(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if -loss.item() > 8:
            break
    return m.eval()


def test_all_documented_keys_are_returned(results):
    tgt, orc, _, _ = results
    assert KEYS <= set(tgt) and KEYS <= set(orc)
    assert all(math.isfinite(v) for v in tgt.values())


def test_target_remembers_what_the_oracle_never_saw(results):
    tgt, orc, _, _ = results
    assert tgt["forget_ROUGE"] > 0.95 and tgt["forget_Prob"] > 0.9 and tgt["ExactMem-forget"] > 0.95
    assert orc["forget_ROUGE"] < tgt["forget_ROUGE"] - 0.3 and orc["forget_Prob"] < 0.2
    assert tgt["retain_ROUGE"] > 0.95 and orc["retain_ROUGE"] > 0.95
    assert tgt["MIA-LOSS"] > 0.9  # forget answers far more likely than holdout ones
    assert tgt["PrivLeak"] < -50 and orc["PrivLeak"] == pytest.approx(0.0)
    assert orc["Forget Quality"] == pytest.approx(1.0) and tgt["Forget Quality"] < 1.0


def test_values_match_direct_computation(results, lm_target, lm_oracle, lm_tok, lm_rows):
    tgt = results[0]
    fo = split_outputs(lm_target, lm_tok, lm_rows["forget"])
    ref = split_outputs(lm_oracle, lm_tok, lm_rows["forget"])
    r_t, r_o = M.truth_ratio(fo.p_paraphrased, fo.p_perturbed), M.truth_ratio(ref.p_paraphrased, ref.p_perturbed)
    assert tgt["forget_Prob"] == pytest.approx(float(fo.answer.p_bar.mean()))
    assert tgt["forget_TruthRatio"] == pytest.approx(M.forget_truth_ratio(r_t))
    assert tgt["Forget Quality"] == pytest.approx(M.forget_quality(r_t, r_o))
    gens = greedy_answers(lm_target, lm_tok, [r["question"] for r in lm_rows["retain"]])
    assert tgt["retain_ROUGE"] == pytest.approx(rouge_l_batch([r["answer"] for r in lm_rows["retain"]], gens).mean())
    ra = split_outputs(lm_target, lm_tok, lm_rows["real_authors"])
    ra_prob = M.normalized_prob(ra.answer.p_bar, ra.p_perturbed)  # p̄(a) / (p̄(a) + Σ p̄(perturbed))
    parts = [tgt["retain_Prob"], tgt["retain_ROUGE"], tgt["retain_TruthRatio"],
             ra_prob, tgt["real_authors_ROUGE"], tgt["real_authors_TruthRatio"]]
    assert tgt["real_authors_Prob"] == pytest.approx(ra_prob)
    assert tgt["Model Utility"] == pytest.approx(M.harmonic_mean(parts))


def test_cache_reuses_the_reference_passes(results):
    _, _, after_first, after_second = results
    # first call: 4 tf + 3 generation passes for the target, 2 tf for the oracle; second: only the oracle's
    # generations and its retain / real-author passes are new
    assert after_first == 9 and after_second - after_first == 2 + 3


def test_verbmem_and_bad_rows(lm_target, lm_tok, lm_rows):
    docs = [r["answer"] + " " + r["answer"] for r in lm_rows["forget"]]
    data = types.SimpleNamespace(extra={"rows": {"forget": lm_rows["forget"]}, "corpora": {"forget": docs}})
    res = evaluate_lm(lm_target, lm_tok, data, verbmem_prefix=3, verbmem_new_tokens=6)
    assert 0.0 <= res["VerbMem"] <= 1.0 and "PrivLeak" not in res and "MIA-LOSS" not in res
    with pytest.raises(UnlearnLabError, match="extra\\['rows'\\]"):
        evaluate_lm(lm_target, lm_tok, types.SimpleNamespace(extra={}))
    with pytest.raises(UnlearnLabError, match="'forget' split"):
        evaluate_lm(lm_target, lm_tok, {"retain": lm_rows["retain"]})
    with pytest.raises(UnlearnLabError, match="string 'question'"):
        evaluate_lm(lm_target, lm_tok, {"forget": [{"question": "q"}]})
    with pytest.raises(UnlearnLabError, match="non-empty string"):
        evaluate_lm(lm_target, lm_tok, {"forget": [{"question": "Where ?", "answer": ""}]})


def test_leak_at_k_is_seeded_and_separates_target_from_oracle(lm_target, lm_oracle, lm_tok, lm_rows):
    kw = {"k": 4, "grid": ((1.0, 0.9),), "max_new_tokens": 10, "seed": 0}
    a = lm_attacks.leak_at_k(lm_target, lm_tok, lm_rows["forget"], **kw)
    assert a == lm_attacks.leak_at_k(lm_target, lm_tok, lm_rows["forget"], **kw)
    assert a["leak@4"] == 1.0 and set(a) == {"leak@4[T=1.0,p=0.9]", "leak@4"}
    assert lm_attacks.leak_at_k(lm_oracle, lm_tok, lm_rows["forget"], **kw)["leak@4"] < 1.0


def test_paraphrased_questions(lm_target, lm_tok, lm_rows):
    res = lm_attacks.paraphrased_eval(lm_target, lm_tok, lm_rows["forget"], max_new_tokens=10)
    assert set(res) == {"paraphrased_Prob", "paraphrased_ROUGE"} and 0 <= res["paraphrased_ROUGE"] <= 1
    with pytest.raises(UnlearnLabError, match="paraphrased_question"):
        lm_attacks.paraphrased_eval(lm_target, lm_tok, lm_rows["real_authors"])


def test_relearning_recovers_forgotten_answers(unlearned, lm_target, lm_oracle, lm_tok, lm_rows):
    before = evaluate_lm(unlearned, lm_tok, {"forget": lm_rows["forget"]})
    assert before["forget_Prob"] < 0.1
    kw = {"target": lm_target, "reference": lm_oracle, "steps": 15, "lr": 1e-2, "batch_size": 2, "seed": 0,
          "max_new_tokens": 10}
    res = lm_attacks.relearn_attack(unlearned, lm_tok, lm_rows["forget"], **kw)
    assert res == lm_attacks.relearn_attack(unlearned, lm_tok, lm_rows["forget"], **kw)  # seeded
    assert res["relearn_Prob_after"] > res["relearn_Prob_before"]
    assert res["Relearn-recovery-Prob"] == pytest.approx(
        (res["relearn_Prob_after"] - res["relearn_Prob_before"])
        / (res["relearn_Prob_target"] - res["relearn_Prob_before"]))
    assert {"relearn_ROUGE_oracle", "Relearn-recovery-ROUGE"} <= set(res)
    assert np.isfinite(res["Relearn-recovery-Prob"])
    with pytest.raises(UnlearnLabError, match="frac"):
        lm_attacks.relearn_attack(unlearned, lm_tok, lm_rows["forget"], frac=1.5)


def test_document_corpus_gives_mia_privleak_and_verbmem(lm_target, lm_oracle, lm_tok, lm_rows):
    docs = {"forget": [r["answer"] for r in lm_rows["forget"]], "holdout": [r["answer"] for r in lm_rows["holdout"]]}
    data = types.SimpleNamespace(extra={"docs": docs})  # as data/corpus.py stores documents
    res = evaluate_lm(lm_target, lm_tok, data, reference=lm_oracle, verbmem_prefix=3, verbmem_new_tokens=4)
    assert set(res) == {"MIA-LOSS", "MIA-ZLib", "MIA-MinK", "MIA-MinK++", "PrivLeak", "VerbMem"}
    assert all(0.0 <= res[k] <= 1.0 for k in ("MIA-LOSS", "MIA-MinK", "VerbMem"))


def test_real_tofu_utility_files_feed_model_utility(lm_random, lm_tok, lm_rows):
    tofu = pytest.importorskip("unlearnlab.data.tofu")
    sets = tofu.utility_sets()
    if not sets:
        pytest.skip("TOFU utility files are not available on this machine")
    assert set(sets) == {"real_authors", "world_facts"}
    for rows in sets.values():  # TOFU shape: question, answer, a list of perturbed answers, no paraphrase
        assert all(isinstance(r["question"], str) and isinstance(r["perturbed_answer"], list) for r in rows)
    utility = {k: v[:4] for k, v in sets.items()}  # words outside the tiny vocabulary map to [UNK]
    data = types.SimpleNamespace(extra={"rows": {"forget": lm_rows["forget"], "retain": lm_rows["retain"]},
                                        "utility": utility})
    res = evaluate_lm(lm_random, lm_tok, data, max_new_tokens=4)
    for s in ("real_authors", "world_facts"):
        assert 0.0 <= res[f"{s}_Prob"] <= 1.0 and 0.0 <= res[f"{s}_TruthRatio"] <= 1.0
    assert 0.0 <= res["Model Utility"] <= 1.0

"""Evaluation parity with the reference code (OpenUnlearning, TOFU, MUSE) on hand-made inputs."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from unlearnlab.errors import UnlearnLabError
from unlearnlab.eval import lm_eval, lm_muse
from unlearnlab.eval import lm_metrics as M
from unlearnlab.eval.lm_mia import mia_aucs, mink_score, minkpp_score
from unlearnlab.eval.lm_outputs import TokenStats


def stats(seqs):
    """TokenStats from per-example lists of (logprob, correct)."""
    lp = np.array([x for s in seqs for x, _ in s], dtype=float)
    cor = np.array([c for s in seqs for _, c in s], dtype=bool)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    return TokenStats(lp, cor, np.zeros_like(lp), np.ones_like(lp), offsets)


def reference_tokenwise(target_logprobs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """OpenUnlearning's `tokenwise_logprobs` slicing, re-derived: labelled indices without the last one, then the
    positions start-1 .. end-1 of the shifted log-probs (position t predicts token t+1)."""
    idx = np.nonzero(labels != -100)[0][:-1]
    start, end = idx[0], idx[-1]
    return target_logprobs[start - 1:end]


def test_drop_last_removes_each_final_answer_token_like_openunlearning():
    # one sequence: 3 prompt tokens, then 4 answer tokens (the last is EOS); shifted log-probs of length 6
    labels = np.array([-100, -100, -100, 11, 12, 13, 2])
    shifted = np.array([-9.0, -8.0, -0.5, -0.1, -3.0, -0.01])  # position t predicts token t+1
    ours_all = shifted[2:]  # what teacher_forced keeps: the 4 answer tokens' log-probs
    ref = reference_tokenwise(shifted, labels)
    s = stats([[(x, True) for x in ours_all]]).drop_last()
    np.testing.assert_array_equal(s.logprob, ref)  # [-0.5, -0.1, -3.0]: the EOS's -0.01 is left out
    multi = stats([[(-1, True), (-2, False), (-3, True)], [(-4, True)], [(-5, False), (-6, True)]]).drop_last()
    assert multi.lengths.tolist() == [2, 1, 1]  # a one-token answer keeps its token
    np.testing.assert_array_equal(multi.logprob, [-1, -2, -4, -5])
    np.testing.assert_array_equal(multi.correct, [True, False, True, False])


def test_eos_changes_min_k_and_exact_memorisation_of_short_answers():
    # a short answer whose EOS is confidently predicted: including it changes Min-K% and ExactMem several-fold
    short = stats([[(-2.0, False), (-0.001, True)]])
    assert mink_score(short)[0] == pytest.approx(2.0)  # k=0.4 of 2 tokens -> 1 lowest: -2.0
    assert M.exact_memorization(short)[0] == 0.5 and M.exact_memorization(short.drop_last())[0] == 0.0
    forget = stats([[(-0.1, True), (-0.2, True), (-5.0, True)], [(-0.3, True), (-6.0, True)]])
    holdout = stats([[(-0.2, True), (-0.1, True), (-0.05, True)], [(-2.0, True), (-0.1, True)]])
    texts = ["a b", "c d"]
    dropped = mia_aucs(forget, holdout, texts, texts)
    kept = mia_aucs(forget, holdout, texts, texts, drop_last=False)
    assert dropped["MIA-LOSS"] == kept["MIA-LOSS"] and dropped["MIA-ZLib"] == kept["MIA-ZLib"]  # all tokens
    assert dropped["MIA-MinK"] == pytest.approx(
        _auc(mink_score(forget.drop_last()), mink_score(holdout.drop_last())))
    assert dropped["MIA-MinK"] != kept["MIA-MinK"]
    assert dropped["MIA-MinK++"] == pytest.approx(
        _auc(minkpp_score(forget.drop_last()), minkpp_score(holdout.drop_last())))


def _auc(f, h):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(np.r_[np.zeros(len(f)), np.ones(len(h))], np.r_[f, h])


def test_model_utility_never_silently_shrinks(lm_target, lm_tok, lm_rows):
    data = types.SimpleNamespace(extra={"rows": lm_rows})  # retain + real_authors, no world_facts
    with pytest.raises(UnlearnLabError, match="no 'world_facts' rows.*utility_sets"):
        lm_eval.evaluate_lm(lm_target, lm_tok, data, max_new_tokens=8, knowmem=False)
    bare = {**lm_rows, "real_authors": [{k: v for k, v in r.items() if k != "perturbed_answer"}
                                        for r in lm_rows["real_authors"]]}
    with pytest.raises(UnlearnLabError, match="TR is missing or NaN"):
        lm_eval.evaluate_lm(lm_target, lm_tok, bare, max_new_tokens=8, knowmem=False,
                            utility_sets=["retain", "real_authors"])
    res = lm_eval.evaluate_lm(lm_target, lm_tok, data, max_new_tokens=8, knowmem=False, utility_sets="retain")
    assert res["Model Utility"] == pytest.approx(
        M.harmonic_mean([res["retain_Prob"], res["retain_ROUGE"], res["retain_TruthRatio"]]))
    with pytest.raises(UnlearnLabError, match="utility_sets must name"):
        lm_eval.eval_config({"utility_sets": ["retain", "wiki"]})


def test_generation_defaults_to_200_new_tokens(monkeypatch, lm_target, lm_tok, lm_rows):
    seen = []
    real = lm_eval.generate_text

    def spy(*a, **k):
        seen.append(k["max_new_tokens"])
        return real(*a, **k)

    monkeypatch.setattr(lm_eval, "generate_text", spy)
    lm_eval.evaluate_lm(lm_target, lm_tok, {"forget": lm_rows["forget"]}, knowmem=False)
    assert seen == [200] and lm_eval.LMEvalConfig().max_new_tokens == 200
    lm_eval.evaluate_lm(lm_target, lm_tok, {"forget": lm_rows["forget"]}, knowmem=False, max_new_tokens=7)
    assert seen[-1] == 7


def test_muse_knowmem_prompt_and_cut():
    icl = [{"question": "Q1?", "answer": "A1."}, {"question": "Q2?", "answer": "A2."}]
    assert lm_muse.knowmem_prompt("Q3?", icl) == "Question: Q1?\nAnswer: A1.\n\nQuestion: Q2?\nAnswer: A2.\n\n" \
                                                 "Question: Q3?\nAnswer: "
    assert lm_muse.cut_at_stop("Paris.\n\nQuestion: more") == "Paris."
    assert lm_muse.cut_at_stop("Paris.\nQuestion: x") == "Paris."
    assert lm_muse.cut_at_stop("Paris. Question: x") == "Paris. "
    assert lm_muse.cut_at_stop("\n\nParis") == ""  # MUSE does not strip before cutting
    # F1 without stemming: 'books' and 'book' differ
    assert lm_muse.knowmem(["She writes books"], ["She writes book"]) == pytest.approx(2 / 3)


def test_knowmem_end_to_end_and_icl_source(lm_target, lm_oracle, lm_tok, lm_rows):
    data = types.SimpleNamespace(extra={"rows": lm_rows})
    tgt = lm_eval.evaluate_lm(lm_target, lm_tok, data, max_new_tokens=12, utility_sets=("retain", "real_authors"))
    assert 0.0 <= tgt["KnowMem-forget"] <= 1.0 and 0.0 <= tgt["KnowMem-retain"] <= 1.0
    icl = lm_eval._knowmem_icl({}, lm_rows, "forget", 3)
    assert icl == lm_rows["holdout"][:3]  # default: holdout questions, never trained on
    given = {"knowmem_icl": {"forget": lm_rows["retain"][:1]}}
    assert lm_eval._knowmem_icl(given, lm_rows, "forget", 3) == lm_rows["retain"][:1]


class _Tok:
    """Whitespace tokenizer with a BOS, enough for verbmem_pairs."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([0] if add_special_tokens else []) + [len(w) for w in text.split()]}

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=True):
        return " ".join("x" * i for i in ids if not (skip_special_tokens and i == 0))


def test_verbmem_pairs_cut_ground_truth_like_muse():
    prompts, gts = lm_muse.verbmem_pairs(_Tok(), [{"prompt": "p q", "gt": "aa bbb c dddd"}], [], 32, 3)
    assert prompts == ["p q"] and gts == ["xx xxx"]  # BOS + 2 words = the first 3 tokens
    with pytest.raises(UnlearnLabError, match="'prompt' and 'gt'"):
        lm_muse.verbmem_pairs(_Tok(), [{"prompt": "p"}], [], 32, 3)


def test_protocol_names_the_rouge_scorers():
    p = lm_eval.protocol(lm_eval.eval_config({"max_new_tokens": 50}))
    assert p["max_new_tokens"] == 50 and p["utility_sets"] == ["retain", "real_authors", "world_facts"]
    assert p["rouge_tofu"].endswith("(stemmer)") and p["rouge_muse"].endswith("(no stemmer)")


def test_verbmem_from_pairs_on_the_tiny_model(lm_target, lm_tok, lm_rows):
    pairs = [{"prompt": r["question"], "gt": r["answer"]} for r in lm_rows["forget"]]
    data = types.SimpleNamespace(extra={"rows": {"forget": lm_rows["forget"]}, "verbmem": pairs})
    with torch.no_grad():
        res = lm_eval.evaluate_lm(lm_target, lm_tok, data, max_new_tokens=8, knowmem=False, verbmem_new_tokens=10)
    assert 0.0 <= res["VerbMem"] <= 1.0

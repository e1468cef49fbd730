"""evaluate_lm: every TOFU / MUSE / MIA metric of a causal LM from one set of cached outputs per (model, split).

Data: `data.extra["rows"]` (or a plain dict passed as `data`) maps split names to lists of QA rows, each a dict with
`question`, `answer`, optional `paraphrased_answer` (str) and `perturbed_answer` (list of str), the TOFU JSON
fields. Splits used: forget, retain, holdout (never trained on; for MIAs), real_authors, world_facts; the last two
may also come from `data.extra["utility"]` (as data/qa.py and data/tofu.py store them). Optional forget documents
in `data.extra["docs"]` or `data.extra["corpora"]` (`{"forget": [text, ...]}`) enable MUSE VerbMem.

Returned keys (ROUGE and probabilities in [0, 1]):
- forget_Prob / retain_Prob: mean p̄(a|q); forget_ROUGE / retain_ROUGE: ROUGE-L recall with stemming of greedy
  answers of up to `max_new_tokens` = 200 tokens (TOFU / OpenUnlearning).
- forget_TruthRatio: mean min(R, 1/R) on D_f; retain_TruthRatio (and real_authors_*, world_facts_*): TR-score.
- Forget Quality: KS-test p-value of R on D_f against `reference` (the retain oracle); Forget KS: the KS statistic D
  itself (its p-value takes few distinct values on a small D_f). Need `reference`.
- Model Utility: harmonic mean of the nine {Prob, ROUGE, TR-score} x {retain, real authors, world facts}, each also
  reported ({split}_Prob / _ROUGE / _TruthRatio). A missing set or a NaN component is a DataError unless the
  caller names the sets it accepts (`utility_sets`, recorded with every run); data with none of the three sets
  (e.g. forget rows only) has no Model Utility key.
- PrivLeak: MUSE's (AUC − AUC_oracle)/AUC_oracle × 100 with Min-40% forget vs holdout. Needs `reference`.
- MIA-LOSS / MIA-ZLib / MIA-MinK / MIA-MinK++: AUC forget-vs-holdout (1 = forget looks member-like, 0.5 ideal).
- MIA-MinK / MIA-MinK++, ExactMem-forget, ExtractionStrength-forget leave out each answer's final labelled token
  (its EOS) as OpenUnlearning does (`drop_last_token`); MIA-LOSS / MIA-ZLib read every answer token.
- ExactMem-forget, ExtractionStrength-forget: means over D_f. KnowMem-forget / KnowMem-retain and VerbMem: MUSE's
  protocol (eval/lm_muse.py: few-shot "Question:/Answer:" prompt, cut at a blank line, ROUGE-L F1 without
  stemming; VerbMem from prompt/continuation pairs).
Document-only data (no `rows`, MUSE style): MIA-* and PrivLeak on forget vs holdout documents (their first
`max_length` tokens), and VerbMem.
`target` is accepted for symmetry with the attacks (lm_attacks.relearn_attack uses it); no key here needs it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from ..config import build, param, to_dict
from ..errors import DataError, check
from . import lm_metrics as M
from . import lm_muse as MUSE
from .lm_mia import auc, mia_aucs, mink_score, token_view
from .lm_outputs import TokenStats, generate_text, teacher_forced
from .rouge import rouge_l_batch, scorer_name

SPLITS = ("forget", "retain", "holdout", "real_authors", "world_facts")
UTILITY_SPLITS = ("retain", "real_authors", "world_facts")
GENERATED = ("forget", "retain", "real_authors", "world_facts")


@dataclasses.dataclass(frozen=True)
class LMEvalConfig:
    """How language-model metrics are computed; the defaults are the reference code's (TOFU / OpenUnlearning /
    MUSE), each deviation is an explicit option recorded with the run."""

    max_new_tokens: int = param(200, "greedy answer length for ROUGE (OpenUnlearning: 200 new tokens)", low=1)
    batch_size: int = param(16, "examples per forward pass / generation batch", low=1)
    max_length: int = param(512, "maximum tokens of a teacher-forced example", low=8)
    drop_last_token: bool = param(True, "leave each answer's final labelled token (EOS) out of Min-K%, Min-K%++, "
                                        "exact memorisation and extraction strength, as OpenUnlearning does; False "
                                        "scores every answer token")
    utility_sets: tuple = param(UTILITY_SPLITS, "the sets Model Utility must average (TOFU: retain, real_authors, "
                                                "world_facts); a missing one is an error, so fewer is a recorded "
                                                "choice")
    knowmem: bool = param(True, "compute MUSE KnowMem on the forget and retain questions (32-token generations)")
    knowmem_shots: int = param(3, "in-context examples of the KnowMem prompt when the data ships none (MUSE ships "
                                  "knowmem/*_qa_icl.json); taken from the holdout rows", low=0)
    knowmem_new_tokens: int = param(32, "KnowMem generation length (MUSE: 32)", low=1)
    verbmem_prefix: int = param(32, "prompt tokens per forget document when no VerbMem pairs are given", low=1)
    verbmem_new_tokens: int = param(128, "VerbMem generation length (MUSE: 128)", low=1)


def eval_config(options: dict | LMEvalConfig | None = None) -> LMEvalConfig:
    """An LMEvalConfig from a dict of overrides (unknown keys get a did-you-mean)."""
    if isinstance(options, LMEvalConfig):
        return options
    opts = dict(options or {})
    if "utility_sets" in opts:
        sets = opts["utility_sets"]
        opts["utility_sets"] = tuple(sets.split(",") if isinstance(sets, str) else sets)
        bad = set(opts["utility_sets"]) - set(UTILITY_SPLITS)
        check(not bad and bool(opts["utility_sets"]), DataError,
              f"utility_sets must name one or more of {', '.join(UTILITY_SPLITS)}. Got {sorted(bad) or '[]'} instead.")
    return build(LMEvalConfig, opts, what="evaluation")


def protocol(cfg: LMEvalConfig) -> dict[str, Any]:
    """What produced the numbers, for the run record: the settings plus the ROUGE scorer of each protocol."""
    return {**to_dict(cfg), "rouge_tofu": scorer_name(True), "rouge_muse": scorer_name(False)}


@dataclasses.dataclass
class SplitOutputs:
    """Teacher-forced statistics of one split: answers, paraphrases (or the answers) and NaN-padded perturbed p̄."""

    answer: TokenStats
    p_paraphrased: np.ndarray
    p_perturbed: np.ndarray | None  # [n, m]; None when no row has perturbed answers
    has_perturbed: np.ndarray       # bool [n]


def rows_of(data: Any) -> dict[str, list[dict]]:
    """The QA rows per split from an UnlearnData (`extra['rows']`) or a plain dict of splits."""
    extra = {} if isinstance(data, dict) else getattr(data, "extra", {})
    rows = data if isinstance(data, dict) else extra.get("rows")
    if isinstance(rows, dict) and extra.get("utility"):
        rows = {**extra["utility"], **rows}  # TOFU real_authors / world_facts live in extra['utility']
    check(isinstance(rows, dict) and bool(rows), DataError,
          "Language-model evaluation needs data.extra['rows'] = {'forget': [...], 'retain': [...], ...}, "
          "each row a dict with 'question' and 'answer'; load the data with a QA dataset.")
    for split, rs in rows.items():
        for i, r in enumerate(rs):
            check(isinstance(r, dict) and isinstance(r.get("question"), str) and isinstance(r.get("answer"), str),
                  DataError, f"Row {i} of split {split!r} must be a dict with string 'question' and 'answer'; "
                  f"got {r!r:.120}.")
    return rows


def _fingerprint(rows: Sequence[dict], *extra: object) -> str:
    text = json.dumps([rows, [str(e) for e in extra]], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_outputs(model: nn.Module, tokenizer: Any, rows: Sequence[dict], *, batch_size: int = 16,
                  max_length: int = 512) -> SplitOutputs:
    """Teacher-forced stats for answers, paraphrased and perturbed answers of `rows`, in one batched pass."""
    from ..models.lm_format import encode_qa, pad_id

    n = len(rows)
    feats = [encode_qa(tokenizer, r["question"], r["answer"], max_length=max_length) for r in rows]
    para_idx = [i for i, r in enumerate(rows) if r.get("paraphrased_answer")]
    feats += [encode_qa(tokenizer, rows[i]["question"], rows[i]["paraphrased_answer"], max_length=max_length)
              for i in para_idx]
    pert = [(i, j, a) for i, r in enumerate(rows) for j, a in enumerate(r.get("perturbed_answer") or [])]
    feats += [encode_qa(tokenizer, rows[i]["question"], a, max_length=max_length) for i, _, a in pert]
    stats = teacher_forced(model, feats, pad_id(tokenizer), batch_size)
    answer = stats.select(np.arange(n))
    p_all = stats.p_bar
    p_para = answer.p_bar.copy()
    p_para[para_idx] = p_all[n:n + len(para_idx)]
    p_pert = None
    has = np.zeros(n, dtype=bool)
    if pert:
        width = max(j for _, j, _ in pert) + 1
        p_pert = np.full((n, width), np.nan)
        rows_i = np.array([i for i, _, _ in pert])
        p_pert[rows_i, np.array([j for _, j, _ in pert])] = p_all[n + len(para_idx):]
        has[rows_i] = True
    return SplitOutputs(answer, p_para, p_pert, has)


def greedy_answers(model: nn.Module, tokenizer: Any, questions: Sequence[str], *, batch_size: int = 16,
                   max_new_tokens: int = 200) -> list[str]:
    """Greedy answers (decoded, answer only) to `questions`, batched with left padding."""
    from ..models.lm_format import prompt_ids

    prompts = [prompt_ids(tokenizer, q) for q in questions]
    return generate_text(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)


class LMOutputCache:
    """Outputs per (model object, split, rows, settings): pass one cache to reuse the oracle's passes across calls."""

    def __init__(self) -> None:
        self._store: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Any]] = weakref.WeakKeyDictionary()
        self.passes = 0

    def get(self, model: nn.Module, key: tuple, compute) -> Any:
        """The cached value for (`model`, `key`), computing it with `compute()` the first time."""
        store = self._store.setdefault(model, {})
        if key not in store:
            store[key] = compute()
            self.passes += 1
        return store[key]


def _truth(out: SplitOutputs) -> np.ndarray:
    check(out.p_perturbed is not None, DataError, "Truth ratios need rows with a 'perturbed_answer' list.")
    h = out.has_perturbed
    return M.truth_ratio(out.p_paraphrased[h], out.p_perturbed[h])


def _split_metrics(split: str, out: SplitOutputs, gens: list[str] | None, rows: Sequence[dict]) -> dict[str, float]:
    """Prob, ROUGE (TOFU: recall, stemming) and truth-ratio values of one split (normalised Prob on the utility
    sets without paraphrases)."""
    normalized = split in ("real_authors", "world_facts") and out.p_perturbed is not None
    res = {"Prob": M.normalized_prob(out.answer.p_bar, out.p_perturbed) if normalized else M.prob(out.answer.p_bar)}
    if gens is not None:
        res["ROUGE"] = float(rouge_l_batch([r["answer"] for r in rows], gens, "recall", stemmer=True).mean())
    if out.p_perturbed is not None:
        r = _truth(out)
        res["TR"] = M.forget_truth_ratio(r) if split == "forget" else M.tr_score(r)
    return res


def _utility(per: dict[str, dict[str, float]], cfg: LMEvalConfig) -> dict[str, float]:
    """{'Model Utility': harmonic mean of the nine components}, {} when no utility set was evaluated; a missing
    set or NaN component is a DataError (never a silently smaller mean)."""
    if not any(s in per for s in UTILITY_SPLITS):
        return {}
    parts: dict[str, dict[str, float]] = {}
    for s in cfg.utility_sets:
        got = per.get(s, {})
        lacking = [k for k in ("Prob", "ROUGE", "TR") if not np.isfinite(got.get(k, np.nan))]
        check(not lacking, DataError,
              f"Model Utility needs Prob, ROUGE and the truth ratio on {s!r}; "
              + (f"this data has no {s!r} rows" if s not in per else f"{', '.join(lacking)} is missing or NaN "
                 "(rows without perturbed answers, or non-finite model outputs)")
              + f". Provide them (TOFU's {s}_perturbed.json; UNLEARNLAB_TOFU_DIR points at a folder), or name the "
              f"sets to average explicitly (eval utility_sets, e.g. {[x for x in cfg.utility_sets if x != s]}); "
              "the choice is recorded with the run.")
        parts[s] = got
    return {"Model Utility": M.model_utility(parts)}


def _knowmem_icl(extra: dict, rows: dict[str, list[dict]], split: str, shots: int) -> list[dict]:
    given = (extra.get("knowmem_icl") or {}).get(split)
    return list(given) if given is not None else list(rows.get("holdout", []))[:shots]


def _teacher_forced(m: nn.Module, tokenizer: Any, rows: dict, s: str, cfg: LMEvalConfig,
                    cache: LMOutputCache) -> SplitOutputs:
    """Teacher-forced outputs of split `s`, one pass per (model, rows, settings) through `cache`."""
    return cache.get(m, ("tf", s, _fingerprint(rows[s], cfg.max_length)), lambda: split_outputs(
        m, tokenizer, rows[s], batch_size=cfg.batch_size, max_length=cfg.max_length))


def _generated(m: nn.Module, tokenizer: Any, rows: dict, s: str, cfg: LMEvalConfig,
               cache: LMOutputCache) -> list[str]:
    """Greedy answers to split `s`'s questions, one generation per (model, rows, settings) through `cache`."""
    return cache.get(m, ("gen", s, _fingerprint(rows[s], cfg.max_new_tokens)), lambda: greedy_answers(
        m, tokenizer, [r["question"] for r in rows[s]], batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens))


def evaluate_lm(model: nn.Module, tokenizer: Any, data: Any, *, reference: nn.Module | None = None,
                target: nn.Module | None = None, splits: Sequence[str] | None = None,
                cache: LMOutputCache | None = None, config: LMEvalConfig | dict | None = None,
                **options: Any) -> dict[str, float]:
    """TOFU / MUSE / MIA metrics of `model` (see the module docstring for every key). `config` (or keyword
    `options`, LMEvalConfig fields) sets the protocol; the defaults are the reference code's."""
    cfg = eval_config({**(to_dict(config) if isinstance(config, LMEvalConfig) else config or {}), **options})
    cache = cache or LMOutputCache()
    extra = {} if isinstance(data, dict) else getattr(data, "extra", {})
    docs = extra.get("corpora") or extra.get("docs") or {}
    if not extra.get("rows") and docs.get("forget"):  # a document corpus (MUSE style): no QA rows
        res = _corpus_metrics(model, tokenizer, docs, reference, cache, cfg) if docs.get("holdout") else {}
        return res | _verbmem(model, tokenizer, extra, docs, cfg)
    rows = rows_of(data)
    splits = [s for s in (splits or SPLITS) if rows.get(s)]
    check("forget" in splits, DataError, f"The rows need a non-empty 'forget' split; got splits {sorted(rows)}.")

    def tf(m: nn.Module, s: str) -> SplitOutputs:
        return _teacher_forced(m, tokenizer, rows, s, cfg, cache)

    def gen(m: nn.Module, s: str) -> list[str]:
        return _generated(m, tokenizer, rows, s, cfg, cache)

    per = {s: _split_metrics(s, tf(model, s), gen(model, s) if s in GENERATED else None, rows[s]) for s in splits}
    res = {f"{s}_{ {'TR': 'TruthRatio'}.get(k, k)}": v for s in GENERATED for k, v in per.get(s, {}).items()}
    res |= _utility(per, cfg)
    fo = tf(model, "forget")
    tokens = token_view(fo.answer, cfg.drop_last_token)
    res["ExactMem-forget"] = float(M.exact_memorization(tokens).mean())
    res["ExtractionStrength-forget"] = float(M.extraction_strength(tokens).mean())
    if cfg.knowmem:
        for s in ("forget", "retain"):
            if s in splits:
                outs = MUSE.knowmem_answers(model, tokenizer, rows[s], _knowmem_icl(extra, rows, s, cfg.knowmem_shots),
                                            new_tokens=cfg.knowmem_new_tokens, batch_size=cfg.batch_size)
                res[f"KnowMem-{s}"] = MUSE.knowmem([r["answer"] for r in rows[s]], outs)
    if "holdout" in splits:
        ho = tf(model, "holdout")
        res.update(mia_aucs(fo.answer, ho.answer, [r["answer"] for r in rows["forget"]],
                            [r["answer"] for r in rows["holdout"]], drop_last=cfg.drop_last_token))
    if reference is not None:
        ref_fo = tf(reference, "forget")
        if fo.p_perturbed is not None:
            res["Forget Quality"] = M.forget_quality(_truth(fo), _truth(ref_fo))
            res["Forget KS"] = M.forget_ks(_truth(fo), _truth(ref_fo))
        if "holdout" in splits:
            ref_auc = auc(mink_score(token_view(ref_fo.answer, cfg.drop_last_token)),
                          mink_score(token_view(tf(reference, "holdout").answer, cfg.drop_last_token)))
            res["PrivLeak"] = M.privleak(res["MIA-MinK"], ref_auc)
    if docs.get("forget") or extra.get("verbmem"):
        res |= _verbmem(model, tokenizer, extra, docs, cfg)
    return res


def answer_rows(model: nn.Module, tokenizer: Any, data: Any, *, cache: LMOutputCache,
                config: LMEvalConfig | dict | None = None, limit: int = 200) -> dict[str, list[dict]]:
    """Per question of each generated split (at most `limit`): question, target answer, the model's greedy answer,
    its ROUGE-L recall (TOFU scorer) and truth ratio. Reads the passes `evaluate_lm` put in `cache`, so after an
    evaluation with the same cache and config it computes nothing new."""
    cfg = eval_config(to_dict(config) if isinstance(config, LMEvalConfig) else config)
    rows = rows_of(data)
    out: dict[str, list[dict]] = {}
    for s in GENERATED:
        if not rows.get(s):
            continue
        rs = rows[s][:limit]
        gens = _generated(model, tokenizer, rows, s, cfg, cache)[:limit]
        rouge = rouge_l_batch([r["answer"] for r in rs], gens, "recall", stemmer=True)
        tr = np.full(len(rs), np.nan)
        tfo = _teacher_forced(model, tokenizer, rows, s, cfg, cache)
        if tfo.p_perturbed is not None:
            h, vals = np.flatnonzero(tfo.has_perturbed), _truth(tfo)
            keep = h < len(rs)
            tr[h[keep]] = vals[keep]
        out[s] = [{"question": r["question"], "target": r["answer"], "answer": g, "rouge": float(x),
                   "truth_ratio": None if np.isnan(t) else float(t)} for r, g, x, t in zip(rs, gens, rouge, tr)]
    return out


def _verbmem(model: nn.Module, tokenizer: Any, extra: dict, docs: dict, cfg: LMEvalConfig) -> dict[str, float]:
    """{'VerbMem': ...} from MUSE's prompt/continuation pairs (extra['verbmem']) or the forget documents."""
    prompts, gts = MUSE.verbmem_pairs(tokenizer, extra.get("verbmem"), docs.get("forget") or [], cfg.verbmem_prefix,
                                      cfg.verbmem_new_tokens)
    return {"VerbMem": MUSE.verbmem(model, tokenizer, prompts, gts, new_tokens=cfg.verbmem_new_tokens,
                                    batch_size=cfg.batch_size)}


def _corpus_metrics(model: nn.Module, tokenizer: Any, docs: dict[str, list[str]], reference: nn.Module | None,
                    cache: LMOutputCache, cfg: LMEvalConfig) -> dict[str, float]:
    """MUSE-style MIAs on documents: forget vs holdout texts (first `max_length` tokens), PrivLeak with `reference`."""
    from ..models.lm_format import encode_text, pad_id

    def tf(m: nn.Module, s: str) -> TokenStats:
        feats = [encode_text(tokenizer, t, max_length=cfg.max_length) for t in docs[s]]
        return cache.get(m, ("doc", s, _fingerprint(docs[s], cfg.max_length)),
                         lambda: teacher_forced(m, feats, pad_id(tokenizer), cfg.batch_size))

    res = mia_aucs(tf(model, "forget"), tf(model, "holdout"), docs["forget"], docs["holdout"],
                   drop_last=cfg.drop_last_token)
    if reference is not None:
        ref_auc = auc(mink_score(token_view(tf(reference, "forget"), cfg.drop_last_token)),
                      mink_score(token_view(tf(reference, "holdout"), cfg.drop_last_token)))
        res["PrivLeak"] = M.privleak(res["MIA-MinK"], ref_auc)
    return res


__all__ = ["SPLITS", "UTILITY_SPLITS", "LMEvalConfig", "LMOutputCache", "SplitOutputs", "eval_config", "evaluate_lm",
           "greedy_answers", "protocol", "rows_of", "split_outputs"]

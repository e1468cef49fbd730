"""QA generator, TOFU readers and text corpora."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from unlearnlab.data.corpus import TextDataset, corpus_data, read_documents
from unlearnlab.data.qa import FACTS, QADataset, forget_authors, generate_qa, make_qa_data
from unlearnlab.data.qa_pools import value_space
from unlearnlab.data.tofu import idk_answers, read_idk, read_tofu, tofu_data, tofu_dir, utility_sets
from unlearnlab.errors import DataError
from unlearnlab.models.tiny_lm import word_tokenizer


@pytest.fixture(scope="module")
def qa():
    return generate_qa(20, facts=10, seed=3)


@pytest.fixture(scope="module")
def tok(qa):
    return word_tokenizer(qa.texts())


def test_generator_is_deterministic(qa):
    again = generate_qa(20, facts=10, seed=3)
    assert again.rows == qa.rows and again.holdout_rows == qa.holdout_rows
    assert generate_qa(20, facts=10, seed=4).rows != qa.rows
    assert len(qa.rows) == 200 and len(set(qa.authors)) == 20
    assert len(qa.holdout_authors) == 2 and not set(qa.holdout_authors) & set(qa.authors)


def _article(text: str) -> str:
    return re.sub(r"\ban ", "a ", text)


def test_paraphrases_and_perturbations_share_the_answer_form():
    for style in ("short", "sentence"):
        qa = generate_qa(6, facts=10, seed=1, style=style)
        for r in qa.rows + qa.holdout_rows:
            v, ans, para = r["value"], r["answer"], r["paraphrased_answer"]
            assert v.lower() in ans.lower() and v.lower() in para.lower() and para != ans
            assert r["paraphrased_question"] != r["question"] and r["author"] in r["question"]
            if style == "short":  # the fact alone, and a paraphrase just as short (no restated question)
                assert ans == v[0].upper() + v[1:] + "."
                assert r["author"] not in para and len(para.split()) <= len(v.split()) + 4
            else:
                assert r["author"] in ans and r["author"] in para
            assert len(r["perturbed_answer"]) == 3 and len(set(r["perturbed_values"])) == 3
            for p, w in zip(r["perturbed_answer"], r["perturbed_values"]):  # the answer with only the value swapped
                assert w in value_space(FACTS[r["fact"]][0]) and w != v
                same = ans.lower().replace(v.lower(), w.lower())
                assert _article(p.lower()) == _article(same), (p, ans)


def test_values_are_disjoint_across_authors_and_perturbations_false_for_all():
    qa = generate_qa(200, facts=10, seed=5, style="short")  # TOFU's size: 200 trained + 20 holdout authors
    rows = qa.rows + qa.holdout_rows
    assert len(qa.holdout_authors) == 20
    for kind in {k for k, *_ in FACTS.values()}:
        assert len(set(value_space(kind))) == len(value_space(kind)), kind
        held = [r["value"] for r in rows if FACTS[r["fact"]][0] == kind]
        assert len(held) == len(set(held)), kind  # each value belongs to one author and one fact of that kind
        answers = {r["answer"] for r in qa.rows if FACTS[r["fact"]][0] == kind}
        for r in (r for r in rows if FACTS[r["fact"]][0] == kind):
            assert not set(r["perturbed_values"]) & set(held)  # false for every author
            assert not set(r["perturbed_answer"]) & answers  # never a trained author's answer
    with pytest.raises(DataError, match="distinct job values"):
        generate_qa(250, facts=10)
    assert len(generate_qa(250, facts=4).rows) == 1000  # the jobs, the smallest space, are not asked


def test_generation_is_a_pure_function_of_the_seed():
    a, b = generate_qa(30, seed=9, style="short"), generate_qa(30, seed=9, style="short")
    assert a == b
    c = generate_qa(30, seed=9, style="sentence")  # the style changes the wording, not the facts
    assert [r["value"] for r in a.rows] == [r["value"] for r in c.rows]
    assert [r["perturbed_values"] for r in a.rows] == [r["perturbed_values"] for r in c.rows]
    assert [r["value"] for r in generate_qa(30, seed=10).rows] != [r["value"] for r in a.rows]
    for p in ("1%", "5%", "10%"):
        assert forget_authors(a.authors, p, 9) == forget_authors(b.authors, p, 9)


def test_forget_splits_nested_and_holdout_separate(qa, tok):
    f1, f5, f10 = (set(forget_authors(qa.authors, p, 0)) for p in ("1%", "5%", "10%"))
    assert len(f1) == 1 and len(f5) == 1 and len(f10) == 2 and f1 <= f5 <= f10
    data = make_qa_data(tok, qa, "10%")
    assert len(data.forget) == 20 and len(data.retain) == 180 and len(data.test) == 20
    assert {r["author"] for r in data.forget.rows} == f10
    assert not {r["author"] for r in data.retain.rows} & f10
    assert set(data.extra["forget_splits"]) == {"1%", "5%", "10%"}
    batch = data.forget.collate([data.forget[i] for i in range(4)])
    assert batch["input_ids"].shape[0] == 4 and data.extra["rows"]["forget"] == data.forget.rows
    assert data.fingerprint() == make_qa_data(tok, qa, "10%").fingerprint()
    assert data.fingerprint() != make_qa_data(tok, qa, "5%").fingerprint()
    with pytest.raises(DataError, match="forget all"):
        make_qa_data(tok, qa, "99.9%")
    with pytest.raises(DataError, match="percentage"):
        make_qa_data(tok, qa, "ten")


def test_tofu_readers_on_written_files(tmp_path, tok):
    rows = [{"question": "Who wrote X?", "answer": "A", "paraphrased_answer": "It was A",
             "perturbed_answer": ["B", "C"]}, {"question": "Where is Y?", "answer": "Z", "perturbed_answer": "W"}]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in rows))
    for name in ("list.json", "lines.json"):
        got = read_tofu(tmp_path / name)
        assert [g["question"] for g in got] == ["Who wrote X?", "Where is Y?"]
        assert got[1]["perturbed_answer"] == ["W"] and got[0]["paraphrased_answer"] == "It was A"
    (tmp_path / "bad.json").write_text(json.dumps([{"question": "Q?", "answer": ""}]))
    with pytest.raises(DataError, match="empty or missing answer"):
        read_tofu(tmp_path / "bad.json")
    (tmp_path / "idk.jsonl").write_text('I do not know.\n"No idea."\n{"answer": "Beats me."}\n\n')
    assert read_idk(tmp_path / "idk.jsonl") == ["I do not know.", "No idea.", "Beats me."]
    tok2 = word_tokenizer(["Who wrote X ? Where is Y ? A Z Q"])
    data = tofu_data(tok2, rows, rows[1:])
    assert data.forget_idx.tolist() == [1] and data.retain_idx.tolist() == [0]
    with pytest.raises(DataError, match="None of the forget questions"):
        tofu_data(tok2, rows, [{"question": "Unknown?", "answer": "x"}])


@pytest.mark.skipif(tofu_dir() is None, reason="TOFU's shared utility files are not on this machine")
def test_real_tofu_files():
    sets = utility_sets()
    assert set(sets) == {"real_authors", "world_facts"}
    ra = sets["real_authors"]
    assert len(ra) >= 50 and all(r["question"] and r["answer"] and len(r["perturbed_answer"]) >= 1 for r in ra)
    assert ra[0]["answer"] == "William Shakespeare"
    idk = idk_answers()
    assert len(idk) >= 50 and "I don't have that information." in idk


def test_corpus_chunks_and_splits(tmp_path, tok):
    folder = tmp_path / "forget"
    folder.mkdir()
    (folder / "a.txt").write_text("Ana Lund was born in Lima . " * 10)
    (folder / "b.txt").write_text("Where was Ana Lund born ?")
    assert read_documents(folder) == [(folder / "a.txt").read_text().strip(), "Where was Ana Lund born ?"]
    ds = TextDataset(read_documents(folder), tok, max_length=16)
    assert all(len(it["input_ids"]) <= 16 and it["labels"] == it["input_ids"] for it in ds.items)
    assert ds.doc_of[0] == 0 and ds.doc_of[-1] == 1 and len(ds) == int(np.ceil(71 / 16)) + 1
    data = corpus_data(tok, folder, ["Sol Pell writes poems ."], ["A holdout text ."], max_length=16)
    assert len(data.forget) == len(ds) and len(data.retain) == 1 and len(data.test) == 1
    assert data.forget.collate([data.forget[0]])["labels"].shape[1] == 16
    with pytest.raises(DataError, match="both the forget and the retain"):
        corpus_data(tok, ["same doc"], ["same doc"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .txt"):
        read_documents(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        read_documents(tmp_path / "missing")


def test_qadataset_subset_keeps_collate(qa, tok):
    ds = QADataset(qa.rows[:10], tok)
    sub = ds.subset([2, 5])
    assert sub.rows == [qa.rows[2], qa.rows[5]] and sub[0] == ds[2]
    assert sub.collate([sub[0], sub[1]])["input_ids"].shape[0] == 2

"""Sub-class forgetting: datasets with super-class labels that keep each example's sub-class (cifar20 from CIFAR-100's
release, cifar10-dev-coarse), and the scenario subclass:<name> that forgets one whole sub-class while its super-class
stays taught by the others."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from unlearnlab.data import load_dataset, make_split
from unlearnlab.data.core import ArrayDataset
from unlearnlab.data.datasets import Bundle, with_coarse
from unlearnlab.data.scenarios import parse_forget
from unlearnlab.errors import DataError

FINE = ["apple", "bus", "cat", "dog", "elm", "fox"]
COARSE_OF = np.array([0, 1, 2, 2, 0, 2])  # fruit_tree: apple, elm; vehicle: bus; animal: cat, dog, fox
COARSE = ["fruit_tree", "vehicle", "animal"]


def _cifar100(root, rng, n_train=30, n_test=12, coarse_of=COARSE_OF):
    """A cifar-100-python folder in the official layout (dicts of bytes keys; data N x 3072, channel-major)."""
    root.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = np.arange(n) % len(FINE)
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        with open(root / split, "wb") as f:
            pickle.dump({b"data": x, b"fine_labels": fine.tolist(), b"coarse_labels": coarse_of[fine].tolist(),
                         b"filenames": [b"x.png"] * n}, f)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [c.encode() for c in FINE],
                     b"coarse_label_names": [c.encode() for c in COARSE]}, f)


def _bundle(n_per=20):
    """Blob-like images of the 6 sub-classes above under their 3 super-classes."""
    y = np.repeat(np.arange(len(FINE)), n_per)
    x = torch.randn(len(y), 1, 8, 8)
    base = Bundle("toy", ArrayDataset(x, torch.from_numpy(y), classes=FINE),
                  ArrayDataset(x[:12], torch.from_numpy(y[:12]), classes=FINE), list(FINE))
    return with_coarse(base, "toy-coarse", COARSE_OF, COARSE)


def test_cifar20_reads_the_official_release_under_super_class_labels(tmp_path):
    _cifar100(tmp_path / "cifar-100-python", np.random.default_rng(0))
    b = load_dataset(f"cifar20:{tmp_path}")  # the parent folder or the folder itself
    assert b.name == "cifar20" and b.classes == COARSE and b.fine_classes == FINE and b.num_classes == 3
    assert len(b.train) == 30 and len(b.test) == 12 and b.train.x.shape[1:] == (3, 32, 32)
    fine = b.train.fine.numpy()
    assert np.array_equal(b.train.y.numpy(), COARSE_OF[fine]) and np.array_equal(fine, np.arange(30) % 6)
    assert b.test.fine_classes == FINE and np.array_equal(b.test.y.numpy(), COARSE_OF[b.test.fine.numpy()])
    assert np.allclose(b.pixel_norm[0], (0.5071, 0.4865, 0.4409))  # CIFAR-100's statistics, not CIFAR-10's
    assert load_dataset(f"cifar20:{tmp_path / 'cifar-100-python'}").train.fingerprint() == b.train.fingerprint()


def test_cifar20_bad_input_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("cifar20")
    with pytest.raises(DataError, match="meta is missing"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "train").write_bytes(b"")
        (tmp_path / "empty" / "test").write_bytes(b"")
        load_dataset(f"cifar20:{tmp_path / 'empty'}")
    rng = np.random.default_rng(1)
    _cifar100(tmp_path / "a", rng)
    with open(tmp_path / "a" / "test", "rb") as f:
        d = pickle.load(f)
    d[b"coarse_labels"] = [(c + 1) % 3 for c in d[b"coarse_labels"]]  # test disagrees with train
    with open(tmp_path / "a" / "test", "wb") as f:
        pickle.dump(d, f)
    with pytest.raises(DataError, match="one coarse label"):
        load_dataset(f"cifar20:{tmp_path / 'a'}")


def test_subclass_forgets_one_whole_sub_class_its_super_class_stays_taught():
    b = _bundle()
    fine = b.train.fine.numpy()
    d = make_split(b.train, b.test, "subclass:dog", 0, num_classes=3, classes=b.classes)
    assert d.forget_idx.tolist() == np.flatnonzero(fine == FINE.index("dog")).tolist()
    assert set(b.train.y.numpy()[d.retain_idx][fine[d.retain_idx] != FINE.index("dog")]) == {0, 1, 2}
    kept = fine[d.retain_idx]  # its super-class keeps cat and fox among the retained rows
    assert set(kept[COARSE_OF[kept] == 2]) == {FINE.index("cat"), FINE.index("fox")}
    assert np.array_equal(make_split(b.train, b.test, "subclass:3", 5, num_classes=3).forget_idx, d.forget_idx)
    # the validation set: the next sub-class (elm), whole, disjoint from the reported one; the same for any seed
    v = make_split(b.train, b.test, "val:subclass:dog", 0, num_classes=3)
    assert set(fine[v.forget_idx]) == {FINE.index("elm")} and len(v.forget_idx) == 20
    assert not set(v.forget_idx) & set(d.forget_idx)
    last = make_split(b.train, b.test, "val:subclass:fox", 3, num_classes=3)
    assert set(fine[last.forget_idx]) == {0}  # wraps around


def test_subclass_needs_sub_class_labels_and_a_known_name():
    b = _bundle()
    with pytest.raises(DataError, match="unknown class 'wolf'"):
        make_split(b.train, b.test, "subclass:wolf", 0, num_classes=3)
    with pytest.raises(DataError, match="out of range"):
        make_split(b.train, b.test, "subclass:6", 0, num_classes=3)
    plain = ArrayDataset(b.train.x, b.train.y)  # no sub-class labels
    with pytest.raises(DataError, match=r"needs a dataset with sub-class labels .*subclass:dog:50%"):
        make_split(plain, b.test, "subclass:dog", 0, num_classes=3)
    # the random share of a class is unchanged, on any dataset
    share = make_split(plain, b.test, "subclass:2:50%", 0, num_classes=3)
    assert set(b.train.y.numpy()[share.forget_idx]) == {2} and len(share.forget_idx) == 30


@pytest.mark.parametrize("spec", ["subclass:dog", "subclass:3", "subclass:3:50%", "val:subclass:rocket"])
def test_subclass_specs_round_trip(spec):
    assert str(parse_forget(spec)) == spec

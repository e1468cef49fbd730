"""Datasets and forget scenarios: real loaders on small files made here, determinism, bad input."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from unlearnlab.data import load_dataset, make_split
from unlearnlab.data.core import augment_batch, batches
from unlearnlab.data.scenarios import forget_indices, parse_forget
from unlearnlab.errors import DataError, UnknownNameError


def _fake_cifar(rng, n):
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size=n)


def test_cifar_batches_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = _fake_cifar(rng, 4)
        flat = x.transpose(0, 3, 1, 2).reshape(4, -1)  # the official layout: N x 3072, channel-major
        with open(root / name, "wb") as f:
            pickle.dump({b"data": flat, b"labels": y.tolist()}, f)
    b = load_dataset(f"cifar10:{tmp_path}")
    assert len(b.train) == 20 and len(b.test) == 4 and b.train.x.shape[1:] == (3, 32, 32)
    # pixel (0,0) of the first image, red channel, standardised with the CIFAR mean/std
    with open(root / "data_batch_1", "rb") as f:
        first = pickle.load(f)[b"data"][0, 0]
    assert b.train.x[0, 0, 0, 0].item() == pytest.approx((first / 255 - 0.4914) / 0.2470, rel=1e-5)


def test_cifar_batches_refuses_arbitrary_objects(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": DataError("x")}, f)
    with pytest.raises(DataError, match="unexpected object"):
        load_dataset(f"cifar10:{root}")


def test_npz_and_shared_subset(tmp_path):
    rng = np.random.default_rng(1)
    xtr, ytr = _fake_cifar(rng, 10)
    xte, yte = _fake_cifar(rng, 5)
    np.savez(tmp_path / "c.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    b = load_dataset(f"cifar10:{tmp_path / 'c.npz'}")
    assert len(b.train) == 10 and b.num_classes == 10
    np.savez(tmp_path / "bad.npz", x_train=xtr)
    with pytest.raises(DataError, match="lacks arrays"):
        load_dataset(f"cifar10:{tmp_path / 'bad.npz'}")


def test_cifar10_dev_subset_if_present():
    """The dev subset, and cifar10-dev-coarse: the same images under 5 super-classes, the classes kept as sub-class
    labels (tests/test_subclass.py)."""
    from unlearnlab.data.datasets import CIFAR10_COARSE

    try:
        b = load_dataset("cifar10-dev")
    except DataError:
        pytest.skip("../shared/data/cifar10/cifar10-dev.npz not present")
    assert len(b.train) == 10_000 and len(b.test) == 2_000
    assert np.bincount(b.train.y.numpy()).tolist() == [1000] * 10
    assert abs(float(b.train.x.mean())) < 0.2  # standardised
    c = load_dataset("cifar10-dev-coarse")
    assert c.classes == [name for name, _ in CIFAR10_COARSE] and c.fine_classes == b.classes
    assert torch.equal(c.train.x, b.train.x) and torch.equal(c.train.fine, b.train.y)
    assert np.bincount(c.train.y.numpy()).tolist() == [2000] * 5
    dog, cat = b.classes.index("dog"), b.classes.index("cat")
    assert set(c.train.y.numpy()[b.train.y.numpy() == dog]) == set(c.train.y.numpy()[b.train.y.numpy() == cat])


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    b = load_dataset(f"imagefolder:{tmp_path}")
    assert b.classes == ["cat", "dog"] and len(b.train) == 6 and len(b.test) == 4
    assert b.train.y.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DataError, match="train/ and test/"):
        load_dataset(f"imagefolder:{tmp_path / 'train'}")
    fake = tmp_path / "train" / "dog" / "fake.png"  # a file with an image name that is not an image
    fake.write_text("not an image")
    with pytest.raises(DataError, match="fake.png is not a readable image"):
        load_dataset(f"imagefolder:{tmp_path}")
    from typer.testing import CliRunner

    from unlearnlab.cli import app

    r = CliRunner().invoke(app, ["run", "--dataset", f"imagefolder:{tmp_path}", "--methods", "ft", "--results",
                                 str(tmp_path / "r")])
    assert r.exit_code == 2 and "fake.png is not a readable image" in r.output and "Traceback" not in r.output


def test_missing_folder_and_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'nope'}")
    with pytest.raises(UnknownNameError, match="Did you mean 'digits'"):
        load_dataset("digit")


@pytest.mark.parametrize("spec, kind", [("random:10%", "random"), ("10%", "random"), ("class:3", "class"),
                                        ("subclass:2:50%", "subclass"), ("indices:f.txt", "indices")])
def test_parse_forget(spec, kind):
    assert parse_forget(spec).kind == kind


@pytest.mark.parametrize("spec", ["random:150%", "random:0%", "random:abc", "class", "subclass:", "bogus:1"])
def test_malformed_forget_spec(spec):
    with pytest.raises(DataError):
        parse_forget(spec)


def test_scenarios_select_what_they_say():
    labels = np.repeat(np.arange(4), 25)
    r = forget_indices("random:10%", labels, seed=0)
    assert len(r) == 10 and np.array_equal(r, forget_indices("random:10%", labels, seed=0))
    assert not np.array_equal(r, forget_indices("random:10%", labels, seed=1))
    c = forget_indices("class:2", labels, seed=0)
    assert set(labels[c]) == {2} and len(c) == 25
    s = forget_indices("subclass:1:40%", labels, seed=0)
    assert set(labels[s]) == {1} and len(s) == 10
    with pytest.raises(DataError, match="out of range"):
        forget_indices("class:4", labels, seed=0, num_classes=4)


def test_indices_file(tmp_path):
    labels = np.zeros(50, dtype=int)
    (tmp_path / "ids.txt").write_text("3\n7\n7\n1\n")
    assert forget_indices(f"indices:{tmp_path / 'ids.txt'}", labels, 0).tolist() == [1, 3, 7]
    (tmp_path / "ids.json").write_text("[0, 49]")
    assert forget_indices(f"indices:{tmp_path / 'ids.json'}", labels, 0).tolist() == [0, 49]
    (tmp_path / "bad.txt").write_text("3\n99\n")
    with pytest.raises(DataError, match="outside the train set"):
        forget_indices(f"indices:{tmp_path / 'bad.txt'}", labels, 0)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="selects no training example"):
        forget_indices(f"indices:{tmp_path / 'empty.txt'}", labels, 0)


def test_split_is_a_partition_and_records_indices():
    b = load_dataset("digits")
    d = make_split(b.train, b.test, "random:10%", 0, num_classes=10)
    assert len(d.forget) + len(d.retain) == len(d.train)
    assert np.intersect1d(d.forget_idx, d.retain_idx).size == 0
    assert torch.equal(d.forget.x, d.train.x[torch.as_tensor(d.forget_idx)])


def test_augment_is_seeded_crop_flip():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = augment_batch(x, g1), augment_batch(x, g2)
    assert torch.equal(a, b) and a.shape == x.shape
    # every output row of a crop is a shifted (possibly flipped) slice of the zero-padded input
    assert set(torch.unique(a).tolist()) <= set(torch.unique(x).tolist()) | {0.0}


def test_batches_cover_dataset_once():
    b = load_dataset("blobs")
    seen = torch.cat([y for _, y in batches(b.train, 64, shuffle=True, gen=torch.Generator().manual_seed(0))])
    assert len(seen) == len(b.train) and torch.equal(seen.sort().values, b.train.y.sort().values)


def test_image_datasets_carry_their_pixel_normalisation_into_the_split():
    """Boundary Shrink steps on the [0,1] pixel scale: the split must know how inputs were standardised."""
    b = load_dataset("digits")
    data = make_split(b.train, b.test, "class:3", 0, num_classes=10)
    (mean,), (std,) = data.extra["pixel_norm"]
    assert 0 < mean < 1 and 0 < std < 1
    raw = b.train.x * std + mean  # back to the [0,1] pixels (load_digits / 16)
    assert float(raw.min()) == pytest.approx(0.0, abs=1e-5) and float(raw.max()) == pytest.approx(1.0, abs=1e-5)
    blobs = load_dataset("blobs")
    assert "pixel_norm" not in make_split(blobs.train, blobs.test, "class:1", 0, num_classes=4).extra


def test_batches_with_index_yield_positions_and_draw_the_same_batches():
    """index=True adds each example's position in the dataset, without changing the batches or the generator draws
    (SCRUB's teacher cache looks its logits up by position)."""
    from torch.utils.data import Subset

    from unlearnlab.data.core import ArrayDataset

    gen = torch.Generator().manual_seed(0)
    arr = ArrayDataset(torch.randn(23, 3), torch.arange(23) % 4)
    for ds in (arr, Subset(arr, list(range(2, 21)))):
        plain = list(batches(ds, 5, shuffle=True, gen=gen.manual_seed(1)))
        indexed = list(batches(ds, 5, shuffle=True, gen=gen.manual_seed(1), index=True))
        assert len(plain) == len(indexed)
        for (x, y), (xi, yi, pos) in zip(plain, indexed):
            assert torch.equal(x, xi) and torch.equal(y, yi)
            assert torch.equal(torch.stack([ds[int(i)][0] for i in pos]), x)

"""Built-in datasets: digits (embedded default), CIFAR-10 (batches folder, .npz, image folder), blobs; and two with
sub-class labels for sub-class forgetting (scenario subclass:<name>): cifar20 (CIFAR-100's images under its 20
super-class labels, the protocol of Chundawat et al. 2023 and Foster et al. 2024 (SSD)) and cifar10-dev-coarse (the
CIFAR-10 dev subset under 5 super-classes of two classes each, a CPU-sized analogue)."""
from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..registry import Registry
from ..seeding import numpy_rng
from .core import ArrayDataset

DATASETS: Registry = Registry("dataset")

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)  # CIFAR-100's train-set statistics (cifar20)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# cifar10-dev-coarse: CIFAR-10's classes grouped in pairs as CIFAR-100's fine classes are in its 20 super-classes
# (ours, by what the images show: no published grouping of CIFAR-10 exists)
CIFAR10_COARSE = (("air_water_vehicles", ("airplane", "ship")), ("road_vehicles", ("automobile", "truck")),
                  ("birds_frogs", ("bird", "frog")), ("cats_dogs", ("cat", "dog")), ("deer_horses", ("deer", "horse")))


@dataclasses.dataclass
class Bundle:
    """A loaded dataset: normalised train/test tensors and class names; `pixel_norm` = (mean, std) per channel that
    maps [0, 1] pixels to the stored inputs (None when the inputs are not images), for methods that work on the
    pixel scale (Boundary Shrink's FGSM step)."""

    name: str
    train: ArrayDataset
    test: ArrayDataset
    classes: list[str]
    pixel_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    fine_classes: list[str] | None = None  # sub-class names, where the datasets carry `fine` labels (cifar20)

    def __post_init__(self) -> None:
        if self.pixel_norm is not None:  # carried by the datasets, so make_split() finds it (UnlearnData.extra)
            self.train.pixel_norm = self.test.pixel_norm = self.pixel_norm
        if self.fine_classes is not None:  # make_split() reads them for subclass:<name>
            self.train.fine_classes = self.test.fine_classes = list(self.fine_classes)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def load_dataset(name: str, *, root: str | os.PathLike | None = None, seed: int = 0) -> Bundle:
    """Load dataset `name` (`digits`, `blobs`, `cifar10`, `cifar10-dev`, `cifar10-dev-coarse`, `cifar20`,
    `imagefolder`), `root` where needed."""
    if ":" in name and not os.path.exists(name):
        name, root = name.split(":", 1)
    return DATASETS.get(name)(root=root, seed=seed)


def _register(name: str):
    def wrap(fn):
        DATASETS.add(name, fn)
        return fn
    return wrap


def _normalise_hwc(x: np.ndarray, mean=CIFAR_MEAN, std=CIFAR_STD) -> torch.Tensor:
    """uint8 N,H,W,C -> float N,C,H,W standardised per channel."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0).permute(0, 3, 1, 2)
    m = torch.tensor(mean[: t.shape[1]]).view(1, -1, 1, 1)
    s = torch.tensor(std[: t.shape[1]]).view(1, -1, 1, 1)
    return ((t - m) / s).contiguous()


def _pixel_norm(x: np.ndarray, mean=CIFAR_MEAN, std=CIFAR_STD) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) _normalise_hwc applied to N,H,W,C images `x`."""
    c = x.shape[-1]
    return tuple(mean[:c]), tuple(std[:c])


@_register("digits")
def digits(root=None, seed: int = 0) -> Bundle:
    """scikit-learn's 1,797 real 8x8 digit images; a fixed stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    rng = numpy_rng(0, "digits-split")  # the split is part of the dataset, not of the run seed
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, size=len(idx) // 5, replace=False)] = True
    mean, std = x[~test].mean(), x[~test].std()
    xt = torch.from_numpy((x - mean) / std).unsqueeze(1)
    yt = torch.from_numpy(y)
    classes = [str(c) for c in range(10)]
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    return Bundle("digits", ArrayDataset(xt[tr], yt[tr], classes=classes),
                  ArrayDataset(xt[te], yt[te], classes=classes), classes, ((float(mean),), (float(std),)))


@_register("blobs")
def blobs(root=None, seed: int = 0, n_train: int = 600, n_test: int = 200, classes: int = 4) -> Bundle:
    """Synthetic Gaussian-blob 'images' (1x8x8) that overlap, so a model memorises its train set; for fast tests."""
    rng = numpy_rng(0, "blobs")
    centres = rng.normal(0, 0.22, size=(classes, 64)).astype(np.float32)

    def draw(n: int, key: str):
        r = numpy_rng(0, "blobs", key)
        y = np.arange(n) % classes
        x = centres[y] + r.normal(0, 1.0, size=(n, 64)).astype(np.float32)
        return torch.from_numpy(x.reshape(n, 1, 8, 8)), torch.from_numpy(y.astype(np.int64))

    names = [f"blob{c}" for c in range(classes)]
    return Bundle("blobs", ArrayDataset(*draw(n_train, "train"), classes=names),
                  ArrayDataset(*draw(n_test, "test"), classes=names), names)


def _shared_cifar() -> Path | None:
    env = os.environ.get("UNLEARNLAB_CIFAR10_DEV")
    cands = [Path(env)] if env else []
    here = Path(__file__).resolve()
    cands += [p / "shared/data/cifar10/cifar10-dev.npz" for p in here.parents]
    cands.append(Path.cwd().parent / "shared/data/cifar10/cifar10-dev.npz")
    return next((c for c in cands if c.is_file()), None)


@_register("cifar10-dev")
def cifar10_dev(root=None, seed: int = 0) -> Bundle:
    """The 12,000-image CIFAR-10 subset beside the repository (../shared/data/cifar10/cifar10-dev.npz)."""
    path = Path(root) if root else _shared_cifar()
    if path is None:
        raise DataError("cifar10-dev.npz was not found beside the repository; pass its path as "
                        "'cifar10:/path/to/cifar10-dev.npz' or set UNLEARNLAB_CIFAR10_DEV.")
    return _cifar_npz(path, "cifar10-dev")


@_register("cifar10-dev-coarse")
def cifar10_dev_coarse(root=None, seed: int = 0) -> Bundle:
    """cifar10-dev under 5 super-classes (CIFAR10_COARSE) with the 10 classes kept as sub-class labels: the CPU
    analogue of CIFAR-20 sub-class forgetting (subclass:dog forgets every dog; the model's label for them,
    cats_dogs, stays taught by the cats)."""
    b = cifar10_dev(root, seed)
    fine_of = {c: i for i, c in enumerate(b.classes)}
    missing = [c for _, pair in CIFAR10_COARSE for c in pair if c not in fine_of]
    if missing:
        raise DataError(f"cifar10-dev-coarse groups CIFAR-10's classes; the data's classes {b.classes} lack {missing}.")
    coarse = np.zeros(len(b.classes), dtype=np.int64)
    for k, (_, pair) in enumerate(CIFAR10_COARSE):
        coarse[[fine_of[c] for c in pair]] = k
    return with_coarse(b, "cifar10-dev-coarse", coarse, [name for name, _ in CIFAR10_COARSE])


def with_coarse(b: Bundle, name: str, coarse_of_fine: np.ndarray, coarse_names: list[str]) -> Bundle:
    """Bundle `b` relabelled with super-classes (`coarse_of_fine[fine label]`), its labels kept as `fine`."""
    def relabel(ds: ArrayDataset) -> ArrayDataset:
        out = ArrayDataset(ds.x, torch.from_numpy(coarse_of_fine[ds.y.numpy()]), classes=coarse_names)
        out.fine = ds.y.clone()
        return out

    return Bundle(name, relabel(b.train), relabel(b.test), list(coarse_names), b.pixel_norm, list(b.classes))


@_register("cifar20")
def cifar20(root=None, seed: int = 0) -> Bundle:
    """CIFAR-100 from its `cifar-100-python` folder (train, test, meta) under its 20 super-class labels, the 100
    classes kept as sub-class labels: the sub-class forgetting protocol of Chundawat et al. (2023) and SSD (Foster
    et al. 2024), e.g. subclass:rocket, subclass:baby, subclass:lamp, subclass:mushroom, subclass:sea."""
    if root is None:
        raise DataError("cifar20 needs a path: 'cifar20:/data/cifar-100-python' (download cifar-100-python.tar.gz "
                        "from https://www.cs.toronto.edu/~kriz/cifar.html and extract it).")
    path = Path(root).expanduser()
    if (path / "cifar-100-python").is_dir():
        path = path / "cifar-100-python"
    for f in ("train", "test", "meta"):
        if not (path / f).is_file():
            raise DataError(f"{path / f} is missing; point cifar20 at the extracted cifar-100-python folder.")
    meta = _unpickle(path / "meta")
    fine_names = [c.decode() for c in meta[b"fine_label_names"]]
    coarse_names = [c.decode() for c in meta[b"coarse_label_names"]]
    parts = {}
    for split in ("train", "test"):
        d = _unpickle(path / split)
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        parts[split] = (x, np.asarray(d[b"fine_labels"], dtype=np.int64), np.asarray(d[b"coarse_labels"]))
    coarse = np.full(len(fine_names), -1, dtype=np.int64)
    for _, fine, crs in parts.values():
        coarse[fine] = crs
    if (coarse < 0).any() or any(not np.array_equal(coarse[f], c) for _, f, c in parts.values()):
        raise DataError(f"{path}: each fine label must belong to one coarse label in train and test alike.")
    (xtr, ytr, _), (xte, yte, _) = parts["train"], parts["test"]
    norm = (CIFAR100_MEAN, CIFAR100_STD)
    b = Bundle("cifar100", ArrayDataset(_normalise_hwc(xtr, *norm), torch.from_numpy(ytr), classes=fine_names),
               ArrayDataset(_normalise_hwc(xte, *norm), torch.from_numpy(yte), classes=fine_names), fine_names,
               _pixel_norm(xtr, *norm))
    return with_coarse(b, "cifar20", coarse, coarse_names)


@_register("cifar10")
def cifar10(root=None, seed: int = 0) -> Bundle:
    """CIFAR-10 from a `cifar-10-batches-py` folder, an .npz (x_train/y_train/x_test/y_test) or an image folder."""
    if root is None:
        raise DataError("cifar10 needs a path: 'cifar10:/data/cifar-10-batches-py', 'cifar10:/data/c.npz' "
                        "or 'cifar10:/data/imagefolder' (with train/ and test/ subfolders).")
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"CIFAR-10 path {str(path)!r} does not exist; download CIFAR-10 "
                        "(cifar-10-python.tar.gz) and extract it, or point to an .npz or image folder.")
    if path.is_file():
        return _cifar_npz(path, "cifar10")
    if (path / "data_batch_1").is_file():
        return _cifar_batches(path)
    if (path / "cifar-10-batches-py" / "data_batch_1").is_file():
        return _cifar_batches(path / "cifar-10-batches-py")
    if (path / "train").is_dir():
        return image_folder(path)
    raise DataError(f"{str(path)!r} is neither a cifar-10-batches-py folder (data_batch_1..5, test_batch), "
                    "an .npz file, nor an image folder with train/ and test/.")


def _cifar_npz(path: Path, name: str) -> Bundle:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise DataError(f"{path} lacks arrays {sorted(missing)}; expected x_train, y_train, x_test, y_test.")
            xtr, ytr, xte, yte = z["x_train"], z["y_train"], z["x_test"], z["y_test"]
            classes = [str(c) for c in z["classes"]] if "classes" in z.files else list(CIFAR_CLASSES)
    except (OSError, ValueError) as e:
        raise DataError(f"Could not read {path} as an .npz archive: {e}") from None
    if xtr.ndim != 4 or xtr.shape[-1] not in (1, 3):
        raise DataError(f"x_train in {path} must be N,H,W,C uint8 images; got shape {xtr.shape}.")
    return Bundle(name, ArrayDataset(_normalise_hwc(xtr), torch.from_numpy(ytr.astype(np.int64)), classes=classes),
                  ArrayDataset(_normalise_hwc(xte), torch.from_numpy(yte.astype(np.int64)), classes=classes), classes,
                  _pixel_norm(xtr))


def _unpickle(path: Path) -> dict:
    # The official CIFAR-10 python release is pickled dicts of numpy arrays; restrict what may be loaded.
    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if module.startswith("numpy") or (module, name) == ("builtins", "bytes"):
                return super().find_class(module, name)
            raise DataError(f"{path} contains an unexpected object {module}.{name}; refusing to load it.")

    with open(path, "rb") as f:
        return Restricted(f, encoding="bytes").load()


def _cifar_batches(path: Path) -> Bundle:
    def read(files):
        xs, ys = [], []
        for f in files:
            if not (path / f).is_file():
                raise DataError(f"{path / f} is missing; re-extract cifar-10-python.tar.gz.")
            d = _unpickle(path / f)
            xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(d[b"labels"], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = read([f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = read(["test_batch"])
    classes = list(CIFAR_CLASSES)
    return Bundle("cifar10", ArrayDataset(_normalise_hwc(xtr), torch.from_numpy(ytr), classes=classes),
                  ArrayDataset(_normalise_hwc(xte), torch.from_numpy(yte), classes=classes), classes, _pixel_norm(xtr))


@_register("imagefolder")
def imagefolder(root=None, seed: int = 0) -> Bundle:
    """Images under root/{train,test}/<class>/*.png|jpg (needs Pillow: pip install 'unlearnlab[images]')."""
    if root is None:
        raise DataError("imagefolder needs a path: 'imagefolder:/data/root' with train/<class>/ and test/<class>/.")
    return image_folder(Path(root))


def _read_image(image_module, path: Path) -> np.ndarray:
    """One image as uint8 H,W,3; a file that is not a readable image is a DataError naming it."""
    try:
        with image_module.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise DataError(f"{path} is not a readable image ({type(e).__name__}: {e}); remove or replace it.") from None


def image_folder(root: Path) -> Bundle:
    """Read an image-folder tree into normalised tensors (all images must share one size)."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError("Reading image folders needs Pillow: pip install 'unlearnlab[images]'.") from None
    root = Path(root)
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DataError(f"{root} must contain train/ and test/ folders, each with one subfolder per class.")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root / 'train'} has no class subfolders.")

    def read(split: str):
        xs, ys = [], []
        for c, name in enumerate(classes):
            for f in sorted((root / split / name).glob("*")):
                if f.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"}:
                    xs.append(_read_image(Image, f))
                    ys.append(c)
        if not xs:
            raise DataError(f"No .png/.jpg images found under {root / split}.")
        shapes = {a.shape for a in xs}
        if len(shapes) > 1:
            raise DataError(f"Images under {root / split} have different sizes {sorted(shapes)[:3]}; "
                            "resize them to one size.")
        return np.stack(xs), np.asarray(ys, dtype=np.int64)

    xtr, ytr = read("train")
    xte, yte = read("test")
    return Bundle(root.name, ArrayDataset(_normalise_hwc(xtr), torch.from_numpy(ytr), classes=classes),
                  ArrayDataset(_normalise_hwc(xte), torch.from_numpy(yte), classes=classes), classes, _pixel_norm(xtr))

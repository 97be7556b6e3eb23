"""Fashion-MNIST, from a local copy when there is one and from the internet when there is not.

Sources, tried in order (chapters 10-12):

1. a folder you name (``root=`` or ``$GENAI_FASHION_MNIST_DIR``);
2. Debian/Ubuntu's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
3. the book's cache folder (``~/.cache/genai_helpers/fashion-mnist``), filled by
   ``load_fashion_mnist(download=True)`` from the dataset authors' public mirror (needs network:
   Colab yes, this book's CI no).

Each source holds the four original gzipped IDX files.
"""
from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

__all__ = ["FASHION_ENV", "FASHION_DEBIAN_DIR", "FASHION_CACHE_DIR", "FASHION_URL", "FASHION_FILES",
           "FASHION_CLASSES", "read_idx", "find_fashion_mnist", "download_fashion_mnist", "load_fashion_mnist"]

FASHION_ENV = "GENAI_FASHION_MNIST_DIR"
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genai_helpers" / "fashion-mnist"
FASHION_URL = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array of its stored shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {array.size} values")
    return array.reshape(shape)


def _has_files(folder: Path, split: str) -> bool:
    return all((folder / f).is_file() for f in FASHION_FILES[split])


def find_fashion_mnist(root: str | os.PathLike | None = None, split: str = "train") -> Path:
    """The first folder holding ``split``'s files; a ``FileNotFoundError`` naming every option if none."""
    if split not in FASHION_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    candidates = [Path(root)] if root is not None else [
        *([Path(os.environ[FASHION_ENV])] if os.environ.get(FASHION_ENV) else []), FASHION_DEBIAN_DIR, FASHION_CACHE_DIR]
    for folder in candidates:
        if _has_files(folder, split):
            return folder
    raise FileNotFoundError(
        "Fashion-MNIST not found. Three ways to get it: (1) name a folder holding the four .gz IDX files "
        f"with root=... or ${FASHION_ENV}; (2) install the Debian/Ubuntu package "
        f"`apt-get install dataset-fashion-mnist` (files land in {FASHION_DEBIAN_DIR}); (3) call "
        f"load_fashion_mnist(download=True) with network access, which caches them in {FASHION_CACHE_DIR}. "
        f"Looked in: {', '.join(map(str, candidates))}")


def download_fashion_mnist(dest: str | os.PathLike = FASHION_CACHE_DIR, timeout: float = 60.0) -> Path:
    """Download the four files into ``dest`` (atomically per file) and return ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*FASHION_FILES["train"], *FASHION_FILES["test"]):
        target = dest / name
        if target.is_file():
            continue
        fd, tmp = tempfile.mkstemp(dir=dest, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(FASHION_URL + name, timeout=timeout) as resp:
                shutil.copyfileobj(resp, out)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return dest


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None, *, download: bool = False,
                       limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)``: float images ``(N, 1, 28, 28)`` in [0, 1] and int64 labels ``(N,)``.

    ``limit`` keeps the first ``limit`` examples (smoke runs). See the module docstring for sources.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    try:
        folder = find_fashion_mnist(root, split)
    except FileNotFoundError:
        if not download:
            raise
        folder = download_fashion_mnist()
    images_file, labels_file = FASHION_FILES[split]
    images = read_idx(folder / images_file)
    labels = read_idx(folder / labels_file)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))

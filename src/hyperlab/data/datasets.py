"""Readers for MNIST, Fashion-MNIST and CIFAR-10 (python version), with MD5 checks.

Layout under the data root (see [`resolve_data_dir`][hyperlab.data.datasets.resolve_data_dir])::

    <root>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    <root>/fashion-mnist/  (same four names)
    <root>/cifar10/{data_batch_1..5,test_batch,batches.meta}
        (``<root>/cifar10/cifar-10-batches-py/`` is accepted too)

Every official file is checked against the size and MD5 in
[`REGISTRY`][hyperlab.data.datasets.REGISTRY] before it is parsed
(the verified result is cached per ``(path, size, mtime)``), so a corrupt file raises
[`DataCorruptError`][hyperlab.data.datasets.DataCorruptError] instead of silently training on
garbage. Files that are not the
official ones (subsets, synthetic test fixtures) can be read with ``verify=False``: the MD5 check
is skipped, every format check still runs. A user's file is never deleted or overwritten.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import torch

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATA_ENV_VAR",
    "DataCorruptError",
    "DataNotFoundError",
    "FileSpec",
    "MNIST_MEAN",
    "MNIST_STD",
    "REGISTRY",
    "clear_caches",
    "download_file",
    "file_md5",
    "load_cifar10",
    "load_fashion_mnist",
    "load_mnist",
    "normalize",
    "resolve_data_dir",
    "to_float",
    "verify_file",
]

DATA_ENV_VAR = "HYPERLAB_DATA"
"""Environment variable naming the data root (CI: ``../shared/data``)."""

MNIST_MEAN = 0.1307
"""MNIST pixel mean in [0, 1] units (the constant used by all three papers' code)."""
MNIST_STD = 0.3081
"""MNIST pixel std in [0, 1] units."""
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel CIFAR-10 train mean (commonly used values)."""
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel CIFAR-10 train std."""
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""Class names in label order (as in ``batches.meta``)."""

DOWNLOAD_TIMEOUT_S = 10.0
"""Network timeout (seconds) so offline users get the 'not found' message quickly."""


class DataNotFoundError(FileNotFoundError):
    """A dataset file is missing and could not (or may not) be downloaded."""

    def __init__(self, message: str, missing: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.missing = list(missing)


class DataCorruptError(ValueError):
    """A dataset file exists but is not what it should be (checksum, format or shape)."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class FileSpec:
    """An expected file: name, byte size, MD5 and where to download it from."""

    name: str
    size: int
    md5: str
    url: str | None = None
    """Direct URL, or None if the file comes out of an archive (see ``_CIFAR_ARCHIVE``)."""


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MIRRORS = {"mnist": _MNIST_URL, "fashion-mnist": _FASHION_URL}


def _idx_specs(base_url: str, rows: list[tuple[str, int, str]]) -> dict[str, FileSpec]:
    return {n: FileSpec(n, s, m, base_url + n) for n, s, m in rows}


REGISTRY: dict[str, dict[str, FileSpec]] = {
    "mnist": _idx_specs(
        _MNIST_URL,
        [
            ("train-images-idx3-ubyte.gz", 9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", 28881, "d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", 1648877, "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", 4542, "ec29112dd5afa0611ce80d1b7f02629c"),
        ],
    ),
    "fashion-mnist": _idx_specs(
        _FASHION_URL,
        [
            ("train-images-idx3-ubyte.gz", 26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", 29515, "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", 4422102, "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", 5148, "bb300cfdad3c16e7a12a480ee83cd310"),
        ],
    ),
    # Sizes from the git-annex keys of datasets-mila/datasets--cifar10; MD5s are torchvision's.
    "cifar10": {
        n: FileSpec(n, s, m)
        for n, s, m in [
            ("data_batch_1", 31035704, "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", 31035320, "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", 31035999, "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", 31035696, "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", 31035623, "482c414d41f54cd18b22e5b47cb7c3cb"),
            ("test_batch", 31035526, "40351d587109b95175f43aff81a1287e"),
            ("batches.meta", 158, "5ff9c542aee3614f3951f8cda6e48888"),
        ]
    },
}
"""Expected files per dataset folder, from ``shared/data/README.md`` and torchvision."""

_CIFAR_ARCHIVE = FileSpec(
    "cifar-10-python.tar.gz",
    170498071,
    "c58f30108f718f92721af3b95e74349a",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
)
_CIFAR_ARCHIVE_DIR = "cifar-10-batches-py"

# Folders searched (in order) under the root; the first one is where downloads go.
_FOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"),
    "cifar10": ("cifar10", f"cifar10/{_CIFAR_ARCHIVE_DIR}", _CIFAR_ARCHIVE_DIR),
}

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
_CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}


# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Data root: ``data_dir`` if given, else ``$HYPERLAB_DATA``, else the user cache dir.
    A root that is a file (not a folder) is an error naming where it came from."""
    if data_dir is not None and str(data_dir) != "":
        root, source = Path(data_dir).expanduser(), "--data-dir"
    elif os.environ.get(DATA_ENV_VAR):
        root, source = Path(os.environ[DATA_ENV_VAR]).expanduser(), f"${DATA_ENV_VAR}"
    else:
        return Path(platformdirs.user_cache_dir("hyperlab"))
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(
            f"{source}: {root} is a file, not a folder; expected the data root, the folder "
            "that holds mnist/, fashion-mnist/ or cifar10/ (data_dir=... in Python)"
        )
    return root


def _find(root: Path, dataset: str, name: str) -> Path | None:
    for folder in _FOLDERS[dataset]:
        p = root / folder / name
        if p.is_file():
            return p
    return None


def _not_found_message(root: Path, dataset: str, missing: list[str], reasons: list[str]) -> str:
    target = root / _FOLDERS[dataset][0]
    lines = [f"{dataset}: {len(missing)} file(s) not found under data root {root}:"]
    for name in missing:
        spec = REGISTRY[dataset][name]
        lines.append(f"  - {name} ({spec.size} bytes, md5 {spec.md5}) must go in {target}/")
    if reasons:
        lines.append("Download failed:")
        lines += [f"  {r}" for r in reasons]
    else:
        lines.append("Download was disabled (download=False).")
    src = _CIFAR_ARCHIVE.url if dataset == "cifar10" else _MIRRORS[dataset]
    lines.append(
        f"Place the files there (source: {src}), or point hyperlab at a folder that holds "
        f"'{_FOLDERS[dataset][0]}/': pass --data-dir DIR on the command line (data_dir=DIR in "
        f"Python), or set the environment variable {DATA_ENV_VAR}=DIR. To download and verify "
        f"them: hyperlab data download {dataset} [--data-dir DIR]."
    )
    return "\n".join(lines)


def _locate(root: Path, dataset: str, names: Sequence[str], download: bool) -> dict[str, Path]:
    """Paths of ``names``; downloads missing ones if allowed, else raises DataNotFoundError."""
    found = {n: p for n in names if (p := _find(root, dataset, n)) is not None}
    missing = [n for n in names if n not in found]
    if not missing:
        return found
    reasons: list[str] = []
    if download:
        target = root / _FOLDERS[dataset][0]
        try:
            if dataset == "cifar10":
                _download_cifar(target, missing)
            else:
                for n in missing:
                    spec = REGISTRY[dataset][n]
                    assert spec.url is not None
                    download_file(spec.url, target / n, spec.md5)
        except Exception as e:  # offline, HTTP error, bad checksum, read-only folder...
            reasons.append(f"{type(e).__name__}: {e}")
        found = {n: p for n in names if (p := _find(root, dataset, n)) is not None}
        missing = [n for n in names if n not in found]
        if not missing:
            return found
    target = root / _FOLDERS[dataset][0]
    raise DataNotFoundError(
        _not_found_message(root, dataset, missing, reasons), [target / n for n in missing]
    )


def fetch_dataset(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Every file of ``dataset`` under the data root, downloading missing ones, each checked
    against its recorded size and MD5 (``hyperlab data download``). Returns name -> path."""
    if dataset not in REGISTRY:
        raise ValueError(f"dataset: expected one of {sorted(REGISTRY)}, got {dataset!r}")
    root = resolve_data_dir(data_dir)
    paths = _locate(root, dataset, list(REGISTRY[dataset]), download=True)
    for name, path in paths.items():
        verify_file(path, REGISTRY[dataset][name])
    return paths


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


def file_md5(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_verified: set[tuple[str, int, int, str]] = set()


def verify_file(path: str | os.PathLike[str], spec: FileSpec) -> None:
    """Check size and MD5 of ``path`` against ``spec``; raise DataCorruptError on mismatch.

    A successful check is remembered per (path, size, mtime), so repeated loads are fast.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, spec.md5)
    if key in _verified:
        return
    hint = "The file is damaged or not the official one; replace it (it was left untouched)."
    if st.st_size != spec.size:
        raise DataCorruptError(
            f"{path}: expected {spec.size} bytes (md5 {spec.md5}), found {st.st_size} bytes. "
            + hint,
            path,
        )
    md5 = file_md5(path)
    if md5 != spec.md5:
        raise DataCorruptError(f"{path}: expected md5 {spec.md5}, found md5 {md5}. " + hint, path)
    _verified.add(key)


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def clear_caches() -> None:
    """Forget verified checksums and decoded arrays (e.g. after replacing files)."""
    _verified.clear()
    _read_idx_cached.cache_clear()
    _read_cifar_batch_cached.cache_clear()


# --------------------------------------------------------------------------------------------
# Download (atomic: temp file in the target folder, renamed only after the MD5 matches)
# --------------------------------------------------------------------------------------------


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    md5: str,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest`` atomically; raise ValueError if the MD5 does not match.

    ``dest`` is only created by a rename after the check, so no partial file is ever left;
    an existing ``dest`` is never overwritten.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; refusing to overwrite it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                h.update(block)
                out.write(block)
        if h.hexdigest() != md5:
            raise ValueError(f"{url}: expected md5 {md5}, downloaded md5 {h.hexdigest()}")
        if dest.exists():
            raise FileExistsError(f"{dest} appeared during download; left it untouched")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download_cifar(target: Path, missing: Sequence[str]) -> None:
    """Fetch the CIFAR-10 python archive and extract the missing (verified) batches."""
    target.mkdir(parents=True, exist_ok=True)
    archive = target / _CIFAR_ARCHIVE.name
    own_archive = not archive.exists()
    if own_archive:
        assert _CIFAR_ARCHIVE.url is not None
        download_file(_CIFAR_ARCHIVE.url, archive, _CIFAR_ARCHIVE.md5)
    else:
        verify_file(archive, _CIFAR_ARCHIVE)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in missing:
                spec = REGISTRY["cifar10"][name]
                member = tar.extractfile(f"{_CIFAR_ARCHIVE_DIR}/{name}")
                if member is None:
                    raise ValueError(f"{archive}: no member {_CIFAR_ARCHIVE_DIR}/{name}")
                fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target)
                tmp = Path(tmp_name)
                try:
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(member, out)
                    verify_file(tmp, spec)
                    if not (target / name).exists():
                        os.replace(tmp, target / name)
                finally:
                    tmp.unlink(missing_ok=True)
    finally:
        if own_archive:
            archive.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataCorruptError(
            f"{path}: expected a complete gzip stream, found {type(e).__name__}: {e}", path
        ) from e
    magic = 0x800 | ndim  # uint8 data, `ndim` dimensions
    head = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        shown = "nothing" if found is None else f"0x{found:08x}"
        raise DataCorruptError(f"{path}: expected IDX magic 0x{magic:08x}, found {shown}", path)
    if len(raw) < head:
        raise DataCorruptError(f"{path}: IDX header truncated ({len(raw)} bytes)", path)
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    n_expected = int(np.prod(dims))
    if len(raw) - head != n_expected:
        raise DataCorruptError(
            f"{path}: header says shape {dims} ({n_expected} bytes of data), "
            f"found {len(raw) - head} bytes of data",
            path,
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


@functools.lru_cache(maxsize=16)
def _read_idx_cached(key: tuple[str, int, int], ndim: int) -> torch.Tensor:
    return torch.from_numpy(_read_idx(Path(key[0]), ndim).copy())


def _load_idx_dataset(
    dataset: str, split: str, data_dir: str | os.PathLike[str] | None, download: bool, verify: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    if split not in _IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    img_name, lab_name, n_official = _IDX_FILES[split]
    root = resolve_data_dir(data_dir)
    paths = _locate(root, dataset, (img_name, lab_name), download)
    if verify:
        for name, p in paths.items():
            verify_file(p, REGISTRY[dataset][name])
    images = _read_idx_cached(_file_key(paths[img_name]), 3)
    labels = _read_idx_cached(_file_key(paths[lab_name]), 1)
    pi, pl = paths[img_name], paths[lab_name]
    if images.shape[1:] != (28, 28):
        raise DataCorruptError(
            f"{pi}: expected images (N, 28, 28), found {tuple(images.shape)}", pi
        )
    if verify and images.shape[0] != n_official:
        raise DataCorruptError(f"{pi}: expected {n_official} images, found {images.shape[0]}", pi)
    if labels.shape[0] != images.shape[0]:
        raise DataCorruptError(
            f"{pl}: expected {images.shape[0]} labels (one per image in {pi.name}), "
            f"found {labels.shape[0]}",
            pl,
        )
    if labels.numel() and int(labels.max()) > 9:
        raise DataCorruptError(f"{pl}: expected labels 0..9, found {int(labels.max())}", pl)
    # Clones: the decoded arrays are cached, callers may modify what they get.
    return images.clone(), labels.to(torch.int64)


def load_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    verify: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` ('train' 60k / 'test' 10k): images uint8 (N, 28, 28), labels int64 (N,).

    ``verify=False`` skips the MD5 check (for files that are not the official ones).
    """
    return _load_idx_dataset("mnist", split, data_dir, download, verify)


def load_fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    verify: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST, same format and options as
    [`load_mnist`][hyperlab.data.datasets.load_mnist]."""
    return _load_idx_dataset("fashion-mnist", split, data_dir, download, verify)


# --------------------------------------------------------------------------------------------
# CIFAR-10 python batches
# --------------------------------------------------------------------------------------------

# Globals a CIFAR batch pickle may reference (numpy arrays, py2/py3 bytes); anything else is
# refused, so a non-official file read with verify=False cannot run arbitrary code.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _get(d: dict, key: str) -> object:
    return d[key.encode()] if key.encode() in d else d[key]


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any unpickling failure means a bad file
        raise DataCorruptError(
            f"{path}: expected a CIFAR-10 python batch (pickled dict), could not unpickle: "
            f"{type(e).__name__}: {e}",
            path,
        ) from e
    if not isinstance(d, dict):
        raise DataCorruptError(f"{path}: expected a pickled dict, found {type(d).__name__}", path)
    try:
        data, labels = _get(d, "data"), _get(d, "labels")
    except KeyError as e:
        raise DataCorruptError(
            f"{path}: expected keys b'data' and b'labels', found {sorted(map(repr, d))}", path
        ) from e
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataCorruptError(
            f"{path}: expected b'data' uint8 (n, 3072), found {data.dtype} {data.shape}", path
        )
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != data.shape[0]:
        raise DataCorruptError(
            f"{path}: expected {data.shape[0]} labels, found {labels.shape[0]}", path
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataCorruptError(
            f"{path}: expected labels 0..9, found {labels.min()}..{labels.max()}", path
        )
    return data, labels


@functools.lru_cache(maxsize=8)
def _read_cifar_batch_cached(key: tuple[str, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = _read_cifar_batch(Path(key[0]))
    # Rows are 1024 R, 1024 G, 1024 B values of a row-major 32x32 image.
    return torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32)), torch.from_numpy(
        labels
    )


def load_cifar10(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    verify: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` ('train' = data_batch_1..5, 'test' = test_batch).

    Returns images uint8 (N, 3, 32, 32) in RGB channel order and labels int64 (N,).
    ``verify=False`` skips the MD5 check (for files that are not the official ones, e.g.
    subsets or test fixtures); the pickle is then loaded with an unpickler that only accepts
    numpy arrays and plain containers.
    """
    if split not in _CIFAR_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = resolve_data_dir(data_dir)
    paths = _locate(root, "cifar10", _CIFAR_FILES[split], download)
    images, labels = [], []
    for name, p in paths.items():
        if verify:
            verify_file(p, REGISTRY["cifar10"][name])
        x, y = _read_cifar_batch_cached(_file_key(p))
        images.append(x)
        labels.append(y)
    # torch.cat copies, so callers never alias the cache.
    return torch.cat(images), torch.cat(labels)


# --------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in 0..255 -> float32 in [0, 1]; floating inputs are only cast to float32."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"expected uint8 or floating images, got {images.dtype}")
    return images.to(torch.float32)


def normalize(
    images: torch.Tensor,
    mean: float | Sequence[float] = MNIST_MEAN,
    std: float | Sequence[float] = MNIST_STD,
) -> torch.Tensor:
    """(images - mean) / std; per-channel sequences broadcast over dim -3 of (..., C, H, W).

    uint8 inputs are first converted with [`to_float`][hyperlab.data.datasets.to_float]. The
    defaults are the MNIST
    constants, which the modularity paper's code also applies to CIFAR-10.
    """
    x = to_float(images) if not images.is_floating_point() else images
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    if m.ndim == 1:
        m = m.view(-1, 1, 1)
    if s.ndim == 1:
        s = s.view(-1, 1, 1)
    return (x - m) / s

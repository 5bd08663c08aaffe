"""Tests for hyperlab.data.datasets: real MNIST / Fashion-MNIST, corrupt and missing files,
CIFAR-10 batches written here in the official format. Never touches the network."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperlab.data import (
    DataCorruptError,
    DataNotFoundError,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
    normalize,
    resolve_data_dir,
)
from hyperlab.data import datasets as ds
from hyperlab.data.datasets import to_float

# From shared/data/README.md.
MNIST_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
MNIST_MEAN_PIXEL = {"train": 33.32, "test": 33.79}
SIZES = {"train": 60000, "test": 10000}


def _require(root: Path, folder: str, names: list[str]) -> Path:
    missing = [n for n in names if not (root / folder / n).is_file()]
    if missing:
        pytest.fail(
            f"test data missing: {missing} in {root / folder}. Set HYPERLAB_DATA to the folder "
            "holding mnist/ and fashion-mnist/ (CI: ../shared/data)."
        )
    return root / folder


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    ds.clear_caches()


# ------------------------------------------------------------------------------------------
# Real data
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_matches_readme(data_root: Path, split: str) -> None:
    _require(data_root, "mnist", [s.name for s in ds.REGISTRY["mnist"].values()])
    x, y = load_mnist(split, data_root, download=False)
    assert x.shape == (SIZES[split], 28, 28) and x.dtype == torch.uint8
    assert y.shape == (SIZES[split],) and y.dtype == torch.int64
    assert int(y.min()) == 0 and int(y.max()) == 9
    assert int(x.max()) == 255
    assert torch.bincount(y, minlength=10).tolist() == MNIST_COUNTS[split]
    assert x.double().mean().item() == pytest.approx(MNIST_MEAN_PIXEL[split], abs=0.005)


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_matches_readme(data_root: Path, split: str) -> None:
    _require(data_root, "fashion-mnist", [s.name for s in ds.REGISTRY["fashion-mnist"].values()])
    x, y = load_fashion_mnist(split, data_root, download=False)
    assert x.shape == (SIZES[split], 28, 28) and x.dtype == torch.uint8
    assert y.shape == (SIZES[split],) and y.dtype == torch.int64
    per_class = SIZES[split] // 10
    assert torch.bincount(y, minlength=10).tolist() == [per_class] * 10
    # Well-known Fashion-MNIST mean 0.2860 (72.94 / 255 on train); clearly not MNIST's 33.
    assert 72.0 < x.double().mean().item() < 74.0


def test_env_var_and_cached_loads_are_independent(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require(data_root, "mnist", ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
    monkeypatch.setenv("HYPERLAB_DATA", str(data_root))
    x1, y1 = load_mnist("test", download=False)
    x1.zero_()
    y1.zero_()
    x2, y2 = load_mnist("test", download=False)  # from the in-memory cache
    assert int(x2.max()) == 255 and int(y2.max()) == 9


def test_resolve_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HYPERLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("HYPERLAB_DATA")
    assert "hyperlab" in str(resolve_data_dir())


# ------------------------------------------------------------------------------------------
# Corrupt and missing files
# ------------------------------------------------------------------------------------------


def _copy_mnist_test(data_root: Path, tmp_path: Path) -> Path:
    src = _require(data_root, "mnist", ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
    dst = tmp_path / "mnist"
    dst.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(src / name, dst / name)
    return dst


def test_flipped_byte_is_corrupt(data_root: Path, tmp_path: Path) -> None:
    d = _copy_mnist_test(data_root, tmp_path)
    p = d / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(p.read_bytes())
    raw[2000] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(DataCorruptError) as e:
        load_mnist("test", tmp_path, download=False)
    msg = str(e.value)
    assert str(p) in msg and "ec29112dd5afa0611ce80d1b7f02629c" in msg and "found md5" in msg
    assert p.read_bytes() == bytes(raw)  # never touched


def test_truncated_file_is_corrupt(data_root: Path, tmp_path: Path) -> None:
    d = _copy_mnist_test(data_root, tmp_path)
    p = d / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:100_000])
    with pytest.raises(DataCorruptError, match="t10k-images-idx3-ubyte.gz") as e:
        load_mnist("test", tmp_path, download=False)
    assert "1648877 bytes" in str(e.value) and "100000 bytes" in str(e.value)
    # Without the checksum the gzip stream itself is found to be truncated.
    with pytest.raises(DataCorruptError, match="gzip"):
        load_mnist("test", tmp_path, download=False, verify=False)
    assert p.stat().st_size == 100_000


def test_bad_magic_and_shape_without_checksum(tmp_path: Path) -> None:
    d = tmp_path / "mnist"
    d.mkdir()
    images = np.zeros((3, 28, 28), np.uint8)
    header = (0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in images.shape)
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    lab = d / "t10k-labels-idx1-ubyte.gz"
    lab.write_bytes(gzip.compress((0x803).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"\1\2\3"))
    with pytest.raises(DataCorruptError, match="magic 0x00000801, found 0x00000803"):
        load_mnist("test", tmp_path, download=False, verify=False)
    # Two labels for three images.
    lab.write_bytes(gzip.compress((0x801).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"\1\2"))
    with pytest.raises(DataCorruptError, match="expected 3 labels"):
        load_mnist("test", tmp_path, download=False, verify=False)
    # Header promises more data than there is.
    lab.write_bytes(gzip.compress((0x801).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\1\2"))
    with pytest.raises(DataCorruptError, match="found 2 bytes of data"):
        load_mnist("test", tmp_path, download=False, verify=False)
    # A valid non-official file loads with verify=False only.
    lab.write_bytes(gzip.compress((0x801).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"\1\2\3"))
    x, y = load_mnist("test", tmp_path, download=False, verify=False)
    assert x.shape == (3, 28, 28) and y.tolist() == [1, 2, 3]
    with pytest.raises(DataCorruptError):
        load_mnist("test", tmp_path, download=False)


def test_missing_file_message(data_root: Path, tmp_path: Path) -> None:
    d = _copy_mnist_test(data_root, tmp_path)
    (d / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError) as e:
        load_mnist("test", tmp_path, download=False)
    assert isinstance(e.value, FileNotFoundError)
    msg = str(e.value)
    for part in ("t10k-images-idx3-ubyte.gz", str(d), "9fb629c4189551a2d022fa330f9573f3"):
        assert part in msg
    assert "HYPERLAB_DATA" in msg and "--data-dir" in msg
    assert "t10k-labels" not in msg  # only what is missing
    assert e.value.missing == [d / "t10k-images-idx3-ubyte.gz"]


def test_all_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as e:
        load_fashion_mnist("train", tmp_path, download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in msg and str(tmp_path / "fashion-mnist") in msg


# ------------------------------------------------------------------------------------------
# Download (urlopen monkeypatched: never the network)
# ------------------------------------------------------------------------------------------


def _serve(monkeypatch: pytest.MonkeyPatch, payloads: dict[str, bytes]) -> list[str]:
    calls: list[str] = []

    def fake_urlopen(url: str, timeout: float | None = None) -> io.BytesIO:
        calls.append(url)
        assert timeout is not None and timeout <= 30
        name = url.rsplit("/", 1)[-1]
        if name not in payloads:
            raise urllib.error.URLError("offline")
        return io.BytesIO(payloads[name])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return calls


def test_download_is_verified_and_atomic(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _require(data_root, "mnist", ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
    good = {n: (src / n).read_bytes() for n in ("t10k-images-idx3-ubyte.gz",)}
    good["t10k-labels-idx1-ubyte.gz"] = b"not the real file"
    calls = _serve(monkeypatch, good)
    with pytest.raises(DataNotFoundError) as e:
        load_mnist("test", tmp_path, download=True)
    assert all(u.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for u in calls)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "downloaded md5" in msg
    files = sorted(p.name for p in (tmp_path / "mnist").iterdir())
    assert files == ["t10k-images-idx3-ubyte.gz"]  # the good one landed, no partial files

    good["t10k-labels-idx1-ubyte.gz"] = (src / "t10k-labels-idx1-ubyte.gz").read_bytes()
    x, y = load_mnist("test", tmp_path, download=True)
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert len(list((tmp_path / "mnist").iterdir())) == 2


def test_download_failure_reports_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, {})
    with pytest.raises(DataNotFoundError, match="offline") as e:
        load_fashion_mnist("test", tmp_path, download=True)
    assert "t10k-images-idx3-ubyte.gz" in str(e.value)
    assert not any((tmp_path / "fashion-mnist").iterdir())


# ------------------------------------------------------------------------------------------
# CIFAR-10 (batches written here in the official python format)
# ------------------------------------------------------------------------------------------


def _cifar_rows(n: int, offset: int) -> np.ndarray:
    """Row i: red = pixel row index, green = pixel column index, blue = offset + i."""
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    rows = np.empty((n, 3072), np.uint8)
    rows[:, :1024] = r.reshape(-1)
    rows[:, 1024:2048] = c.reshape(-1)
    rows[:, 2048:] = (offset + np.arange(n))[:, None]
    return rows


def _write_batch(path: Path, n: int, offset: int, **override: object) -> None:
    d = {
        b"batch_label": b"synthetic batch",
        b"labels": [(offset + i) % 10 for i in range(n)],
        b"data": _cifar_rows(n, offset),
        b"filenames": [f"img_{offset + i}.png".encode() for i in range(n)],
    }
    d.update({k.encode(): v for k, v in override.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def test_cifar10_reader_layout_and_channels(tmp_path: Path) -> None:
    d = tmp_path / "cifar10"
    for i in range(5):
        _write_batch(d / f"data_batch_{i + 1}", 4, 4 * i)
    _write_batch(d / "test_batch", 3, 100)
    x, y = load_cifar10("train", tmp_path, download=False, verify=False)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and y.tolist() == [i % 10 for i in range(20)]
    rows = torch.arange(32).view(32, 1).expand(32, 32)
    assert torch.equal(x[:, 0], rows.expand(20, 32, 32).to(torch.uint8))  # red: row index
    assert torch.equal(x[:, 1], rows.T.expand(20, 32, 32).to(torch.uint8))  # green: column
    assert x[:, 2].flatten(1).float().std(1).max() == 0  # blue: one value per image
    assert x[:, 2, 0, 0].tolist() == list(range(20))  # batches in order 1..5
    xt, yt = load_cifar10("test", tmp_path, download=False, verify=False)
    assert xt.shape == (3, 3, 32, 32) and yt.tolist() == [0, 1, 2]


def test_cifar10_archive_subfolder_and_checks(tmp_path: Path) -> None:
    d = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_batch(d / "test_batch", 2, 7)
    x, y = load_cifar10("test", tmp_path, download=False, verify=False)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [7, 8]
    # With verification (the default) a non-official file is refused, named, and kept.
    with pytest.raises(DataCorruptError, match="test_batch") as e:
        load_cifar10("test", tmp_path, download=False)
    assert "31035526 bytes" in str(e.value) and (d / "test_batch").exists()


def test_cifar10_bad_batches(tmp_path: Path) -> None:
    p = tmp_path / "cifar10" / "test_batch"
    _write_batch(p, 2, 0, data=np.zeros((2, 3000), np.uint8))
    with pytest.raises(DataCorruptError, match=r"\(n, 3072\)"):
        load_cifar10("test", tmp_path, download=False, verify=False)
    _write_batch(p, 2, 0, labels=[1, 2, 3])
    with pytest.raises(DataCorruptError, match="expected 2 labels"):
        load_cifar10("test", tmp_path, download=False, verify=False)
    p.write_bytes(pickle.dumps(b"x" * 10, protocol=2)[:5])
    with pytest.raises(DataCorruptError, match="unpickle"):
        load_cifar10("test", tmp_path, download=False, verify=False)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (os.getcwd, ())  # any callable global: must be refused, not called


def test_cifar10_unpickler_refuses_code(tmp_path: Path) -> None:
    p = tmp_path / "cifar10" / "test_batch"
    _write_batch(p, 2, 0, batch_label=_Evil())
    with pytest.raises(DataCorruptError, match="not allowed"):
        load_cifar10("test", tmp_path, download=False, verify=False)


def test_cifar10_missing_batches(tmp_path: Path) -> None:
    _write_batch(tmp_path / "cifar10" / "data_batch_1", 2, 0)
    with pytest.raises(DataNotFoundError) as e:
        load_cifar10("train", tmp_path, download=False, verify=False)
    msg = str(e.value)
    assert "data_batch_1" not in msg
    for i in range(2, 6):
        assert f"data_batch_{i}" in msg
    assert "d4bba439e000b95fd0a9bffe97cbabec" in msg and str(tmp_path / "cifar10") in msg


# ------------------------------------------------------------------------------------------
# Conversions
# ------------------------------------------------------------------------------------------


def test_to_float_and_normalize() -> None:
    x = torch.tensor([[0, 255], [51, 102]], dtype=torch.uint8)
    f = to_float(x)
    assert f.dtype == torch.float32
    assert torch.allclose(f, torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    n = normalize(x)
    assert n[0, 0].item() == pytest.approx(-ds.MNIST_MEAN / ds.MNIST_STD)
    rgb = torch.ones(2, 3, 4, 4)
    out = normalize(rgb, (0.5, 0.25, 0.0), (0.5, 0.5, 1.0))
    assert out[:, :, 0, 0].tolist() == [[1.0, 1.5, 1.0]] * 2
    with pytest.raises(TypeError):
        to_float(torch.zeros(2, dtype=torch.int64))


def test_cifar10_download_extracts_verified_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in archive with one synthetic batch; the registry entries are patched to match.
    src = tmp_path / "src" / "cifar-10-batches-py" / "test_batch"
    _write_batch(src, 3, 0)
    tar_path = tmp_path / "src" / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py/test_batch")
    spec = ds.FileSpec("test_batch", src.stat().st_size, ds.file_md5(src))
    monkeypatch.setitem(ds.REGISTRY["cifar10"], "test_batch", spec)
    archive = ds.FileSpec(
        "cifar-10-python.tar.gz",
        tar_path.stat().st_size,
        ds.file_md5(tar_path),
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    )
    monkeypatch.setattr(ds, "_CIFAR_ARCHIVE", archive)
    _serve(monkeypatch, {"cifar-10-python.tar.gz": tar_path.read_bytes()})
    root = tmp_path / "root"
    x, y = load_cifar10("test", root, download=True)
    assert x.shape == (3, 3, 32, 32) and y.tolist() == [0, 1, 2]
    assert sorted(p.name for p in (root / "cifar10").iterdir()) == ["test_batch"]

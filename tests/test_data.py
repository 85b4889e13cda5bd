import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mlpmnist import data as mdata

# Published class counts of MNIST, a property of the data set.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def write_idx(root: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> None:
    raw = mdata.raw_dir(root)
    raw.mkdir(parents=True, exist_ok=True)
    for name, arr in images.items():
        n, h, w = arr.shape
        header = np.array([0x803, n, h, w], dtype=">i4").tobytes()
        (raw / name).write_bytes(header + arr.astype(np.uint8).tobytes())
    for name, arr in labels.items():
        header = np.array([0x801, len(arr)], dtype=">i4").tobytes()
        (raw / name).write_bytes(header + arr.astype(np.uint8).tobytes())


def tiny(root: Path, n_train: int = 12, n_test: int = 5) -> None:
    rng = np.random.default_rng(0)
    imgs = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
    }
    imgs["train-images-idx3-ubyte"][0, 0, :2] = [0, 255]
    labels = {
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    write_idx(root, imgs, labels)


def copy_mnist(src: Path, dst: Path) -> Path:
    shutil.copytree(mdata.raw_dir(src), mdata.raw_dir(dst))
    return mdata.raw_dir(dst)


def test_real_mnist_shapes_range_and_labels(mnist):
    assert mnist.train.x.shape == (60000, 784) and mnist.test.x.shape == (10000, 784)
    assert mnist.train.x.dtype == torch.float32 and mnist.train.y.dtype == torch.int64
    for split in (mnist.train, mnist.test):
        assert split.x.min().item() == -1.0 and split.x.max().item() == 1.0
    assert torch.bincount(mnist.train.y).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.test.y).tolist() == TEST_COUNTS


def test_pixels_roundtrip_exactly(mnist):
    pixels = mdata.to_pixels(mnist.train.x)
    assert pixels is not None and pixels.dtype == torch.uint8
    assert torch.equal(mdata.scale(pixels), mnist.train.x)
    assert mdata.to_pixels(mnist.train.x[:10] + 1e-3) is None


def test_tiny_idx_files_load_and_scale(tmp_path):
    tiny(tmp_path)
    d = mdata.load(tmp_path, download=False, check=False)
    assert d.train.x.shape == (12, 784) and d.test.x.shape == (5, 784)
    assert d.train.x[0, :2].tolist() == [-1.0, 1.0]
    assert d.train.y.tolist() == [i % 10 for i in range(12)]


def test_tiny_files_fail_the_checksum(tmp_path):
    tiny(tmp_path)
    with pytest.raises(mdata.DataError, match="train-images-idx3-ubyte is corrupt or truncated"):
        mdata.load(tmp_path, download=False)


def test_altered_byte_is_named(tmp_path, mnist):
    raw = copy_mnist(mnist.root, tmp_path)
    path = raw / "t10k-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[100] = (blob[100] + 1) % 10
    path.write_bytes(bytes(blob))
    with pytest.raises(mdata.DataError, match="t10k-labels-idx1-ubyte is corrupt"):
        mdata.load(tmp_path, download=False)


def test_truncated_file_is_named(tmp_path, mnist):
    raw = copy_mnist(mnist.root, tmp_path)
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(mdata.DataError, match="train-labels-idx1-ubyte is corrupt or truncated"):
        mdata.load(tmp_path, download=False)
    # Without the checksum, torchvision's reader still refuses it; never silent garbage.
    with pytest.raises(mdata.DataError, match="could not read MNIST"):
        mdata.load(tmp_path, download=False, check=False)


def test_missing_data_names_directory_files_and_fix(tmp_path):
    with pytest.raises(mdata.DataError) as e:
        mdata.load(tmp_path / "empty", download=False)
    msg = str(e.value)
    assert str((tmp_path / "empty" / "MNIST" / "raw").resolve()) in msg
    assert all(name in msg for name in mdata.MD5) and mdata.ENV_VAR in msg


def test_missing_data_offline_download_fails_clearly(tmp_path):
    try:
        mdata.load(tmp_path, download=True)
    except mdata.DataError as e:
        assert "download failed" in str(e) and mdata.ENV_VAR in str(e)
    else:
        pytest.skip("this machine could download MNIST, so the offline path was not exercised")


def test_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(mdata.ENV_VAR, str(tmp_path))
    assert mdata.resolve_root() == tmp_path
    assert mdata.resolve_root("elsewhere") == Path("elsewhere")
    monkeypatch.delenv(mdata.ENV_VAR)
    assert mdata.resolve_root() == Path("data")

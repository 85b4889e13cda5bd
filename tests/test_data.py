import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlpmnist import data as mdata

# Published class counts of MNIST, a property of the data set.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def skip_unless_chmod_blocks(tmp: Path) -> None:
    """Skip where a mode of 000 does not stop this process reading (root, CAP_DAC_OVERRIDE)."""
    probe = tmp / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
    except PermissionError:
        return
    finally:
        probe.chmod(0o644)
        probe.unlink()
    pytest.skip(f"running as uid {os.geteuid()}, which reads files whatever their mode")


def copy_raw(src_root: Path, dst_raw: Path, names=tuple(mdata.MD5)) -> Path:
    """Copy real raw files into ``dst_raw`` as plain writable files (copytree would keep read-only modes)."""
    dst_raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(mdata.raw_dir(src_root) / name, dst_raw / name)
    return dst_raw


def one_line(excinfo: pytest.ExceptionInfo, *paths: Path) -> str:
    """The DataError's message, checked to be one line naming every path in ``paths``."""
    msg = str(excinfo.value)
    assert "\n" not in msg and "\r" not in msg, msg
    for path in paths:
        assert str(path) in msg, msg
    return msg


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def patch(path: Path, offset: int, new: bytes) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset : offset + len(new)] = new
    path.write_bytes(bytes(blob))


def test_real_mnist_shapes_range_and_labels(mnist):
    assert mnist.train.x.shape == (60000, 784) and mnist.test.x.shape == (10000, 784)
    assert mnist.train.x.dtype == torch.float32 and mnist.train.y.dtype == torch.int64
    for split in (mnist.train, mnist.test):
        assert split.x.min().item() == -1.0 and split.x.max().item() == 1.0
    assert torch.bincount(mnist.train.y).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.test.y).tolist() == TEST_COUNTS
    assert mnist.root.is_absolute()


def test_bit_exact_against_torchvision_reader(mnist):
    from torchvision.datasets import MNIST as TorchMNIST

    for split, train in ((mnist.train, True), (mnist.test, False)):
        ds = TorchMNIST(str(mnist.root), train=train, download=False)
        want = (ds.data.reshape(len(ds.data), 784).to(torch.float32) - 127.5) / 127.5
        assert split.x.dtype == want.dtype and torch.equal(split.x, want)
        assert split.y.dtype == ds.targets.dtype and torch.equal(split.y, ds.targets)


def test_load_never_imports_torchvision(mnist):
    code = "import sys, mlpmnist.data as d; d.load(download=False); print('torchvision' in sys.modules)"
    env = {**os.environ, mdata.ENV_VAR: str(mnist.root)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pixels_roundtrip_exactly(mnist):
    pixels = mdata.to_pixels(mnist.train.x)
    assert pixels is not None and pixels.dtype == torch.uint8
    assert torch.equal(mdata.scale(pixels), mnist.train.x)
    assert mdata.to_pixels(mnist.train.x[:10] + 1e-3) is None


def test_ensure_returns_absolute_root_and_checks_md5(mnist, tmp_path, monkeypatch):
    assert mdata.ensure(os.path.relpath(mnist.root), download=False) == mnist.root
    monkeypatch.setenv(mdata.ENV_VAR, str(mnist.root))
    assert mdata.ensure(download=False) == mnist.root
    # Same length, valid header, one label changed: only the MD5 can tell.
    raw = copy_raw(mnist.root, mdata.raw_dir(tmp_path))
    patch(raw / "t10k-labels-idx1-ubyte", 8 + 92, bytes([(mnist.test.y[92].item() + 1) % 10]))
    with pytest.raises(mdata.DataError, match="corrupt: its MD5") as e:
        mdata.ensure(tmp_path, download=False)
    one_line(e, raw / "t10k-labels-idx1-ubyte")


def test_check_false_skips_only_the_md5(mnist, tmp_path):
    raw = copy_raw(mnist.root, mdata.raw_dir(tmp_path))
    patch(raw / "t10k-labels-idx1-ubyte", 8 + 92, bytes([(mnist.test.y[92].item() + 1) % 10]))
    with pytest.raises(mdata.DataError, match="MD5") as e:
        mdata.load(tmp_path, download=False)
    one_line(e, raw / "t10k-labels-idx1-ubyte")
    d = mdata.load(tmp_path, download=False, check=False)
    assert torch.equal(d.train.x, mnist.train.x) and torch.equal(d.test.x, mnist.test.x)
    assert (d.test.y != mnist.test.y).nonzero().flatten().tolist() == [92]


def test_missing_files_are_named(mnist, tmp_path):
    raw = copy_raw(
        mnist.root, mdata.raw_dir(tmp_path), names=("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
    )
    with pytest.raises(mdata.DataError, match="MNIST not found") as e:
        mdata.load(tmp_path, download=False)
    msg = one_line(e, raw)
    assert "train-labels-idx1-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "train-images" not in msg and mdata.ENV_VAR in msg


def test_missing_root_creates_nothing_without_download(tmp_path):
    root = tmp_path / "absent"
    for call in (mdata.load, mdata.ensure):
        with pytest.raises(mdata.DataError, match="does not exist") as e:
            call(root, download=False)
        msg = one_line(e, mdata.raw_dir(root))
        assert all(name in msg for name in mdata.MD5) and mdata.ENV_VAR in msg
    assert tree(tmp_path) == []


def test_offline_download_fails_in_one_line_and_leaves_nothing(tmp_path):
    root = tmp_path / "new" / "data"
    try:
        mdata.load(root, download=True)
    except mdata.DataError as e:
        msg = str(e)
        assert "\n" not in msg and str(mdata.raw_dir(root)) in msg, msg
        assert "download failed" in msg and mdata.ENV_VAR in msg and len(msg) < 1000, msg
        assert tree(tmp_path) == []  # the folders made for the download are gone again
    else:
        pytest.skip("this machine could download MNIST, so the offline path was not exercised")


@pytest.mark.parametrize("check", [True, False])
def test_truncated_file_is_named(mnist, tmp_path, check):
    raw = copy_raw(mnist.root, mdata.raw_dir(tmp_path))
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(mdata.DataError, match="it is 59508 bytes, expected 60008") as e:
        mdata.load(tmp_path, download=False, check=check)
    assert "truncated" in one_line(e, path)


@pytest.mark.parametrize("check", [True, False])
@pytest.mark.parametrize(
    ("name", "offset", "new", "what"),
    [
        ("t10k-images-idx3-ubyte", 0, (2049).to_bytes(4, "big"), "magic number is 2049, expected 2051"),
        ("train-labels-idx1-ubyte", 0, (2051).to_bytes(4, "big"), "magic number is 2051, expected 2049"),
        ("train-images-idx3-ubyte", 8, (27).to_bytes(4, "big"), "declares 60000x27x28, expected 60000x28x28"),
    ],
)
def test_corrupt_header_is_named(mnist, tmp_path, check, name, offset, new, what):
    raw = copy_raw(mnist.root, mdata.raw_dir(tmp_path))
    patch(raw / name, offset, new)
    with pytest.raises(mdata.DataError, match=what) as e:
        mdata.load(tmp_path, download=False, check=check)
    one_line(e, raw / name)


def write_gz(mnist, raw: Path) -> Path:
    raw.mkdir(parents=True)
    for name in mdata.MD5:
        blob = (mdata.raw_dir(mnist.root) / name).read_bytes()
        (raw / f"{name}.gz").write_bytes(gzip.compress(blob, compresslevel=1))
    return raw


def test_only_gz_files_are_extracted_and_identical(mnist, tmp_path):
    raw = write_gz(mnist, mdata.raw_dir(tmp_path))
    d = mdata.load(tmp_path, download=False)
    for a, b in ((d.train, mnist.train), (d.test, mnist.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    for name in mdata.MD5:
        assert (raw / name).read_bytes() == (mdata.raw_dir(mnist.root) / name).read_bytes()
    # The published .gz stay; nothing else (no temporary file) is left behind.
    assert tree(tmp_path) == sorted(tree(mnist.root) + [f"MNIST/raw/{name}.gz" for name in mdata.MD5])


def test_broken_gz_is_named_and_leaves_no_partial_file(mnist, tmp_path):
    raw = write_gz(mnist, mdata.raw_dir(tmp_path))
    gz = raw / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-100])
    with pytest.raises(mdata.DataError, match="not a valid gzip file") as e:
        mdata.ensure(tmp_path, download=True)  # a broken .gz is reported, not downloaded over
    one_line(e, gz)
    assert not any(p.name.startswith(("train-labels", ".train-labels")) for p in raw.iterdir() if p != gz)


@pytest.mark.parametrize(
    ("point_at", "advice"),
    [
        ("data/MNIST", "use {tmp}/data instead"),
        ("data/MNIST/raw", "use {tmp}/data instead"),
        ("stuff", "move them"),
    ],
)
def test_root_too_deep_says_which_folder_and_creates_nothing(mnist, tmp_path, point_at, advice):
    nested = tmp_path / "data/MNIST/raw" if point_at != "stuff" else tmp_path / "stuff"
    copy_raw(mnist.root, nested)
    before = tree(tmp_path)
    for download in (False, True):
        with pytest.raises(mdata.DataError, match="but its files are in") as e:
            mdata.load(tmp_path / point_at, download=download)
        assert advice.format(tmp=tmp_path) in one_line(e, nested, tmp_path / point_at)
    assert tree(tmp_path) == before


def test_root_that_is_a_file_is_named(tmp_path):
    root = tmp_path / "data"
    root.write_text("not a folder")
    with pytest.raises(mdata.DataError, match="is a file, not a folder") as e:
        mdata.load(root, download=True)
    one_line(e, root)


def test_unreadable_file_is_named(mnist, tmp_path):
    skip_unless_chmod_blocks(tmp_path)
    raw = copy_raw(mnist.root, mdata.raw_dir(tmp_path))
    path = raw / "t10k-images-idx3-ubyte"
    path.chmod(0)
    try:
        for check in (True, False):
            with pytest.raises(mdata.DataError, match="permission denied") as e:
                mdata.load(tmp_path, download=False, check=check)
            assert "chmod" in one_line(e, path)
    finally:
        path.chmod(0o644)


def test_unreadable_folder_is_named(mnist, tmp_path):
    skip_unless_chmod_blocks(tmp_path)
    raw = copy_raw(mnist.root, mdata.raw_dir(tmp_path))
    raw.chmod(0)
    try:
        with pytest.raises(mdata.DataError, match="permission denied") as e:
            mdata.load(tmp_path, download=True)
        assert f"reading {raw};" in one_line(e)
    finally:
        raw.chmod(0o755)


def test_cli_prints_one_error_line(mnist, tmp_path, capsys):
    from mlpmnist import cli  # here, so the loader's other tests do not depend on the CLI's imports

    copy_raw(mnist.root, tmp_path / "MNIST/raw")
    assert cli.main(["train", "--epochs", "1", "--data", str(tmp_path / "MNIST"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: MNIST not found in {tmp_path}/MNIST/MNIST/raw") and err.count("\n") == 1
    assert f"use {tmp_path} instead" in err


def test_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(mdata.ENV_VAR, str(tmp_path))
    assert mdata.resolve_root() == tmp_path
    assert mdata.resolve_root("elsewhere") == Path("elsewhere")
    monkeypatch.delenv(mdata.ENV_VAR)
    assert mdata.resolve_root() == Path("data")


def test_splits_carry_their_exact_pixels(mnist):
    from mlpmnist.data import scale

    for split in (mnist.train, mnist.test, mnist.train.head(100), mnist.test.tail(7)):
        assert split.pixels is not None and split.pixels.dtype == torch.uint8
        assert torch.equal(scale(split.pixels), split.x)

"""The data stage on real files: MNIST checked, read bit for bit and every fault with it named in
one line; a synthetic dataset (``synthetic``) that is nothing like MNIST loaded by its spec; the
downloader against real local servers."""

import contextlib
import functools
import gzip
import http.server
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import (
    SYN_FILES,
    SYN_TEST,
    SYN_TRAIN,
    gz,
    idx_bytes,
    register,
    synthetic_arrays,
    synthetic_spec,
    write_raw,
)

from mlpmnist.data import download as mdownload
from mlpmnist.data import loader as mdata
from mlpmnist.data import specs as datasets

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


def copy_raw(src_root: Path, dst_raw: Path, names=tuple(datasets.MNIST.files)) -> Path:
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
        assert all(name in msg for name in datasets.MNIST.files) and mdata.ENV_VAR in msg
    assert tree(tmp_path) == []


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_offline_download_fails_in_one_line_and_leaves_nothing(tmp_path, dataset):
    root = tmp_path / "new" / "data"
    raw = mdata.raw_dir(root, dataset)
    try:
        mdata.load(root, dataset=dataset, download=True)
    except mdata.DataError as e:
        msg = str(e)
        assert "\n" not in msg and str(raw) in msg, msg
        assert "download failed" in msg and mdata.ENV_VAR in msg and len(msg) < 1000, msg
        assert f"put its four files, or their .gz, into {raw}" in msg, msg
        assert tree(tmp_path) == []  # the folders made for the download are gone again
    else:
        pytest.skip(f"this machine could download {dataset}, so the offline path was not exercised")


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
    for name in datasets.MNIST.files:
        blob = (mdata.raw_dir(mnist.root) / name).read_bytes()
        (raw / f"{name}.gz").write_bytes(gzip.compress(blob, compresslevel=1))
    return raw


def test_only_gz_files_are_extracted_and_identical(mnist, tmp_path):
    raw = write_gz(mnist, mdata.raw_dir(tmp_path))
    d = mdata.load(tmp_path, download=False)
    for a, b in ((d.train, mnist.train), (d.test, mnist.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    for name in datasets.MNIST.files:
        assert (raw / name).read_bytes() == (mdata.raw_dir(mnist.root) / name).read_bytes()
    # The published .gz stay; nothing else (no temporary file) is left behind.
    assert tree(tmp_path) == sorted(
        tree(mnist.root) + [f"MNIST/raw/{name}.gz" for name in datasets.MNIST.files]
    )


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


# ---------------------------------------------------------------------------- a synthetic dataset


@pytest.fixture
def syn(monkeypatch):
    """The synthetic arrays and their spec, registered as "synthetic-test" for this test only."""
    arrays = synthetic_arrays()
    return register(monkeypatch, synthetic_spec(arrays)), arrays


def test_synthetic_dataset_loads_by_name(syn, tmp_path):
    spec, arrays = syn
    write_raw(tmp_path, spec, arrays)
    d = mdata.load(tmp_path, dataset="synthetic-test", download=False)
    assert d.spec is spec and d.root == tmp_path.resolve()
    for split, (images, labels) in ((d.train, SYN_FILES[:2]), (d.test, SYN_FILES[2:])):
        want = torch.from_numpy(arrays[images]).reshape(len(arrays[images]), 120)
        assert split.x.shape == (len(want), 120) and split.x.dtype == torch.float32
        assert torch.equal(split.x, (want.to(torch.float32) - 127.5) / 127.5)
        assert split.x.min().item() == -1.0 and split.x.max().item() == 1.0
        assert split.y.dtype == torch.int64 and torch.equal(split.y, torch.from_numpy(arrays[labels]).long())
    assert len(d.train) == SYN_TRAIN and len(d.test) == SYN_TEST
    assert mdata.ensure(tmp_path, dataset=spec, download=False) == tmp_path.resolve()


def test_data_to_moves_both_splits_and_keeps_the_rest(syn, tmp_path):
    spec, arrays = syn
    write_raw(tmp_path, spec, arrays)
    d = mdata.load(tmp_path, dataset=spec, download=False)
    moved = d.to("cpu", torch.float64)
    assert moved.spec is spec and moved.root == d.root
    for a, b in ((moved.train, d.train), (moved.test, d.test)):
        assert a.x.dtype == torch.float64 and torch.equal(a.x, b.x.double())
        assert a.y.dtype == torch.int64 and torch.equal(a.y, b.y)
    assert d.train.x.dtype == torch.float32  # the original is untouched


@pytest.mark.parametrize("check", [True, False])
@pytest.mark.parametrize(
    ("name", "damage", "what"),
    [
        (
            "syn-test-labels",
            lambda b: b[:-7],
            "it is 101 bytes, expected 108 (8-byte header + 100 bytes): truncated",
        ),
        ("syn-train-images", lambda b: b + b"\0", "it is 36017 bytes, expected 36016"),
        (
            "syn-train-images",
            lambda b: b[:8] + (10).to_bytes(4, "big") + b[12:],
            "declares 300x10x10, expected 300x12x10",
        ),
        (
            "syn-test-images",
            lambda b: (2049).to_bytes(4, "big") + b[4:],
            "magic number is 2049, expected 2051",
        ),
        (
            "syn-train-labels",
            lambda b: b[:20] + bytes([7]) + b[21:],
            "it holds label 7, but Synthetic has 5 classes",
        ),
    ],
)
def test_synthetic_bad_file_is_named_in_one_line(syn, tmp_path, check, name, damage, what):
    spec, arrays = syn
    raw = write_raw(tmp_path, spec, arrays)
    (raw / name).write_bytes(damage((raw / name).read_bytes()))
    # The label case keeps its length and header: only the MD5, or the class count, can tell.
    what = "corrupt: its MD5" if check and "label 7" in what else what
    with pytest.raises(mdata.DataError, match=re.escape(what)) as e:
        mdata.load(tmp_path, dataset=spec, download=False, check=check)
    assert "Synthetic" in one_line(e, raw / name)


def test_registered_spec_does_not_outlive_its_test():
    # Runs after the tests above that register it (pytest keeps a file's order).
    assert "synthetic-test" not in datasets.names()
    with pytest.raises(ValueError, match="unknown dataset 'synthetic-test'"):
        mdata.load(dataset="synthetic-test")


def test_spec_without_md5s_still_checks_headers(tmp_path):
    arrays = synthetic_arrays()
    spec = synthetic_spec(arrays, files=dict.fromkeys(SYN_FILES), gz_md5={})
    raw = write_raw(tmp_path, spec, arrays)
    blob = bytearray((raw / "syn-test-images").read_bytes())
    blob[-1] ^= 0xFF  # no MD5 to catch it: loads
    (raw / "syn-test-images").write_bytes(bytes(blob))
    assert mdata.load(tmp_path, dataset=spec, download=False).test.x[-1, -1] == (blob[-1] - 127.5) / 127.5
    (raw / "syn-test-images").write_bytes(bytes(blob[:-1]))
    with pytest.raises(mdata.DataError, match="truncated"):
        mdata.ensure(tmp_path, dataset=spec, download=False)


def test_missing_synthetic_files_say_where_to_put_them(tmp_path):
    arrays = synthetic_arrays()
    spec = synthetic_spec(arrays, mirrors=("http://127.0.0.1:9/",))
    raw = write_raw(tmp_path, spec, {n: a for n, a in arrays.items() if "test" in n})
    with pytest.raises(mdata.DataError, match="Synthetic not found in") as e:
        mdata.load(tmp_path, dataset=spec, download=False)
    msg = one_line(e, raw)
    assert "missing syn-train-images, syn-train-labels)" in msg
    assert f"put its four files, or their .gz, into {raw}" in msg and mdata.ENV_VAR in msg
    assert msg.endswith("or load with download=True to download it")  # it has a mirror
    assert sorted(p.name for p in raw.iterdir()) == ["syn-test-images", "syn-test-labels"]


def test_spec_without_mirrors_says_where_to_put_its_files(tmp_path):
    spec = synthetic_spec(synthetic_arrays())
    with pytest.raises(mdata.DataError, match="has no download mirrors") as e:
        mdata.load(tmp_path, dataset=spec, download=True)
    assert "put its four files" in one_line(e, mdata.raw_dir(tmp_path, spec))
    assert tree(tmp_path) == []


@pytest.mark.parametrize(
    ("dataset", "title", "folder"),
    [("fashion-mnist", "Fashion-MNIST", "FashionMNIST"), ("kmnist", "KMNIST", "KMNIST")],
)
def test_missing_dataset_offline_says_where_to_put_its_files(tmp_path, dataset, title, folder):
    raw = tmp_path / folder / "raw"
    with pytest.raises(mdata.DataError, match=f"{title} not found in") as e:
        mdata.load(tmp_path, dataset=dataset, download=False)
    msg = one_line(e, raw)
    assert f"put its four files, or their .gz, into {raw}" in msg
    assert f"{mdata.ENV_VAR} to a folder holding {folder}/raw" in msg
    assert tree(tmp_path) == []


def test_root_pointing_into_another_dataset_names_it(tmp_path):
    (tmp_path / "data/MNIST/raw").mkdir(parents=True)
    for name in datasets.MNIST.files:  # where they are is all that counts here
        (tmp_path / "data/MNIST/raw" / name).write_bytes(b"")
    with pytest.raises(mdata.DataError, match="Fashion-MNIST not found in") as e:
        mdata.load(tmp_path / "data/MNIST", dataset="fashion-mnist", download=True)
    msg = one_line(e, tmp_path / "data/MNIST/raw")
    assert "but MNIST's files are in" in msg and f"use {tmp_path}/data instead" in msg
    assert tree(tmp_path / "data") == sorted(
        ["MNIST", "MNIST/raw", *(f"MNIST/raw/{n}" for n in datasets.MNIST.files)]
    )


# ---------------------------------------------------------------------------- the downloader


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files quietly and records each request's path (on ``server.requests``)."""

    def log_request(self, code="-", size="-"):
        self.server.requests.append(self.path)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def www(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www``: yields (folder, base URL, the
    paths it was asked for)."""
    folder = tmp_path / "www"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=folder))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/", server.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def publish(folder: Path, arrays: dict[str, np.ndarray], **replace: bytes) -> None:
    """Write each array's IDX file, gzipped, as ``folder/<name>.gz``; ``replace`` swaps in other bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (folder / f"{name}.gz").write_bytes(replace.get(name.replace("-", "_"), gz(idx_bytes(array))))


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers: yields (base URL,
    the connections it accepted)."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conns.append(sock.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/", conns
    finally:
        stop.set()
        thread.join()
        for c in conns:
            c.close()
        sock.close()


@pytest.fixture
def refused_url():
    """A base URL on 127.0.0.1 whose port is bound but not listening: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()


def assert_loaded(d: mdata.Data, arrays: dict[str, np.ndarray]) -> None:
    want = torch.from_numpy(arrays[SYN_FILES[0]]).reshape(SYN_TRAIN, 120)
    assert torch.equal(d.train.x, (want.to(torch.float32) - 127.5) / 127.5)
    assert torch.equal(d.test.y, torch.from_numpy(arrays[SYN_FILES[3]]).long())


def test_download_from_a_local_server(www, tmp_path):
    folder, url, requests = www
    arrays = synthetic_arrays()
    publish(folder / "pub", arrays)
    spec = synthetic_spec(arrays, mirrors=(f"{url}pub/",))
    root = tmp_path / "new" / "data"
    assert_loaded(mdata.load(root, dataset=spec), arrays)
    assert requests == [f"/pub/{n}.gz" for n in SYN_FILES]
    # Only the four raw files, no .gz and no temporary file; created with this process's usual mode.
    assert tree(tmp_path / "new") == ["data", "data/Synthetic", "data/Synthetic/raw"] + [
        f"data/Synthetic/raw/{n}" for n in sorted(SYN_FILES)
    ]
    (tmp_path / "probe").write_bytes(b"")
    assert (mdata.raw_dir(root, spec) / SYN_FILES[0]).stat().st_mode == (tmp_path / "probe").stat().st_mode
    assert_loaded(mdata.load(root, dataset=spec), arrays)  # present now: nothing asked again
    assert len(requests) == 4


def test_download_fetches_only_missing_files(www, tmp_path):
    folder, url, requests = www
    arrays = synthetic_arrays()
    publish(folder, arrays)
    spec = synthetic_spec(arrays, mirrors=(url,))
    write_raw(tmp_path, spec, {n: a for n, a in arrays.items() if "images" in n})
    assert_loaded(mdata.load(tmp_path, dataset=spec), arrays)
    assert requests == ["/syn-train-labels.gz", "/syn-test-labels.gz"]


def test_download_falls_through_a_mirror_that_404s(www, tmp_path):
    folder, url, requests = www
    arrays = synthetic_arrays()
    publish(folder / "good", arrays)
    spec = synthetic_spec(arrays, mirrors=(f"{url}gone/", f"{url}good/"))
    assert_loaded(mdata.load(tmp_path, dataset=spec), arrays)
    # A 404 says nothing about the mirror's other files: it is asked for each.
    assert requests == [p for n in SYN_FILES for p in (f"/gone/{n}.gz", f"/good/{n}.gz")]


BAD_LABELS = synthetic_arrays(seed=1)["syn-test-labels"]


@pytest.mark.parametrize(
    ("served", "md5s", "what"),
    [
        (gz(idx_bytes(BAD_LABELS)), "both", "syn-test-labels.gz's MD5 is"),
        (gz(idx_bytes(BAD_LABELS)), "raw only", "syn-test-labels from it is not valid: its MD5 is"),
        (b"<html>not gzip</html>", "none", "syn-test-labels.gz is not a valid gzip file"),
        (gz(idx_bytes(BAD_LABELS)[:-1]), "none", "syn-test-labels from it is not valid: it is 107 bytes"),
    ],
    ids=["gz-md5", "raw-md5", "not-gzip", "truncated"],
)
def test_bad_download_falls_through_or_fails_leaving_nothing(www, tmp_path, served, md5s, what):
    folder, url, requests = www
    arrays = synthetic_arrays()
    publish(folder / "bad", arrays, syn_test_labels=served)
    publish(folder / "good", arrays)
    kw = {
        "both": {},
        "raw only": {"gz_md5": {}},
        "none": {"gz_md5": {}, "files": dict.fromkeys(SYN_FILES)},
    }[md5s]
    # Another mirror serving a good copy is tried next.
    spec = synthetic_spec(arrays, mirrors=(f"{url}bad/", f"{url}good/"), **kw)
    assert_loaded(mdata.load(tmp_path / "ok", dataset=spec), arrays)
    assert requests[-2:] == ["/bad/syn-test-labels.gz", "/good/syn-test-labels.gz"]
    # With none, the three good files already fetched are removed again, and the folders made.
    root = tmp_path / "new" / "data"
    spec = synthetic_spec(arrays, mirrors=(f"{url}bad/",), **kw)
    with pytest.raises(mdata.DataError, match=re.escape(what)) as e:
        mdata.load(root, dataset=spec)
    msg = one_line(e, mdata.raw_dir(root, spec), f"{url}bad/")
    assert "Synthetic not found in" in msg and "download failed" in msg and mdata.ENV_VAR in msg
    assert not (tmp_path / "new").exists()


def test_server_that_never_answers_times_out_and_is_not_asked_again(
    silent_server, www, tmp_path, monkeypatch
):
    monkeypatch.setattr(mdownload, "DOWNLOAD_TIMEOUT_S", 0.5)
    silent, conns = silent_server
    folder, url, _ = www
    arrays = synthetic_arrays()
    publish(folder, arrays)
    spec = synthetic_spec(arrays, mirrors=(silent, url))
    t0 = time.monotonic()
    assert_loaded(mdata.load(tmp_path, dataset=spec), arrays)
    assert time.monotonic() - t0 < 10 and len(conns) == 1  # asked for the first file only
    # Alone, it fails in one line within seconds and leaves nothing.
    root = tmp_path / "new" / "data"
    t0 = time.monotonic()
    with pytest.raises(mdata.DataError, match="no answer within 0.5 s") as e:
        mdata.load(root, dataset=synthetic_spec(arrays, mirrors=(silent,)))
    assert time.monotonic() - t0 < 10
    assert "download failed (syn-train-images.gz: no answer" in one_line(e, silent)
    assert not (tmp_path / "new").exists()


def test_connection_refused_everywhere_is_one_line_and_leaves_nothing(refused_url, tmp_path):
    other = refused_url.replace("127.0.0.1", "localhost")
    spec = synthetic_spec(synthetic_arrays(), mirrors=(refused_url, other))
    root = tmp_path / "new" / "data"
    t0 = time.monotonic()
    with pytest.raises(mdata.DataError, match="download failed") as e:
        mdata.load(root, dataset=spec)
    assert time.monotonic() - t0 < 10
    msg = one_line(e, mdata.raw_dir(root, spec))
    # Both mirrors' identical cause, said once.
    assert f"connection refused at {refused_url} and {other}" in msg and msg.count("connection refused") == 1
    assert f"put its four files, or their .gz, into {mdata.raw_dir(root, spec)}" in msg
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("blocker", ["read-only folder", "file in the way"])
def test_unwritable_root_cannot_download_and_says_so(refused_url, tmp_path, blocker):
    spec = synthetic_spec(synthetic_arrays(), mirrors=(refused_url,))
    if blocker == "read-only folder":
        skip_unless_chmod_blocks(tmp_path)
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        root, why = tmp_path / "ro", "Permission denied"
    else:
        (tmp_path / "ro").write_text("a file where a folder should be")
        root, why = tmp_path / "ro" / "data", "Not a directory"
    try:
        with pytest.raises(mdata.DataError, match=f"cannot be created to download it \\({why}\\)") as e:
            mdata.load(root, dataset=spec)
        assert "put its four files" in one_line(e, mdata.raw_dir(root, spec))
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert tree(tmp_path) == ["ro"]

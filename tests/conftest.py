import os

import torch

# The fused Triton kernel's tests run it in Triton's interpreter, in this process, where there is
# no GPU (CI): triton reads TRITON_INTERPRET when it is first imported, so it is set here, before
# any test module can import it (torch does not). With a GPU the kernel is compiled and tested there.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import mlpmnist  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # CI sets MLPMNIST_DATA=../shared/data, read from the working folder; many tests start
    # commands in other folders (tmp_path, notebooks/), which must find the same data.
    if value := os.environ.get("MLPMNIST_DATA"):
        os.environ["MLPMNIST_DATA"] = os.path.abspath(value)


TIERS = ("unit", "integration", "system")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test's tier is its folder: `pytest -m unit` runs the seconds-long tier alone. The unit
    # tier reads no data files: a unit test that asks for MNIST stops the run.
    misplaced = []
    for item in items:
        tier = next((t for t in TIERS if f"/tests/{t}/" in str(item.path)), None)
        if tier:
            item.add_marker(tier)
        if tier == "unit" and "mnist" in getattr(item, "fixturenames", ()):
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(f"unit tests that read MNIST (move them to tests/integration): {misplaced}")


@pytest.fixture(autouse=True)
def _unit_starts_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # The unit tier starts no process (and so no kernel, papermill or CLI subprocess): every
    # way Python starts one goes through subprocess.Popen, or os.fork for multiprocessing.
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a unit test started a process; move it to tests/integration or tests/system")

    monkeypatch.setattr("subprocess.Popen.__init__", refuse)
    monkeypatch.setattr("os.fork", refuse)


@pytest.fixture(scope="session")
def mnist() -> mlpmnist.Data:
    """Real MNIST from $MLPMNIST_DATA (CI: ../shared/data), loaded once per session."""
    if not os.environ.get("MLPMNIST_DATA"):
        pytest.fail("set MLPMNIST_DATA to a directory holding MNIST/raw (CI: ../shared/data)")
    return mlpmnist.load(download=False)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two cores, and tests compare numbers, not speed: one intra-op thread keeps them steady.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

"""Dataset specs and their registry, and where the data root is read from: no data files."""

from pathlib import Path

import pytest
from synthetic import register, synthetic_arrays, synthetic_spec

from mlpmnist.data import loader as mdata
from mlpmnist.data import specs as datasets


def test_registry_refuses_clashes_and_bad_specs():
    arrays = synthetic_arrays()
    with pytest.raises(ValueError, match="already registered as 'mnist'"):
        datasets.register(synthetic_spec(arrays, name="mnist"))
    with pytest.raises(ValueError, match="already keeps its files in 'MNIST'"):
        datasets.register(synthetic_spec(arrays, folder="MNIST"))
    assert datasets.names()[:3] == ("mnist", "fashion-mnist", "kmnist")
    with pytest.raises(ValueError, match="needs four files"):
        synthetic_spec(arrays, files={"a": None})
    with pytest.raises(ValueError, match="ending in '/'"):
        synthetic_spec(arrays, mirrors=("http://example.org/data",))
    with pytest.raises(ValueError, match="2 to 256 classes"):
        synthetic_spec(arrays, classes=("only",))
    with pytest.raises(ValueError, match=r"image_shape must be \(height, width\)"):
        synthetic_spec(arrays, image_shape=(0, 10))
    assert datasets.MNIST.dims("t10k-images-idx3-ubyte") == (10_000, 28, 28)
    assert datasets.MNIST.dims("train-labels-idx1-ubyte") == (60_000,)


def test_a_spec_registered_in_a_test_is_known_by_name(monkeypatch):
    spec = register(monkeypatch, synthetic_spec(synthetic_arrays(), name="only-here"))
    assert datasets.get("only-here") is spec and datasets.folders()["Synthetic"] is spec
    assert mdata.spec_of("only-here") is spec and spec.n_features == 120 and spec.n_classes == 5


def test_a_spec_registered_in_a_test_is_gone_after_it():
    # Runs after the test above (pytest keeps a file's order): monkeypatch put the registry back.
    assert "only-here" not in datasets.names()
    with pytest.raises(ValueError, match="unknown dataset 'only-here'; known: mnist, fashion-mnist, kmnist"):
        datasets.get("only-here")


def test_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(mdata.ENV_VAR, str(tmp_path))
    assert mdata.resolve_root() == tmp_path
    assert mdata.resolve_root("elsewhere") == Path("elsewhere")
    monkeypatch.delenv(mdata.ENV_VAR)
    assert mdata.resolve_root() == Path("data")

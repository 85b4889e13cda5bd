"""TrainConfig is the one definition: every field is a CLI flag, a notebook parameter and a grid axis."""

import dataclasses

import numpy as np
import pytest

from mlpmnist.cli import build_parser
from mlpmnist.cli.args import config_from_args, parse_assignments
from mlpmnist.cli.commands import sweep_config_from_args
from mlpmnist.config import FIELDS, TrainConfig, choices, field_types, identity_fields
from mlpmnist.data.specs import MNIST
from mlpmnist.sweep import experiment
from mlpmnist.sweep.run import SweepConfig

DEFAULTS = TrainConfig()


def _candidates(name: str, default: object) -> list:
    """Values to try for a field, derived from its type and default only (nothing per field)."""
    kind = str(field_types()[name])
    if allowed := choices(name):
        return list(allowed)
    if kind == "<class 'bool'>":
        return [not default]
    if "tuple[int" in kind:
        return [(*default, 1), (1,)]
    if kind == "tuple[float, ...]":
        return [(*default, 0.5), (1.0,)]
    if "float" in kind:
        return [0.5, 1.5] if default is None else [default + 0.01, default / 2, 0.5]
    if "int" in kind:
        return [1 if default is None else default + 1, 1, 1000]
    return ["cpu", "float64"]


#: What a field may need from another: a validation target needs a validation split.
NEEDS = {"holdout": 1000}


def alternative(name: str):
    """A valid value of field ``name`` that differs from its default (beside ``needs(name)``)."""
    default = getattr(DEFAULTS, name)
    for v in _candidates(name, default):
        if v == default:
            continue
        try:
            TrainConfig(**{**needs(name), name: v})
        except ValueError:
            continue
        return v
    raise AssertionError(f"no alternative value found for {name}")


def needs(name: str) -> dict:
    """``NEEDS`` for the fields that need another field (a target, a validation split), else {}."""
    return NEEDS if name == "target" else {}


def as_words(v: object) -> list[str]:
    return [str(x) for x in v] if isinstance(v, tuple) else [str(v)]


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_field_is_a_flag_a_notebook_parameter_and_a_grid_axis(name):
    value = alternative(name)
    flag = "--" + name.replace("_", "-")
    parser = build_parser()
    # The CLI, for train and for a sweep's base.
    words = (
        ([flag] if value is True else [f"--no-{name.replace('_', '-')}"])
        if isinstance(value, bool)
        else [flag, *as_words(value)]
    )
    need = needs(name)
    for command in ("train", "sweep"):
        args = parser.parse_args([command, *words, *(w for k, v in need.items() for w in (f"--{k}", str(v)))])
        assert getattr(config_from_args(args), name) == value
    # The experiment notebook: on its own, and inside ``config``.
    assert getattr(experiment.from_parameters({**need, name: value}).configs[0], name) == value
    assert getattr(experiment.from_parameters({"config": {**need, name: value}}).configs[0], name) == value
    assert getattr(experiment.from_parameters({"configs": [{**need, name: value}]}).configs[0], name) == value
    # A sweep axis, from Python and from --grid text; a field that does not change what a run
    # computes (device, threads) would make two points one experiment, so it is refused as an axis.
    grid = {name: [getattr(DEFAULTS, name), value]}
    base = TrainConfig(**need)
    if name in identity_fields():
        exps = SweepConfig(base=base, grid=grid).experiments()
        assert [getattr(e, name) for e in exps] == [getattr(DEFAULTS, name), value]
    else:
        with pytest.raises(ValueError, match=f"grid axis {name} does not change what a run computes"):
            SweepConfig(base=base, grid=grid)
    text = " ".join(as_words(value)) if name == "snapshots" else str(value)
    text = "x".join(as_words(value)) if isinstance(value, tuple) and name != "snapshots" else text
    assert parse_assignments([f"{name}={text}"], "grid axis")[name] == [value]


def test_key_names_what_is_computed():
    base = TrainConfig(seeds=(0, 1))
    assert base.key() == TrainConfig(seeds=[0, 1]).key()
    assert base.key().startswith("bs0090-lr0.1-e15-s2-")
    # Where and how fast it runs does not change the key.
    assert dataclasses.replace(base, device="cpu", threads=1).key() == base.key()
    # Every field that changes the results changes the key.
    for name in identity_fields():
        with_needs = dataclasses.replace(base, **needs(name))
        changed = dataclasses.replace(with_needs, **{name: alternative(name)})
        assert changed.key() != with_needs.key(), name


def test_numpy_values_are_plain_numbers():
    c = TrainConfig(batch_size=np.int64(32), lr=np.float64(0.05), seeds=np.arange(3), hidden=[np.int32(8)])
    assert c.batch_size == 32 and type(c.batch_size) is int and c.seeds == (0, 1, 2) and c.hidden == (8,)
    assert (
        type(c.lr) is float
        and c.key() == TrainConfig(batch_size=32, lr=0.05, seeds=(0, 1, 2), hidden=(8,)).key()
    )


def test_bad_values_and_names_say_what_is_allowed():
    with pytest.raises(ValueError, match=r"^hidden must be a non-empty list of positive integers; got 64$"):
        TrainConfig(hidden=64)
    with pytest.raises(ValueError, match=r"^lr must be a finite number in \(0, 3.4e\+38\]"):
        TrainConfig(lr=1e308)
    with pytest.raises(
        TypeError,
        match=r"unknown TrainConfig field 'batchsize' \(did you mean 'batch_size'\?\); valid: batch_size,",
    ):
        TrainConfig(batchsize=32)
    with pytest.raises(ValueError, match=r"unknown TrainConfig field 'lrr'"):
        TrainConfig.from_mapping({"lrr": 0.1})
    with pytest.raises(ValueError, match=r"unknown grid axis 'batchsize'"):
        SweepConfig(grid={"batchsize": [8]})
    with pytest.raises(ValueError, match="seeds must be whole numbers, such as 0 1 2 or a range 0-9"):
        TrainConfig.from_mapping({"seeds": "zero"})


def test_text_values_parse_like_the_command_line():
    c = TrainConfig.from_mapping(
        {"seeds": "0-4", "hidden": "128x128", "train_limit": "none", "drop_last": "yes"}
    )
    assert c.seeds == (0, 1, 2, 3, 4) and c.hidden == (128, 128) and c.train_limit is None and c.drop_last
    args = build_parser().parse_args(["train", "--seeds", "0-2", "7", "--lr", "0.05"])
    assert config_from_args(args).seeds == (0, 1, 2, 7)


def test_sweep_grid_from_the_command_line():
    args = build_parser().parse_args(
        ["sweep", "--grid", "batch_size=8,16", "lr=0.03,0.1", "--seeds", "0-4", "--epochs", "2"]
    )
    cfg = sweep_config_from_args(args)
    exps = cfg.experiments()
    assert [(e.batch_size, e.lr) for e in exps] == [(8, 0.03), (8, 0.1), (16, 0.03), (16, 0.1)]
    assert all(e.seeds == (0, 1, 2, 3, 4) and e.epochs == 2 for e in exps)
    # --batch-sizes is shorthand for the batch-size axis; no grid is the reference study.
    short = sweep_config_from_args(build_parser().parse_args(["sweep", "--batch-sizes", "8", "16"]))
    assert short.grid == {"batch_size": (8, 16)}
    assert SweepConfig().grid == {"batch_size": (8, 16, 32, 48, 64, 90, 128, 150)}
    with pytest.raises(ValueError, match="not both"):
        sweep_config_from_args(
            build_parser().parse_args(["sweep", "--batch-sizes", "8", "--grid", "batch_size=16"])
        )


# Keys that stores written before 16-digit keys hold (computed with the code of commit d222abc):
# the store still finds a config's result under its legacy key (store.find), so they must never
# change, or every stored result would rerun.
STORED_KEYS = {
    (): "bs0090-lr0.1-e15-s10-cc249222",
    (("batch_size", 8),): "bs0008-lr0.1-e15-s10-95f877f5",
    (("batch_size", 128), ("lr", 0.05), ("seeds", (0, 1, 2))): "bs0128-lr0.05-e15-s3-ec21e80f",
    (
        ("momentum", 0.9),
        ("schedule", "cosine"),
        ("max_shift", 1),
        ("holdout", 5000),
        ("drop_last", True),
        ("epochs", 30),
        ("batch_size", 128),
        ("lr", 0.02),
        ("weight_decay", 5e-4),
        ("seeds", (0, 1, 2, 3, 4)),
    ): "bs0128-lr0.02-e30-s5-9c776072",
}


@pytest.mark.parametrize("fields", list(STORED_KEYS), ids=range(len(STORED_KEYS)))
def test_keys_of_existing_stores_never_change(fields):
    config = TrainConfig(**dict(fields))
    assert config.legacy_key() == STORED_KEYS[fields]
    # The new key: the same hash, 16 digits of it, after the readable part and its tags.
    readable, digest = STORED_KEYS[fields].rsplit("-", 1)
    assert config.key().startswith(readable + "-") and config.key()[-16:].startswith(digest)


BAD = [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": MNIST.train_size + 1}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"batch_size": 600, "train_limit": 500}, "batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"lr": 0.0}, "lr"),
    ({"lr": -0.1}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": float("inf")}, "lr"),
    ({"lr": "0.1"}, "lr"),
    ({"seeds": ()}, "seeds"),
    ({"seeds": (1, 1)}, "seeds"),
    ({"seeds": (-1,)}, "seeds"),
    ({"seeds": (0, 1), "lr": (0.1, 0.2, 0.3)}, "lr"),
    ({"device": "tpu"}, "device"),
    ({"engine": "turbo"}, "engine"),
    ({"threads": 0}, "threads"),
    ({"hidden": ()}, "hidden"),
    ({"momentum": 1.0}, "momentum"),
    ({"schedule": "step"}, "schedule"),
    ({"train_limit": 0}, "train_limit"),
    ({"holdout": -1}, "holdout"),
]


@pytest.mark.parametrize("kwargs,field", BAD, ids=[f"{k}" for k, _ in BAD])
def test_bad_input_names_field_value_and_range(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field} must be .*; got "):
        TrainConfig(**kwargs)


def test_field_types_drop_only_none_from_a_union():
    # A field of type X | Y | None reads as X | Y (its reader in values.READERS), not as X alone.
    @dataclasses.dataclass
    class Fields:
        limit: int | None = None
        lr: float | tuple[float, ...] | None = None
        seeds: tuple[int, ...] = ()

    assert field_types(Fields) == {"limit": int, "lr": float | tuple[float, ...], "seeds": tuple[int, ...]}

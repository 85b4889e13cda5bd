"""The command line's arguments: the parser with the package's one-line errors, one flag per
``TrainConfig`` field, ``NAME=V1,V2`` assignments and output paths checked before any work."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mlpmnist.config import FIELDS, TrainConfig, check_names, choices, field_types, parse_value
from mlpmnist.store import file_target, writable_folder

EXIT_BAD_INPUT, EXIT_FAILED = 2, 3


class Parser(argparse.ArgumentParser):
    """argparse with the package's one-line errors. argparse reports a command's unknown flags from
    the top parser: ``error`` finds that command, names its closest (shown) flags and its help."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)  # the command, for error()
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        actions = self._actions  # noqa: SLF001
        commands = next((a.choices for a in actions if isinstance(a, argparse._SubParsersAction)), {})  # noqa: SLF001
        command = next((w for w in getattr(self, "_argv", []) if w in commands), None)
        if message.startswith("unrecognized arguments") and command:
            known = [*actions, *commands[command]._actions]  # noqa: SLF001
            flags = [s for a in known if a.help != argparse.SUPPRESS for s in a.option_strings]
            words = [w for w in message.split(":", 1)[1].split() if w.startswith("--")]
            hints = [m[0] for w in words if (m := difflib.get_close_matches(w, flags, n=1))]
            message += f" (did you mean {', '.join(hints)}?)" if hints else ""
        prog = f"{self.prog} {command}" if command else self.prog
        self.exit(EXIT_BAD_INPUT, f"error: {message}; see '{prog} --help'\n")


def _shown(v: object) -> str:
    if isinstance(v, tuple):
        return " ".join(str(x) for x in v)
    return "none" if v is None else str(v)


def add_config_flags(p: argparse.ArgumentParser, hidden: Sequence[str] = ()) -> None:
    """One flag per ``TrainConfig`` field (``--batch-size``, ``--seeds 0-9``, ``--drop-last``, ...),
    unset when not given so the config's defaults apply; ``hidden`` ones are left out of the help."""
    g = p.add_argument_group("training configuration (TrainConfig)")
    defaults = TrainConfig()
    for name, f in FIELDS.items():
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        shown = f"{f.metadata['help']} (default: {_shown(getattr(defaults, name))})"
        kw["help"] = argparse.SUPPRESS if name in hidden else shown
        kind = field_types()[name]
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif allowed := choices(name):
            kw["choices"] = allowed
        else:
            kw["metavar"] = name.split("_")[-1].upper()
        if "tuple" in str(kind):
            kw["nargs"] = "+"
        g.add_argument("--" + name.replace("_", "-"), **kw)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of the config flags given on the command line (defaults elsewhere)."""
    given = {n: getattr(args, n) for n in FIELDS if hasattr(args, n)}
    given = {n: " ".join(v) if isinstance(v, list) else v for n, v in given.items()}
    return TrainConfig.from_mapping(given)


def parse_assignments(words: Sequence[str], what: str) -> dict[str, list]:
    """``["batch_size=8,16", "lr=0.03,0.1"]`` -> ``{"batch_size": [8, 16], "lr": [0.03, 0.1]}``;
    each value is read as its field's type (``hidden=64x64,128x128``, ``seeds=0-4,5-9``)."""
    out: dict[str, list] = {}
    for word in words:
        name, sep, values = word.partition("=")
        name = name.strip().replace("-", "_")
        parts = values.split(",")
        if not sep or not all(p.strip() for p in parts):
            raise ValueError(
                f"{what} {word!r} must look like NAME=V1,V2, a value between each comma (e.g. lr=0.03,0.1)"
            )
        check_names([name], what)
        if name in out:
            raise ValueError(f"{what} {name} is given twice")
        out[name] = [parse_value(name, v) for v in parts]
    return out


def check_out_path(out: Path) -> Path:
    """``out`` checked as a file to write before any work: not a folder nor anything else a rename
    would replace (a FIFO, a device), its folder writable. Returns where the file lands (a link to
    a file is written through); ``ValueError`` saying what to do."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file path such as {out / 'run.json'}")
    target = file_target(out, "--out")
    writable_folder(target.parent, "--out's folder")
    return target


def assignments(words: Sequence[str] | None, what: str) -> dict[str, Any]:
    """``NAME=V1,V2`` words as a selection (``store.load``'s ``where``): one value, or a list."""
    return {k: v if len(v) > 1 else v[0] for k, v in parse_assignments(words or [], what).items()}

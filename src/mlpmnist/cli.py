"""Command line: ``python -m mlpmnist {train,sweep,figures} ...``.

The flags that say what a run computes are generated from ``TrainConfig``'s fields (help text and
defaults included), so a new field is a new flag with no edit here. Every expected fault ends with
one line on stderr, ``error: <what>, <where>; <what to do>``, and exit status 2 (bad input or
paths, found before any work), 3 (failed, diverged or collapsed experiments: a fault while one
runs, such as a full disk or a hung kernel, fails that experiment; lost Dask workers) or 128 + the
signal's number when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP: each ends like Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mlpmnist.config import FIELDS, TrainConfig, check_names, choices, field_types, parse_value
from mlpmnist.data import loader as mdata
from mlpmnist.errors import DataError, StoreError, SweepError, printable
from mlpmnist.store import file_target, writable_folder

EXIT_BAD_INPUT, EXIT_FAILED = 2, 3
#: The figures command's model batch size when the selection has it (run.ipynb's default).
DEFAULT_MODEL_BATCH = 90


class Parser(argparse.ArgumentParser):
    """argparse with the package's one-line error format, suggestions for unknown flags from the
    chosen command's own flags, and plain-text help (docstrings' ``literal`` markup dropped)."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)  # the command, for error()
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):
            message += _did_you_mean(self, message, getattr(self, "_argv", []))
        self.exit(EXIT_BAD_INPUT, f"error: {message}; see '{self.prog} --help'\n")

    def format_help(self) -> str:
        return re.sub(r"``(.+?)``", r"'\1'", super().format_help())


def _did_you_mean(parser: argparse.ArgumentParser, message: str, argv: Sequence[str] = ()) -> str:
    """The closest flag to each unknown one in argparse's ``message``, among the flags of the
    command named in ``argv`` (sweep's for ``sweep --batchsizes``; all flags when none is)."""
    import difflib

    known = [s for a in parser._actions for s in a.option_strings]  # noqa: SLF001
    commands = {}
    for a in parser._actions:  # noqa: SLF001
        if isinstance(a, argparse._SubParsersAction):  # noqa: SLF001
            commands = {
                n: [s for b in sub._actions for s in b.option_strings] for n, sub in a.choices.items()
            }  # noqa: SLF001
    chosen = next((w for w in argv if w in commands), None)
    known += commands[chosen] if chosen else [s for flags in commands.values() for s in flags]
    words = [w for w in message.split(":", 1)[1].split() if w.startswith("--")]
    hints = [m[0] for w in words if (m := difflib.get_close_matches(w, known, n=1))]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def _shown(v: object) -> str:
    if isinstance(v, tuple):
        return " ".join(str(x) for x in v)
    return "none" if v is None else str(v)


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field (``--batch-size``, ``--seeds 0-9``, ``--drop-last``, ...).

    Flags not given stay unset, so the config's own defaults apply (see ``config_from_args``).
    """
    g = p.add_argument_group("training configuration (TrainConfig)")
    defaults = TrainConfig()
    for name, f in FIELDS.items():
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        kw["help"] = f"{f.metadata['help']} (default: {_shown(getattr(defaults, name))})"
        kind = field_types()[name]
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["metavar"] = name.split("_")[-1].upper()
            if "tuple" in str(kind):
                kw["nargs"] = "+"
        if allowed := choices(name):
            kw["choices"] = allowed
            kw.pop("metavar", None)
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
        if not sep or not values:
            raise ValueError(f"{what} {word!r} must look like NAME=V1,V2 (e.g. batch_size=8,16,32)")
        check_names([name], what)
        if name in out:
            raise ValueError(f"{what} {name} is given twice")
        parts = values.split(",")
        if not all(p.strip() for p in parts):
            raise ValueError(
                f"{what} {word!r} has an empty value; give NAME=V1,V2 with a value between each comma "
                "(e.g. lr=0.03,0.1)"
            )
        out[name] = [parse_value(name, v) for v in parts]
    return out


def check_out_path(out: Path) -> Path:
    """``out`` as a file to write, checked before any work: not a folder, nothing that is not a
    regular file (a FIFO, a device, a link to one: a rename would replace it), its folder
    creatable and writable. Returns where the file lands (a link to a file is written through);
    raises ``ValueError`` saying what to do."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file path such as {out / 'run.json'}")
    target = file_target(out, "--out")
    writable_folder(target.parent, "--out's folder")
    return target


# ---------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from mlpmnist import store
    from mlpmnist.analysis import stats, tables
    from mlpmnist.training.loop import train

    config = config_from_args(args)
    with contextlib.ExitStack() as stack:
        room = None
        if args.out:
            # The record's room is taken now: a disk that fills while it trains cannot lose it.
            room = stack.enter_context(
                store.Reservation(check_out_path(args.out), store.output_bytes(config)["record"], "--out")
            )
        data = mdata.load(args.data, dataset=config.dataset)
        result = train(config, data, progress=not args.no_progress)
        record = store.make_record(result)
        per = stats.per_epoch(store.frame([record]))
        if per.empty:  # every replica diverged before its first epoch ended: the error says where
            print("no finished epoch: every replica diverged before the end of epoch 1")
        else:
            print(tables.per_epoch_table(per).to_string())
        print(f"total {result.seconds:.1f} s on {result.device}; key {record['key']}")
        if room is not None:
            try:
                print(f"wrote {room.write(store.record_text(record).encode())}")
            except OSError as e:
                print(
                    f"error: cannot write --out {e.filename} ({e.strerror or e}); the record is lost, "
                    "only the table above is kept: free some space and rerun",
                    file=sys.stderr,
                )
                return EXIT_FAILED
    if record["note"]:  # seeds that diverged or collapsed
        print(f"error: {printable(record['note'])}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def sweep_config_from_args(args: argparse.Namespace) -> Any:
    """The ``SweepConfig`` of the sweep command's flags. A config flag that a grid axis
    overrides (``--batch-size`` beside the default batch-size axis, ``--lr`` beside
    ``--grid lr=...``) is refused with the flag it probably meant, never silently ignored."""
    from mlpmnist.sweep.run import SweepConfig

    grid = parse_assignments(args.grid or [], "grid axis")
    if args.batch_sizes:
        if "batch_size" in grid:
            raise ValueError("give the batch sizes once: --batch-sizes or --grid batch_size=..., not both")
        grid = {"batch_size": [parse_value("batch_size", v) for v in args.batch_sizes], **grid}
    axes = set(grid) or {"batch_size"}  # the default grid is the reference's batch sizes
    for name in (n for n in FIELDS if hasattr(args, n) and n in axes):
        value = getattr(args, name)
        shown = " ".join(value) if isinstance(value, list) else str(value)
        flag = "--" + name.replace("_", "-")
        if name == "batch_size" and not args.grid:
            instead = f"--batch-sizes {shown}"
            why = "the batch sizes are the sweep's grid axis" + (
                "" if args.batch_sizes else " (default: the reference's 8 16 32 48 64 90 128 150)"
            )
        else:  # a list field's value is one grid value: spelled NAME=0-4, not NAME=0,4
            instead = f"--grid {name}=" + ("..." if isinstance(value, list) else shown)
            why = f"{name} is a grid axis (--grid {name}=...)"
        raise ValueError(f"{flag} {shown} is not used by sweep: {why}; did you mean {instead}?")
    config = SweepConfig(
        base=config_from_args(args),
        results_dir=args.results,
        data_dir=args.data,
        workers=args.workers,
        scheduler=args.scheduler,
        worker_timeout=args.worker_timeout,
        concurrency=args.concurrency,
        connect_timeout=args.connect_timeout,
        lock_timeout=args.lock_timeout,
        stall_timeout=args.stall_timeout,
    )
    return dataclasses.replace(config, grid=grid) if grid else config


def cmd_sweep(args: argparse.Namespace) -> int:
    import logging

    from mlpmnist import store
    from mlpmnist.sweep.run import run_sweep

    if args.scheduler:
        import distributed  # noqa: F401  (creates its loggers)

        # Dask's client logs a lost scheduler with a traceback; the sweep ends with one line instead.
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)

    outcome = run_sweep(sweep_config_from_args(args), progress=not args.no_progress)
    print(outcome.table.drop(columns=["key"]).to_string(index=False))
    print(f"sweep: {outcome.seconds:.0f} s; results in {outcome.results_dir}")
    for key, err in outcome.failed.items():
        # Point at what exists: a results folder deleted mid-run, or a full disk, leaves neither.
        paths = [outcome.results_dir / kind / f"{key}{store.KINDS[kind]}" for kind in ("notebooks", "logs")]
        seen = [p for p in paths if p.is_file() and store.outside(outcome.results_dir, p) is None]
        see = f"; see {seen[0]}" if seen else ""
        print(f"error: experiment {key} failed: {printable(err)}{see}", file=sys.stderr)
    for key, seeds in outcome.failed_seeds.items():
        # The record's own words: which seeds, what happened, what to do (never learned or fell).
        note = store.trusted(outcome.results_dir, key).record.get("note")
        said = note or f"seed(s) {seeds} diverged or ended at chance level"
        print(f"error: experiment {key}: {printable(said)}", file=sys.stderr)
    return EXIT_FAILED if outcome.failed or outcome.failed_seeds else 0


def _model_experiment(df: Any, wanted: int | None, results_dir: Path) -> tuple[str, int]:
    """The key and batch size of the one experiment in ``df`` whose models the model figures
    show: at ``wanted`` (default: 90 when ``df`` has it, else its only batch size).
    ``ValueError`` saying what to choose when there is none or more than one."""
    sizes = sorted(int(b) for b in df["batch_size"].unique())
    batch = wanted if wanted is not None else (DEFAULT_MODEL_BATCH if DEFAULT_MODEL_BATCH in sizes else None)
    if batch is None and len(sizes) == 1:
        batch = sizes[0]
    if batch is None:
        raise ValueError(
            f"--model-batch-size: the selection in {results_dir} has no batch {DEFAULT_MODEL_BATCH} and "
            f"several batch sizes ({', '.join(map(str, sizes))}); choose one with --model-batch-size"
        )
    keys = sorted(df.loc[df["batch_size"] == batch, "key"].unique())
    if len(keys) != 1:
        found = f"{len(keys)} experiments ({', '.join(keys)})" if keys else "no experiment"
        there = f"; batch sizes there: {', '.join(map(str, sizes))}" if not keys else ""
        raise ValueError(
            f"--model-batch-size {batch}: {found} in {results_dir} at that batch size{there}; "
            "choose another or narrow with --where NAME=VALUE"
        )
    return keys[0], batch


def cmd_figures(args: argparse.Namespace) -> int:
    from mlpmnist import store
    from mlpmnist.analysis.columns import config_label, dataset_names, varying_axes
    from mlpmnist.figures import compose as figures
    from mlpmnist.figures import embed

    check_backend()
    # Everything is read and checked before anything is written: the records, the model
    # experiment and its weights, the data, the media folder; then every figure is drawn, then saved.
    where = {
        k: v if len(v) > 1 else v[0] for k, v in parse_assignments(args.where or [], "selection").items()
    }
    df = store.load(args.results, where=where)
    key, batch = _model_experiment(df, args.model_batch_size, args.results)
    chosen = store.trusted(args.results, key)
    models = chosen.models()
    rows = df[df["key"] == key]
    label = config_label(rows.iloc[0], ["batch_size", *(c for c in varying_axes(df) if c != "batch_size")])
    data = mdata.load(args.data, dataset=dataset_names(rows).iloc[0])
    media = writable_folder(args.media if args.media is not None else args.results / "media", "--media")
    figs = figures.study_figures(df) | figures.data_figures(data)
    figs |= figures.model_figures(models, data, label)
    if args.tsne:
        emb = embed.tsne_epochs(data, config=chosen.config, progress=True)
        figs |= figures.tsne_figures(emb, label)
    for p in figures.save_figures(figs, media, args.format):
        print(p)
    return 0


def check_backend() -> None:
    """``ValueError`` naming ``MPLBACKEND`` and what it may be when it names no matplotlib
    backend (matplotlib's own error would not say where the name came from)."""
    name = os.environ.get("MPLBACKEND")
    if not name:
        return
    from matplotlib import rcsetup

    try:
        rcsetup.validate_backend(name)
    except ValueError:
        raise ValueError(
            f"MPLBACKEND={printable(name)!r} is not a matplotlib backend; unset it, or set it to agg "
            "(figures to files only) or another backend matplotlib knows"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="mlpmnist", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, parser_class=Parser)
    data_help = f"MNIST root (default ${mdata.ENV_VAR} or ./data)"

    t = sub.add_parser("train", help="train one configuration, all seeds in lockstep")
    add_config_flags(t)
    t.add_argument("--out", type=Path, default=None, help="write the JSON run record here")
    t.add_argument("--data", default=None, help=data_help)
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sweep", help="one papermill experiment notebook per grid point")
    add_config_flags(s)
    s.add_argument(
        "--grid",
        nargs="+",
        metavar="NAME=V1,V2",
        help="sweep axes over any TrainConfig field, e.g. batch_size=8,16,32 lr=0.03,0.1 "
        "(default: the reference batch sizes 8 16 32 48 64 90 128 150)",
    )
    s.add_argument("--batch-sizes", nargs="+", metavar="B", help="shorthand for --grid batch_size=...")
    s.add_argument(
        "--workers",
        type=int,
        default=None,
        help="jobs at once, each one kernel (default: 2 on a CPU, one per GPU; Dask: one per worker thread)",
    )
    s.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="groups a job trains at once (default: 1 on a CPU, 16 on a GPU)",
    )
    s.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://HOST:8786")
    s.add_argument(
        "--worker-timeout",
        type=float,
        default=60.0,
        help="Dask: give up after this many seconds without workers",
    )
    s.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="Dask: seconds to reach the scheduler (default 10)",
    )
    s.add_argument(
        "--lock-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for an experiment that another sweep is running (default 600)",
    )
    s.add_argument(
        "--stall-timeout",
        type=float,
        default=300.0,
        help="seconds without a heartbeat after which a kernel counts as hung and is killed (default 300; "
        "at least 120 while it starts)",
    )
    s.add_argument("--results", type=Path, default=Path("results"), help="results folder (default results)")
    s.add_argument("--data", default=None, help=data_help)
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sweep)

    from mlpmnist.figures import FORMATS
    from mlpmnist.figures.embed import SNAPSHOT_EPOCHS

    f = sub.add_parser("figures", help="draw every figure of the study from a results folder")
    f.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="results folder to read (default: results)",
    )
    f.add_argument(
        "--media",
        type=Path,
        default=None,
        help="folder to write the figures into (default: RESULTS/media)",
    )
    f.add_argument(
        "--format",
        choices=FORMATS,
        default=FORMATS[0],
        help=f"file format of the figures: {', '.join(FORMATS)} (default: {FORMATS[0]})",
    )
    f.add_argument("--where", nargs="+", metavar="NAME=V1,V2", help="only these experiments, e.g. lr=0.1")
    f.add_argument(
        "--model-batch-size",
        type=int,
        default=None,
        metavar="B",
        help=f"whose models the model figures show (default: {DEFAULT_MODEL_BATCH} when the selection has "
        "it, else its only batch size)",
    )
    f.add_argument("--data", default=None, help=data_help)
    f.add_argument(
        "--tsne",
        action="store_true",
        help=f"also retrain that experiment's first seed for {max(SNAPSHOT_EPOCHS)} epochs and draw t-SNE",
    )
    f.set_defaults(func=cmd_figures)
    return ap


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt, so each
    ends the same way: jobs stopped, kernels killed, scratch folders removed, one line."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    # Once: a second signal must not cut short the cleanup the first one started.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)


def interrupted_message(args: argparse.Namespace, signum: int) -> str:
    """What an interrupt of ``args.command`` leaves, in words: only what is true for it."""
    how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    left = {
        "sweep": "finished experiments are kept, rerun to resume",
        "train": f"--out {args.out} was not written" if getattr(args, "out", None) else "nothing was kept",
        "figures": "rerun to draw every figure",
    }[args.command]
    return f"interrupted by {how}; {left}"


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (128 + the signal's number when interrupted)."""

    args = build_parser().parse_args(argv)
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    main_thread = threading.current_thread() is threading.main_thread()  # else handlers cannot be set
    before = {sig: signal.signal(sig, _on_signal) for sig in signals} if main_thread else {}
    stdout, sys.stdout = sys.stdout, PipeSafe(sys.stdout)
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        print(f"error: {interrupted_message(args, signum)}", file=sys.stderr)
        return 128 + signum
    except SweepError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, DataError, StoreError, MemoryError) as e:
        print(f"error: {printable(e) or 'out of memory'}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = "free some space or choose another path" if full else "check the path and its permissions"
        print(f"error: {printable(f'{e.strerror or e}{where}')}; {fix}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        sys.stdout = stdout
        for sig, handler in before.items():
            signal.signal(sig, handler)


class PipeSafe:
    """``sys.stdout`` for a command: when its reader goes away (``mlpmnist train | head -1``),
    the printing stops and the work goes on: the rest of the output is dropped (the process's
    stdout then points at /dev/null, so nothing fails at exit either) instead of a
    ``BrokenPipeError`` ending the command."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.closed_pipe = stream, False

    def _broken(self) -> None:
        self.closed_pipe = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = self.stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._broken()
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._broken()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's
        return getattr(self.stream, name)


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m mlpmnist {train,sweep,figures,summary} ...``.

The flags that say what a run computes are generated from ``TrainConfig``'s fields. Every expected
fault ends with one line on stderr, ``error: <what>, <where>; <what to do>``, and an exit status
that ``EPILOG`` lists (128 + the signal's number when interrupted)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from mlpmnist import paths
from mlpmnist.cli.args import EXIT_BAD_INPUT, EXIT_FAILED, Parser, add_config_flags
from mlpmnist.cli.commands import cmd_figures, cmd_summary, cmd_sweep, cmd_train
from mlpmnist.data import loader as mdata
from mlpmnist.errors import DataError, SweepError, printable

DESCRIPTION = """How batch size and epochs change what a small MLP learns on MNIST: train one
configuration, sweep a grid of them into a results folder (resumable), draw the study's figures
and print its summary from that folder."""
EPILOG = """Each command's own help lists its flags: mlpmnist train --help. The flags that say
what a run computes are TrainConfig's fields, the same for train and sweep. Exit status: 0 done;
2 bad input, found before any work; 3 an experiment failed (could not be trained or stored) or is
done with failed seeds (diverged or collapsed to chance); 130, 143, 129 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    from mlpmnist.figures import FORMATS

    ap = Parser(
        prog="mlpmnist",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=f"mlpmnist {paths.package_version()}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    def command(name: str, about: str, func: Any) -> Any:
        """The subcommand ``name``, with those of the flags below that it shares with others."""
        p = sub.add_parser(name, help=about)
        p.set_defaults(func=func)
        if name != "train":
            p.add_argument(
                "--results", type=Path, default=Path("results"), help="results folder (default: results)"
            )
        if name in ("figures", "summary"):
            p.add_argument(
                "--where", nargs="+", metavar="NAME=V1,V2", help="only these experiments, e.g. lr=0.1"
            )
        if name != "summary":
            p.add_argument("--data", help=f"MNIST root (default ${mdata.ENV_VAR} or ./data)")
        if name in ("train", "sweep"):
            p.add_argument("--no-progress", action="store_true", help="no progress bar")
        return p

    t = command(
        "train",
        "train one configuration, all seeds in lockstep; --results stores it where a sweep finds it",
        cmd_train,
    )
    add_config_flags(t)
    t.add_argument("--out", type=Path, default=None, help="write the JSON run record here")
    t.add_argument(
        "--results",
        type=Path,
        help="store it in this results folder as a sweep does (resumable; a sweep skips it)",
    )

    s = command(
        "sweep",
        "train every point of a grid into a results folder, skipping what is done and resuming "
        "what was interrupted (jobs of papermill experiment notebooks)",
        cmd_sweep,
    )
    add_config_flags(s, hidden=("batch_size",))
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
        help="jobs at once, each one kernel (default: 2 on a CPU, 1 per GPU; Dask: 1 per worker thread)",
    )
    s.add_argument(
        "--concurrency", type=int, help="groups a job trains at once (default: 1 on a CPU, 16 on a GPU)"
    )
    s.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://HOST:8786")
    timeouts = {
        "worker": (60.0, "Dask: seconds without workers before giving up"),
        "connect": (10.0, "Dask: seconds to reach the scheduler"),
        "lock": (600.0, "seconds to wait for an experiment that another sweep is running"),
        "stall": (300.0, "seconds with no heartbeat before a kernel is killed as hung (>= 120 at start)"),
    }
    for name, (default, about) in timeouts.items():
        s.add_argument(
            f"--{name}-timeout", type=float, default=default, help=f"{about} (default {default:g})"
        )

    f = command("figures", "draw every figure of the study from a results folder", cmd_figures)
    f.add_argument("--media", type=Path, help="folder to write the figures into (default: RESULTS/media)")
    f.add_argument("--format", choices=FORMATS, default=FORMATS[0], help="file format (default: png)")
    f.add_argument(
        "--model-batch-size", type=int, metavar="B", help="model figures: the best median at this batch size"
    )
    f.add_argument(
        "--model-where",
        nargs="+",
        metavar="NAME=VALUE",
        help="model figures: the best median among these, e.g. lr=0.1",
    )
    f.add_argument(
        "--tsne",
        action="store_true",
        help="also t-SNE of that experiment's first seed at epochs 0, 1, a third, two thirds and the last "
        "(a one-seed experiment stored in the results folder, trained when it is not there yet)",
    )

    m = command(
        "summary",
        "print or export the summary table of a results folder, or compare two selections",
        cmd_summary,
    )
    m.add_argument(
        "--format",
        choices=("text", "csv", "markdown", "json"),
        default="text",
        help="text (table and conclusions; default), csv (fractions in full), markdown (README's) or json",
    )
    m.add_argument("--out", type=Path, help="write to this file instead of printing")
    m.add_argument(
        "--a",
        nargs="+",
        metavar="NAME=VALUE",
        help="compare this configuration (within --where) with --b's: medians, Mann-Whitney, failed seeds",
    )
    m.add_argument("--b", nargs="+", metavar="NAME=VALUE", help="the other configuration; see --a")
    return ap


def interrupted_message(args: argparse.Namespace, signum: int) -> str:
    """What an interrupt of ``args.command`` leaves, in words: only what is true for it."""
    how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    train = f"--out {args.out} was not written" if getattr(args, "out", None) else "nothing was kept"
    if getattr(args, "results", None) and args.command == "train":
        train = f"its last finished epoch is kept in {args.results}: rerun to resume from there"
    left = {
        "sweep": "finished experiments are kept, and unfinished ones resume from their last finished epoch: "
        "rerun to resume",
        "train": train,
        "figures": "rerun to draw every figure",
        "summary": "nothing was written",
    }[args.command]
    return f"interrupted by {how}; {left}"


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (128 + the signal's number when interrupted)."""
    args = build_parser().parse_args(argv)
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        # SIGTERM and SIGHUP end like Ctrl-C: jobs stopped, kernels killed, scratch folders removed,
        # one line. Once: a second signal must not cut short the cleanup the first one started.
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        received.append(signum)
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()  # else handlers cannot be set
    before = {sig: signal.signal(sig, on_signal) for sig in signals} if main_thread else {}
    stdout, sys.stdout = sys.stdout, PipeSafe(sys.stdout)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        signum = received[0] if received else signal.SIGINT
        print(f"error: {interrupted_message(args, signum)}", file=sys.stderr)
        return 128 + signum
    except SweepError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, DataError, MemoryError) as e:  # a StoreError is a ValueError
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
    """``sys.stdout`` for a command: once its reader has gone (``mlpmnist train | head -1``), the
    work goes on and the rest of the output is dropped (stdout then points at /dev/null, so nothing
    fails at exit either) instead of a ``BrokenPipeError`` ending the command."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.closed_pipe = False

    def _unless_closed(self, method: str, *args: Any) -> None:
        """``stream.method(*args)``, until the stream's reader has gone."""
        if self.closed_pipe:
            return
        try:
            getattr(self.stream, method)(*args)
        except BrokenPipeError:
            self.closed_pipe = True
            with contextlib.suppress(OSError, ValueError, AttributeError):
                fd = self.stream.fileno()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)

    def write(self, text: str) -> int:
        self._unless_closed("write", text)
        return len(text)

    def flush(self) -> None:
        self._unless_closed("flush")

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's
        return getattr(self.stream, name)


if __name__ == "__main__":
    sys.exit(main())

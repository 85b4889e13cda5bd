"""Command line: ``python -m mlpmnist {train,sweep,figures} ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import data as mdata
from .results import frame, make_record, per_epoch_table, write_record
from .train import TrainConfig, train


def _add_train_args(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--lr", type=float, default=d.lr, help="SGD learning rate (default %(default)s)")
    p.add_argument("--hidden", type=int, nargs="+", default=list(d.hidden))
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--engine", choices=["fast", "reference"], default=d.engine)
    p.add_argument("--device", default=d.device, help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads per run")
    p.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--data", default=None, help=f"MNIST root (default ${mdata.ENV_VAR} or ./data)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def cmd_train(args: argparse.Namespace) -> int:
    config = TrainConfig(
        batch_size=args.batch_size,
        epochs=args.epochs,
        seeds=tuple(args.seeds),
        lr=args.lr,
        hidden=tuple(args.hidden),
        momentum=args.momentum,
        engine=args.engine,
        device=args.device,
        threads=args.threads,
        train_limit=args.train_limit,
    )
    result = train(config, mdata.load(args.data), progress=not args.no_progress)
    record = make_record(result)
    print(per_epoch_table(frame([record])).to_string())
    print(f"total {result.seconds:.1f} s on {result.device}")
    if args.out:
        print(f"wrote {write_record(record, args.out)}")
    if record["error"]:
        print(f"error: {record['error']}", file=sys.stderr)
        return 3
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import SweepConfig, run_sweep

    config = SweepConfig(
        batch_sizes=tuple(args.batch_sizes),
        epochs=args.epochs,
        seeds=tuple(args.seeds),
        lr=args.lr,
        hidden=tuple(args.hidden),
        momentum=args.momentum,
        engine=args.engine,
        device=args.device,
        threads=args.threads,
        train_limit=args.train_limit,
        data_dir=args.data,
        results_dir=args.results,
        workers=args.workers,
        scheduler=args.scheduler,
    )
    outcome = run_sweep(config, progress=not args.no_progress)
    print(outcome.table.to_string(index=False))
    if outcome.failed:
        for bs, err in outcome.failed.items():
            print(f"error: batch {bs} failed: {err}", file=sys.stderr)
        return 3
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from .embed import save_tsne
    from .plots import save_all
    from .results import load

    data = mdata.load(args.data)
    paths = save_all(load(args.results), args.media, data=data, results_dir=args.results)
    if args.tsne:
        paths.append(save_tsne(args.media, data_dir=args.data))
    for p in paths:
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mlpmnist", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one batch size over several seeds")
    t.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    _add_train_args(t)
    t.add_argument("--out", type=Path, default=None, help="write the JSON run record here")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sweep", help="one papermill experiment notebook per batch size")
    s.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 48, 64, 90, 128, 150])
    _add_train_args(s)
    s.add_argument("--workers", type=int, default=2, help="parallel experiments (local processes)")
    s.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://HOST:8786")
    s.add_argument("--results", type=Path, default=Path("results"))
    s.set_defaults(func=cmd_sweep)

    f = sub.add_parser("figures", help="draw every figure from a results directory into media/")
    f.add_argument("--results", type=Path, default=Path("results"))
    f.add_argument("--media", type=Path, default=Path("media"))
    f.add_argument("--data", default=None, help=f"MNIST root (default ${mdata.ENV_VAR} or ./data)")
    f.add_argument("--tsne", action="store_true", help="also train batch 90 for 50 epochs and draw t-SNE")
    f.set_defaults(func=cmd_figures)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, mdata.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

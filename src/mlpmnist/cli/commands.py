"""The commands, each ``cmd_<name>(args) -> exit status``. Every check that can be made is made
before any work; faults are raised for ``cli.main`` to end in one line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from mlpmnist import store
from mlpmnist.cli.args import EXIT_FAILED, assignments, check_out_path, config_from_args, parse_assignments
from mlpmnist.config import FIELDS, TrainConfig, parse_value
from mlpmnist.data import loader as mdata
from mlpmnist.errors import StoreError, printable
from mlpmnist.store.locks import tidy
from mlpmnist.store.trust import matches


def cmd_train(args: argparse.Namespace) -> int:
    from mlpmnist.analysis import stats, tables

    config = config_from_args(args)
    with contextlib.ExitStack() as stack:
        room = None
        if args.out:
            # The record's room is taken now: a disk that fills while it trains cannot lose it.
            room = stack.enter_context(
                store.Reservation(check_out_path(args.out), store.output_bytes(config)["record"], "--out")
            )
        data = mdata.load(args.data, dataset=config.dataset)  # checked before a results folder is made
        root = _claim(stack, args.results, config) if args.results else None
        found = store.find(root, config)[0] if root is not None else None
        if found is not None:
            record = found.record
            print(f"experiment {config.key()} is already stored in {root}: nothing to train")
        else:
            record = _train(args, config, data, root)
        per = stats.per_epoch(store.frame([record]))
        if per.empty:  # every replica diverged before its first epoch ended: the note says where
            print("no finished epoch: every replica diverged before the end of epoch 1")
        else:
            print(tables.per_epoch_table(per).to_string())
        print(f"total {record['seconds']:.1f} s on {record['device']}; key {record['key']}")
        if root is not None and found is None:
            print(f"wrote {store.path(root, 'runs', config.key())} and its weights")
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
    if record["note"]:  # seeds that diverged or collapsed: the experiment is done, with failed seeds
        print(f"failed seeds: {printable(record['note'])}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _claim(stack: contextlib.ExitStack, results: Path, config: TrainConfig) -> Path:
    """``results`` checked as a store, with ``config``'s experiment locked in it for this process
    (released when ``stack`` closes); ``StoreError`` when another process holds it."""
    root = store.check_store(results)
    stack.callback(tidy, root)  # last: after the lock (and its file, once stored) is given back
    claims = stack.enter_context(store.Claims(root, f"train-{os.getpid()}"))
    if not claims.take(config.key()):
        raise StoreError(
            f"experiment {config.key()} in {root} is being trained by {store.owner(root, config.key())}; "
            "wait for it, or choose another --results"
        )
    return root


def _train(args: argparse.Namespace, config: TrainConfig, data: Any, root: Path | None) -> dict:
    """Train ``config`` on ``data`` here; with a store ``root``, resume from its checkpoint and
    store the experiment (weights, then its record) as a sweep would. Returns the record."""
    from mlpmnist.store.checkpoint import Checkpoints
    from mlpmnist.training.loop import train

    checkpoint = Checkpoints(root, config) if root is not None else None
    result = train(config, data, progress=not args.no_progress, checkpoint=checkpoint)
    if root is None or checkpoint is None:
        return store.make_record(result)
    store.clear_failure(root, config.key())
    record = store.save_result(result, root, job={"id": "train", "start_seconds": 0.0})
    checkpoint.remove()
    return record


def sweep_config_from_args(args: argparse.Namespace) -> Any:
    """The ``SweepConfig`` of the sweep command's flags. A config flag that a grid axis
    overrides (``--batch-size`` beside the default batch-size axis, ``--lr`` beside
    ``--grid lr=...``) is refused with the flag it probably meant, never silently ignored."""
    from mlpmnist.sweep.run import REFERENCE_BATCH_SIZES, SweepConfig

    grid = parse_assignments(args.grid or [], "grid axis")
    if args.batch_sizes:
        if "batch_size" in grid:
            raise ValueError("give the batch sizes once: --batch-sizes or --grid batch_size=..., not both")
        grid = {"batch_size": [parse_value("batch_size", v) for v in args.batch_sizes], **grid}
    axes = set(grid) or {"batch_size"}  # the default grid is the reference's batch sizes
    for name in (n for n in FIELDS if hasattr(args, n) and n in axes):
        value = getattr(args, name)
        shown = " ".join(value) if isinstance(value, list) else str(value)
        if name == "batch_size" and not args.grid:
            instead = f"--batch-sizes {shown}"
        else:  # a list field's value is one grid value: spelled NAME=0-4, not NAME=0,4
            instead = f"--grid {name}=" + ("..." if isinstance(value, list) else shown)
        raise ValueError(
            f"--{name.replace('_', '-')} {shown} is not used by sweep: {name} is one of its grid axes; "
            f"did you mean {instead}?"
        )
    return SweepConfig(
        base=config_from_args(args),
        grid=grid or {"batch_size": list(REFERENCE_BATCH_SIZES)},
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


def cmd_sweep(args: argparse.Namespace) -> int:
    from mlpmnist.sweep.run import run_sweep

    if args.scheduler:
        import distributed  # noqa: F401  (creates its loggers)

        # Dask's client logs a lost scheduler with a traceback; the sweep ends with one line instead.
        for name in [n for n in logging.root.manager.loggerDict if n.startswith("distributed")]:
            logging.getLogger(name).setLevel(logging.CRITICAL)

    outcome = run_sweep(sweep_config_from_args(args), progress=not args.no_progress)
    print(outcome.table.drop(columns=["key"]).to_string(index=False))
    print(f"sweep: {outcome.line()}; {outcome.seconds:.0f} s; results in {outcome.results_dir}")
    for key, err in outcome.failed.items():
        # Point at what exists: a results folder deleted mid-run, or a full disk, leaves neither.
        paths = [outcome.results_dir / kind / f"{key}{store.KINDS[kind]}" for kind in ("notebooks", "logs")]
        seen = [p for p in paths if p.is_file() and store.outside(outcome.results_dir, p) is None]
        see = f"; see {seen[0]}" if seen else ""
        print(f"error: experiment {key} failed: {printable(err)}{see}", file=sys.stderr)
    for key, seeds in outcome.failed_seeds.items():  # done experiments: an outcome, said apart
        # The record's own words: which seeds, what happened, what to do (never learned or fell).
        note = store.trusted(outcome.results_dir, key).record.get("note")
        said = printable(note or f"seeds {seeds} failed")
        print(f"failed seeds: experiment {key} is done; {said}", file=sys.stderr)
    return EXIT_FAILED if outcome.failed or outcome.failed_seeds else 0


def _model_experiment(df: Any, wanted: int | None, where: dict, results_dir: Path) -> tuple[str, str]:
    """The key of the experiment in ``df`` whose models the model figures show (``choice.choose_model``
    among those at batch size ``wanted``, any when None, matching ``where``), and why, in one line."""
    from mlpmnist.analysis import choice

    rows = df if wanted is None else df[df["batch_size"] == wanted]
    keys = sorted(rows["key"].unique())
    keys = [k for k in keys if not where or matches(store.trusted(results_dir, k).config, where)]
    sizes = ", ".join(str(int(b)) for b in sorted(df["batch_size"].unique()))
    fix = f"batch sizes in {results_dir}: {sizes}; choose another --model-batch-size or --model-where"
    pinned = ({"batch_size": wanted} if wanted is not None else {}) | where
    key, why = choice.choose_model(df, keys, pinned, "of the selection", fix)
    return key, f"model figures: {key}, {why}; --model-batch-size and --model-where choose another"


def cmd_figures(args: argparse.Namespace) -> int:
    from mlpmnist.analysis.columns import config_label, dataset_names
    from mlpmnist.figures import compose as figures
    from mlpmnist.figures import embed
    from mlpmnist.figures.style import facet_axes

    check_backend()
    # Everything is read and checked before anything is written: the records, the model
    # experiment and its weights, the data, the media folder; then every figure is drawn, then saved.
    df = store.load(args.results, where=assignments(args.where, "selection"))
    model_where = assignments(args.model_where, "--model-where")
    key, why = _model_experiment(df, args.model_batch_size, model_where, args.results)
    chosen = store.trusted(args.results, key)
    models = chosen.models()
    rows = df[df["key"] == key]
    label = config_label(rows.iloc[0], ["batch_size", *facet_axes(df)])
    data = mdata.load(args.data, dataset=dataset_names(rows).iloc[0])
    tsne = embed.snapshot_config(chosen.config) if args.tsne else None
    media = store.writable_folder(args.media if args.media is not None else args.results / "media", "--media")
    print(why)
    figs = figures.study_figures(df) | figures.data_figures(data)
    figs |= figures.model_figures(models, data, label)
    if tsne is not None:
        emb = embed.tsne_epochs(
            data, config=tsne, results_dir=args.results, data_dir=args.data, progress=True
        )
        figs |= figures.tsne_figures(emb, label)
    for p in figures.save_figures(figs, media, args.format):
        print(p)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from mlpmnist.analysis import compare, findings, stats, tables
    from mlpmnist.analysis.columns import varying_axes

    out = check_out_path(args.out) if args.out is not None else None
    where = assignments(args.where, "selection")
    if bool(args.a) != bool(args.b):
        raise ValueError("--a and --b go together (two selections to compare), e.g. --a lr=0.03 --b lr=0.1")
    if args.a:
        sides = []
        for name, words in (("a", args.a), ("b", args.b)):
            side = store.load(args.results, where={**where, **assignments(words, f"--{name}")})
            if axes := varying_axes(side):
                raise ValueError(
                    f"--{name} {' '.join(words)} selects several configurations (they differ in "
                    f"{', '.join(axes)}); add NAME=VALUE to pin one"
                )
            sides.append(side)
        result = compare.two(*sides)
        if args.format == "text":
            text = "\n".join(findings.comparison(result))
        else:
            text = tables.export(result, args.format)
    else:
        df = store.load(args.results, where=where)
        summ = stats.summary(df)
        text = tables.export(summ, args.format)
        if args.format == "text":
            text += "\n\n" + "\n".join(findings.conclusions(summ, compare.pairwise(df)))
    if out is None:
        print(text.rstrip("\n"))
    else:
        print(f"wrote {store.atomic_write_text(out, text.rstrip(chr(10)) + chr(10))}")
    return 0


def check_backend() -> None:
    """``ValueError`` when ``MPLBACKEND`` names no matplotlib backend (matplotlib's own error
    would not say where the name came from)."""
    if not (name := os.environ.get("MPLBACKEND")):
        return
    from matplotlib import rcsetup

    try:
        rcsetup.validate_backend(name)
    except ValueError:
        raise ValueError(
            f"MPLBACKEND={printable(name)!r} is not a matplotlib backend; unset it, or set it to agg "
            "(figures to files only) or another backend matplotlib knows"
        ) from None

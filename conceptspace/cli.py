"""The conceptspace command: models, datasets, extract, cache, run.

Heavy imports (torch, transformers, nnsight) happen inside the subcommands, so ``conceptspace --help`` and
``conceptspace cache info`` answer at once.

Errors: every failure goes through one boundary, :func:`main`, which prints exactly one line
``conceptspace: error: <what> (<how to fix>)`` on stderr and returns a documented exit status; ``--debug``
shows the traceback instead. Arguments, the input file, the device and the output folder are checked before
any model is loaded, and output folders are written through a staging folder, so a failure leaves no
half-written output behind.

Exit status (see ``EXIT_STATUS``):

* 0: success;
* 1: an unexpected internal error, i.e. a bug (rerun with ``--debug`` and report the traceback);
* 2: an error you can fix: bad arguments, input file, model, device, suite, output folder, full disk
  (argparse's own usage errors use 2 too); nothing is written;
* 3: ``run`` finished and wrote its report, but at least one analysis failed (the report records why);
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conceptspace import __version__
from conceptspace.errors import ConceptspaceError, DatasetError, DeviceError, InvalidInputError, OutputError
from conceptspace.utils.text_safety import one_line, safe_file_name

if TYPE_CHECKING:
    from conceptspace.concepts._validation import RawTable

EXIT_OK = 0
EXIT_BUG = 1
EXIT_ERROR = 2
EXIT_FAILED_ANALYSES = 3
EXIT_INTERRUPTED = 130
EXIT_STATUS = {
    EXIT_OK: "success",
    EXIT_BUG: "unexpected internal error (a bug: rerun with --debug and report the traceback)",
    EXIT_ERROR: "an error you can fix (arguments, input file, model, device, suite, output folder, disk);\n"
                "       no output folder or report is written",
    EXIT_FAILED_ANALYSES: "run: the report was written, but an analysis failed (the report says why; one the "
                          "model cannot take, e.g. steering on an encoder, is 'not applicable', not a failure)",
    EXIT_INTERRUPTED: "interrupted",
}
_DEBUG_HINT = "rerun with --debug for the traceback"


def _print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header], *[[("" if c is None else str(c)) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for number, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))


def _cmd_models(args: argparse.Namespace) -> int:
    from conceptspace.models import DEFAULT_MODEL, installed_models

    rows = installed_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _print_table(
        [
            (
                r["alias"] + (" (default)" if r["alias"] == DEFAULT_MODEL else ""),
                "yes" if r["installed"] else "no",
                r["description"] if r["installed"] else r["install"],
            )
            for r in rows
        ],
        ("alias", "installed", "description / how to install"),
    )
    print(
        "\nAlso accepted: a local Hugging Face folder, a .gguf file, "
        "or a Hub id (owner/name) where the Hub is reachable."
    )
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from conceptspace import concepts
    infos = concepts.list_concepts()
    if args.json:
        print(json.dumps([dataclasses.asdict(info) for info in infos], indent=2, default=str))
    else:
        print(concepts.format_concept_table(infos))
    return 0


def _read_texts(path: Path, column: str) -> list[str]:
    """One text per line (.txt), or a ``column`` of a .jsonl / .json / .csv / .tsv file; strict UTF-8.

    Every error names the file (and the line where there is one): binary or non-UTF-8 bytes, a malformed JSON
    line, a field of mixed JSON types, a missing or empty text, a header-only CSV, a file with no texts.
    """
    from conceptspace.concepts._files import read_json_table, read_text_strict

    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        texts = _column_texts(read_json_table(path, "texts file"), column, "field")
    elif suffix in (".csv", ".tsv"):
        texts = _csv_texts(path, column, "," if suffix == ".csv" else "\t")
    else:
        texts = [line for line in read_text_strict(path, "texts file").splitlines() if line.strip()]
    if not texts:
        raise DatasetError(f"{path}: no texts (the file is empty or holds only blank lines)")
    return texts


def _csv_texts(path: Path, column: str, delimiter: str) -> list[str]:
    """A CSV/TSV column as texts, every cell a string as written (no number inference: '1' stays '1')."""
    import csv
    import io

    from conceptspace.concepts._files import check_has_data_rows, read_text_strict

    text = read_text_strict(path, "texts file")
    if not text.strip():
        raise DatasetError(f"{path}: the file is empty")
    check_has_data_rows(text, str(path), delimiter)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if reader.fieldnames is None or column not in reader.fieldnames:
        raise DatasetError(f"{path}: no column {column!r} (columns: {', '.join(reader.fieldnames or [])}); "
                           "pick one with --text-column")
    texts = []
    for row in reader:
        value = row.get(column)
        if not value or not value.strip():
            raise DatasetError(f"{path}:{reader.line_num}: column {column!r} is missing or empty; every row needs a "
                               "text")
        texts.append(value)
    return texts


def _column_texts(table: RawTable, column: str, noun: str) -> list[str]:
    """The ``column`` of a RawTable as texts: each must be a non-empty string, else an error naming its row."""
    if column not in table.columns:
        raise DatasetError(
            f"{table.origin}: no {noun} {column!r} ({noun}s: {', '.join(table.columns)}); pick one with --text-column"
        )
    texts = []
    for row, value in enumerate(table.columns[column]):
        if not isinstance(value, str) or not value.strip():
            what = "missing or empty" if value is None or isinstance(value, str) else f"{value!r}, not a string"
            raise DatasetError(f"{table.where(row)}: {noun} {column!r} is {what}; every text must be a string")
        texts.append(value)
    return texts


def _parse_layers(value: str) -> list[str] | None:
    if value.strip() == "all":
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


# ------------------------------------------------------------------------------ checks before any work
def check_device(device: str | None) -> None:
    """Refuse a device this machine lacks before a model is loaded (torch would fail later, with a traceback)."""
    if device is None or device in ("cpu", "auto"):
        return
    import torch

    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"--device {device!r} is not a device name (use cpu, cuda, cuda:N, mps or auto)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: torch sees no CUDA GPU on this machine "
                              "(use --device cpu, or --device auto to take a GPU only where there is one)")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(f"--device {device}: this machine has {count} CUDA GPU(s), numbered 0..{count - 1}")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"--device {device}: torch sees no Apple MPS device here (use --device cpu)")
    elif resolved.type != "cpu":
        raise DeviceError(f"--device {device}: unsupported device type {resolved.type!r} "
                          "(use cpu, cuda, cuda:N, mps or auto)")


def check_output_folder(path: Path, flag: str = "--out") -> None:
    """Make sure ``path`` can become (or already is) a writable folder, creating nothing.

    Called before the model is loaded, so a run that could not save its results fails in a second, not after
    an hour of forwards. The write test is a real temporary file (permission bits say nothing for root or on a
    read-only mount); it is removed at once.
    """
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is an existing file, not a folder (choose a folder path)")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{flag} {path}: {ancestor} is a file, so no folder can be made below it "
                          "(choose another path)")
    try:
        handle, probe = tempfile.mkstemp(dir=ancestor, prefix=".conceptspace-write-test-")
    except OSError as error:
        raise OutputError(f"{flag} {path}: cannot write in {ancestor} ({error.strerror or error}) "
                          "(choose a folder you can write, or fix its permissions)") from None
    os.close(handle)
    os.unlink(probe)


def _missing_folders(folder: Path) -> list[Path]:
    """The folders ``mkdir -p folder`` would create, outermost first (so a failure can remove exactly those)."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    return list(reversed(missing))


def _move_into(source: Path, target: Path) -> None:
    """Move every file of ``source`` into the existing folder ``target``, replacing files of the same name."""
    for item in sorted(source.rglob("*")):
        destination = target / item.relative_to(source)
        if item.is_dir():
            destination.mkdir(exist_ok=True)
        else:
            os.replace(item, destination)


def publish_folder(out: Path, fill: Callable[[Path], object]) -> None:
    """Write an output folder all-or-nothing: ``fill`` writes into a staging folder beside ``out``, then it moves.

    Why: a disk that fills up or a failure half-way through writing must not leave a folder that looks like a
    finished report. The staging folder sits on the same disk, so the final step is renames, which need no
    space. On failure the staging folder and every parent folder this call created are removed, and the error
    propagates; files already in an existing ``out`` are replaced only by name, never deleted.
    """
    out = out.resolve()
    created = _missing_folders(out.parent)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # not mkdtemp: its 0700 mode would become the final folder's
        fill(staging)
        if out.is_dir():
            _move_into(staging, out)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_activations(acts: Any, folder: Path) -> None:
    """The arrays (and manifest) of an extraction into ``folder``."""
    if acts.folder is not None:
        for file in acts.folder.iterdir():
            shutil.copy2(file, folder / file.name)
        return
    import numpy as np

    for site in acts.sites:
        np.save(folder / f"{site}.npy", acts.arrays[site])


def _quiet_libraries() -> None:
    """Turn off Hugging Face progress bars and retry warnings: --quiet leaves stderr to the one error line."""
    import huggingface_hub.utils
    import transformers.utils.logging

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()
    huggingface_hub.utils.logging.set_verbosity_error()


# -------------------------------------------------------------------------------------------- commands
def _cmd_extract(args: argparse.Namespace) -> int:
    if (args.texts is None) == (args.dataset is None):
        raise InvalidInputError("give exactly one of --texts FILE or --dataset NAME")
    if args.texts is not None:
        items: Any = _read_texts(Path(args.texts), args.text_column)
    else:
        from conceptspace.concepts import load_concepts

        items = load_concepts(args.dataset)
    check_device(args.device)
    out = Path(args.out) if args.out else None
    if out is not None:
        check_output_folder(out)

    if args.quiet:
        _quiet_libraries()
    from conceptspace.activations import extract
    from conceptspace.models import load_model

    model = load_model(
        args.model,
        untrained=args.untrained,
        seed=args.seed,
        device=args.device,
        dtype=args.model_dtype,
        remote="local" if args.remote_dry_run else (True if args.remote else False),
    )
    acts = extract(
        model,
        items,
        sites=_parse_layers(args.layers),
        position=args.position,
        batch_size=args.batch_size,
        dtype=args.dtype,
        cache=not args.no_cache,
        truncate=args.truncate,
        progress=not args.quiet,
    )
    summary = {
        "model": model.name,
        "untrained_seed": model.identity.untrained_seed,
        "n_items": acts.n_items,
        "sites": list(acts.sites),
        "position": acts.position,
        "d_model": acts.d_model,
        "cache_folder": str(acts.folder) if acts.folder else None,
    }
    if out is not None:
        publish_folder(out, lambda folder: _copy_activations(acts, folder))
        summary["out"] = str(out)
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_cache(args: argparse.Namespace) -> int:
    from conceptspace.activations._cache import cache_clear, cache_info
    from conceptspace.errors import InvalidInputError

    if args.action == "info":
        if args.area:
            raise InvalidInputError("--area goes with `cache clear`; `cache info` lists every area")
        info = cache_info(verify=args.verify)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_cache_info(info)
        return 1 if args.verify and any(e["state"] == "damaged" for e in info["entries"]) else 0
    if args.verify:
        raise InvalidInputError("--verify goes with `cache info`; `cache clear` removes damaged entries anyway")
    if args.area:
        from conceptspace.activations._cache import clear_areas

        if args.partial:
            raise InvalidInputError("--partial clears unfinished extractions; --area clears whole areas: use one")
        for name, freed in clear_areas(args.area).items():
            print(f"cleared {name}/ ({freed / 1e6:.1f} MB)" if freed else f"{name}/: nothing to clear")
        return 0
    report = cache_clear(partial_only=args.partial)
    print(f"removed {len(report.removed)} cache entr{'y' if len(report.removed) == 1 else 'ies'}")
    for name in report.running:
        print(f"kept {name}: an extraction holds its lock (still running)")
    for name in report.left_alone:
        print(f"left alone {name}/: not an activation cache entry")
    return 0


def default_report_folder(suite_name: str, model: str) -> Path:
    """``reports/<suite>-<model>`` from safe file names: neither part can climb out of reports/."""
    model_name = Path(model.rstrip("/\\")).name
    return Path("reports") / f"{safe_file_name(suite_name)}-{safe_file_name(model_name, fallback='model')}"


def _failed_analyses_line(outcome: Any, report: Path) -> str | None:
    """One line naming the analyses that did not finish, or None when all of them did."""
    failed = [r for r in outcome.records if r.status not in ("ok", "not applicable")]  # n/a: the model's, not ours
    if not failed:
        return None
    names = "; ".join(f"{r.spec.id}: {r.reason or r.status}" for r in failed)
    return (f"{len(failed)} of {len(outcome.records)} analyses failed or were not run ({names}); the report "
            f"records this: {report} (fix the suite or the model, or {_DEBUG_HINT})")


def _print_cache_info(info: dict[str, Any]) -> None:
    """The human-readable ``cache info``: one row per entry (damaged ones say why), then the other areas."""
    print(f"activation cache: {info['root']}  ({info['bytes'] / 1e6:.1f} MB in {len(info['entries'])} entries)")
    if info["entries"]:
        _print_table(
            [
                (
                    e["key"][:16] if e["state"] == "complete" else e["key"],
                    e["state"],
                    e["model"],
                    e["n_items"],
                    e["sites"],
                    e["position"],
                    f"{e['bytes'] / 1e6:.1f}",
                )
                for e in info["entries"]
            ],
            ("key", "state", "model", "items", "sites", "position", "MB"),
        )
    for entry in info["entries"]:
        if entry["problem"] and entry["state"] == "damaged":
            print(f"damaged {entry['key']}: {entry['problem']}")
        if entry["locked_by"]:
            print(f"locked {entry['key']}: held by {entry['locked_by']}")
    for area in info["areas"]:
        print(f"other area {area['name']}/: {area['what']} ({area['bytes'] / 1e6:.1f} MB; `cache clear --area "
              f"{area['name']}` clears it)")


def _cmd_run(args: argparse.Namespace) -> int:
    from conceptspace.suite import load_suite

    suite = load_suite(args.suite).for_run(quick=args.quick, seed=args.seed, model=args.model, layers=args.layers)
    out = Path(args.out) if args.out else default_report_folder(suite.name, suite.model)
    check_device(args.device)
    check_output_folder(out)

    from conceptspace.models import RemoteMode
    from conceptspace.report import write_report
    from conceptspace.suite._runner import run_suite

    if args.quiet:
        _quiet_libraries()
    remote: RemoteMode = "local" if args.remote_dry_run else bool(args.remote)
    outcome = run_suite(suite, quick=args.quick, device=args.device, remote=remote, twin=args.twin,
                        progress=not args.quiet, debug=bool(getattr(args, "debug", False)), null_seed=args.null,
                        jobs=args.jobs)
    publish_folder(out, lambda folder: write_report(outcome, folder))
    for verdict in outcome.verdicts:
        print(f"{verdict.claim:3s} {verdict.verdict:14s} {verdict.reason}")
    print(f"report: {out / 'report.md'}  {out / 'report.html'}  {out / 'results.json'}")
    failed = _failed_analyses_line(outcome, out / "report.md")
    if failed is not None:
        _print_error(failed)
        return EXIT_FAILED_ANALYSES
    return EXIT_OK


def _jobs_argument(value: str) -> int:
    """``--jobs``: a whole number >= 0 (0 = one worker per usable CPU)."""
    try:
        jobs = int(value)
    except ValueError:
        jobs = -1
    if jobs < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers: give 1, 2, ... or 0 (one per CPU)")
    return jobs


def _layers_argument(value: str) -> Any:
    """``--layers``: "all", or comma-separated block indices (``3,-1``) and fractions of depth (``0.25,0.5``); a
    number with a decimal point is a fraction (so ``1`` is block 1 and ``1.0`` the last block)."""
    text = value.strip()
    if text == "all":
        return "all"
    out: list[int | float] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            number: int | float = float(part) if any(c in part for c in ".eE") else int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a layer: give 'all' or comma-separated block indices (3,-1) or fractions of "
                "depth in [0, 1] (0.25,0.5,0.75)") from None
        if isinstance(number, float) and not 0.0 <= number <= 1.0:
            raise argparse.ArgumentTypeError(
                f"{part} is a fraction of depth outside [0, 1]; write an int ({int(number)}) for a block index")
        out.append(number)
    return out


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _exit_status_epilog() -> str:
    return "exit status:\n" + "\n".join(f"  {code:<4d} {what}" for code, what in EXIT_STATUS.items())


def _cmd_compare(args: argparse.Namespace) -> int:
    from conceptspace.report import compare_runs, write_comparison

    compare_runs(args.runs, args.label)  # every run readable, labels matching, before anything is written
    out = Path(args.out)
    check_output_folder(out)
    publish_folder(out, lambda folder: write_comparison(args.runs, folder, args.label))
    print(f"comparison: {out / 'compare.md'}  {out / 'compare.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conceptspace",
        description="Test whether directions in a transformer's embedding space act as semantic concepts:\n"
                    "list models and datasets, extract activations, run probe suites, compare runs.",
        epilog=_exit_status_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"conceptspace {__version__}",
                        help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show debug logs, and a traceback instead of the one-line error message")
    commands = parser.add_subparsers(dest="command", required=True)
    json_help = "print JSON instead of a table"

    models = commands.add_parser("models", help="list the bundled model aliases and whether they are installed")
    models.add_argument("--json", action="store_true", help=json_help)
    models.set_defaults(handler=_cmd_models)

    datasets = commands.add_parser("datasets", help="list the bundled concept datasets")
    datasets.add_argument("--json", action="store_true", help=json_help)
    datasets.set_defaults(handler=_cmd_datasets)

    extract = commands.add_parser("extract", help="extract activations into the cache (and optionally a folder)",
                                  epilog=_exit_status_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    extract.add_argument("--model", default="smollm2-135m", help="alias, folder, .gguf file or Hub id")
    extract.add_argument("--texts", help="a UTF-8 .txt (one text per line), .jsonl, .json, .csv or .tsv file")
    extract.add_argument("--text-column", default="text",
                         help="field of a .jsonl/.json or column of a .csv/.tsv texts file (default: text)")
    extract.add_argument("--dataset", help="a bundled concept dataset name ('conceptspace datasets' lists them)")
    extract.add_argument("--layers", default="all",
                         help="'all' or a comma list: embed,0,5,-1,final_norm; a decimal is a fraction of depth "
                              "(0.5 or layer@0.5: block floor(f * n_layers), the one at mid-depth)")
    extract.add_argument("--position", default="last", help="last | mean | all | span:first | span:last | span:mean")
    extract.add_argument("--batch-size", type=_positive_int, default=32, help="texts per forward (default 32)")
    extract.add_argument("--dtype", default=None, help="storage dtype: float32 | float16 | bfloat16")
    extract.add_argument("--model-dtype", default=None, help="compute dtype of the model (default float32)")
    extract.add_argument("--device", default=None, help="cpu | cuda | cuda:N | mps | auto (default cpu)")
    extract.add_argument("--untrained", action="store_true", help="use the untrained twin of the model")
    extract.add_argument("--seed", type=int, default=0, help="seed of the untrained twin")
    where = extract.add_mutually_exclusive_group()
    where.add_argument("--remote", action="store_true", help="run on NDIF (Hub ids; key from NDIF_API_KEY)")
    where.add_argument("--remote-dry-run", action="store_true", help="nnsight's in-process remote round trip")
    extract.add_argument("--truncate", action="store_true", help="cut texts longer than the model's context")
    extract.add_argument("--no-cache", action="store_true", help="keep activations in memory only")
    extract.add_argument("--out", help="also copy the arrays and manifest into this folder (checked before the run)")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.set_defaults(handler=_cmd_extract)

    run = commands.add_parser("run", help="run a probe suite and write report.md, report.html, results.json",
                              epilog=_exit_status_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("suite", help="a suite file (probes/concept_space.toml) or a bundled suite name")
    run.add_argument("--model", default=None, help="override the suite's model (alias, folder, .gguf, Hub id)")
    run.add_argument("--out", default=None,
                     help="output folder, checked before the run (default reports/<suite name>-<model name>)")
    run.add_argument("--seed", type=int, default=None, help="override the suite's seed")
    run.add_argument("--device", default=None, help="cpu | cuda | cuda:N | mps | auto (default cpu)")
    run_where = run.add_mutually_exclusive_group()
    run_where.add_argument("--remote", action="store_true", help="run on NDIF (Hub ids; key from NDIF_API_KEY)")
    run_where.add_argument("--remote-dry-run", action="store_true",
                           help="run every trace through nnsight's in-process remote round trip (weights held apart)")
    run.add_argument("--twin", default="config",
                     help="untrained control: 'config' (the model's own architecture, built locally), 'none', "
                          "or a model whose untrained version stands in (e.g. a smaller one of the same family)")
    run.add_argument("--quick", action="store_true", help="the suite's reduced battery (CI, smoke tests)")
    run.add_argument("--layers", type=_layers_argument, default=None, metavar="LAYERS",
                     help="override every analysis's layers: 'all', block indices (3,-1) or fractions of depth "
                          "(0.25,0.5,0.75: block floor(f * n_layers), 1.0 the last); single-layer kinds (steering, "
                          "erasure, derivatives) take the middle value; recorded in results.json")
    run.add_argument("--null", type=int, default=None, metavar="SEED",
                     help="the null battery: every label set permuted within its groups, every pair set re-paired, "
                          "every concept direction drawn from permuted labels (seeded); no claim should come out "
                          "supported (docs/STATISTICS.md reports the false-positive rate over seeds)")
    run.add_argument("--jobs", type=_jobs_argument, default=1, metavar="N",
                     help="worker processes for the analyses (default 1; 0 = one per usable CPU); each computes on "
                          "one thread, so the numbers equal a one-process run with OMP_NUM_THREADS=1 (more threads "
                          "change the last float bits of uncached forwards); each worker holds the controls its "
                          "analyses need (memory grows with N); a GPU or remote run uses 1")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(handler=_cmd_run)

    cache = commands.add_parser("cache", help="inspect or clear the activation cache")
    cache.add_argument("action", choices=["info", "clear"], help="info: list the entries; clear: delete them")
    cache.add_argument("--partial", action="store_true", help="clear only unfinished extractions")
    cache.add_argument("--area", action="append", metavar="NAME",
                       help="clear: a whole other area instead of the activation entries (forward-memo: the "
                            "analyses' memoized forwards; weights; token-sequences; all); repeatable")
    cache.add_argument("--verify", action="store_true",
                       help="info: hash every array against its manifest (reads the whole cache; exit 1 if damaged)")
    cache.add_argument("--json", action="store_true", help=json_help + " (info)")
    cache.set_defaults(handler=_cmd_cache)

    compare = commands.add_parser("compare", help="one report across several runs, layers aligned by relative depth",
                                  epilog=_exit_status_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("runs", nargs="+", help="two or more folders written by 'conceptspace run'")
    compare.add_argument("--label", action="append", default=None,
                         help="a name for each run, in order (repeat the flag; default: model, seed, --quick)")
    compare.add_argument("--out", default="reports/compare", help="output folder (default reports/compare)")
    compare.set_defaults(handler=_cmd_compare)
    for sub in (models, datasets, extract, run, cache, compare):  # --debug also after the command name
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show a traceback instead of the one-line error message")
    return parser


# ------------------------------------------------------------------------------------ the error boundary
def _os_error_message(error: OSError) -> str:
    """What went wrong with a file operation, and what to do about it, in one sentence."""
    name = error.filename or ""
    where = f": {name}" if name else ""
    if error.errno == errno.ENOSPC:
        return (f"no space left on the device{where} (free some space, or point CONCEPTSPACE_CACHE / --out at a "
                "disk with room; an interrupted extraction resumes, 'conceptspace cache clear --partial' drops it)")
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where} (choose a path you can write, or fix its permissions)"
    if error.errno == errno.EROFS:
        return f"read-only file system{where} (choose a path on a writable disk)"
    if isinstance(error, FileNotFoundError):
        return f"no such file or folder{where} (check the path)"
    if isinstance(error, IsADirectoryError):
        return f"{name} is a folder, a file was expected (check the path)"
    return f"{error.strerror or error}{where} ({_DEBUG_HINT})"


def _is_accelerator_error(error: BaseException) -> bool:
    """torch's 'CUDA not available' family: AssertionError / RuntimeError naming CUDA, NVIDIA or a driver."""
    text = str(error)
    return isinstance(error, (RuntimeError, AssertionError)) and any(
        word in text for word in ("CUDA", "cuda", "NVIDIA", "MPS")
    )


# Libraries whose exceptions mean "the network, the Hub or NDIF said no", not a bug: their classes are matched
# by module so that none of them has to be imported just to classify an error.
_NETWORK_MODULES = ("httpx", "httpcore", "requests", "urllib3", "websocket", "huggingface_hub",
                    "nnsight.intervention.backends.remote")


def _is_network_error(error: BaseException) -> bool:
    """An HTTP/websocket/Hub/NDIF error (httpx errors, nnsight's RemoteError, ...), whatever its base class."""
    return any(cls.__module__.startswith(_NETWORK_MODULES) for cls in type(error).__mro__)


def describe_error(error: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message for an exception that reached :func:`main`."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(error, ConceptspaceError):
        return EXIT_ERROR, str(error)
    if isinstance(error, UnicodeDecodeError):
        return EXIT_ERROR, f"input is not valid UTF-8 ({error.reason} at byte {error.start}; re-save it as UTF-8)"
    if _is_network_error(error):
        return EXIT_ERROR, (f"remote request failed: {type(error).__name__}: {error} (check the network, "
                            "NDIF_API_KEY and the model id; --remote-dry-run checks the remote path offline)")
    if isinstance(error, OSError):
        return EXIT_ERROR, _os_error_message(error)
    if isinstance(error, MemoryError):
        return EXIT_ERROR, "out of memory (use a smaller --batch-size or a smaller model)"
    if type(error).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
        return EXIT_ERROR, (f"the GPU ran out of memory: {error} (use a smaller --batch-size, "
                            "--model-dtype bfloat16, or --device cpu)")
    if _is_accelerator_error(error):
        return EXIT_ERROR, f"{error} (use --device cpu, or --device auto to take a GPU only where there is one)"
    if isinstance(error, ValueError):
        return EXIT_ERROR, f"{error} ({_DEBUG_HINT})"
    return EXIT_BUG, (f"unexpected {type(error).__name__}: {error} (this is a bug in conceptspace: {_DEBUG_HINT} "
                      "and report it)")


def _print_error(message: str) -> None:
    print(f"conceptspace: error: {one_line(message)}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit status (see ``EXIT_STATUS``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args))
    except (Exception, KeyboardInterrupt) as error:
        if args.debug:
            raise
        code, message = describe_error(error)
        _print_error(message)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

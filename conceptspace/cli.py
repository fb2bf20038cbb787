"""The ``conceptspace`` command: models, datasets, extract, cache, run.

Heavy imports (torch, transformers, nnsight) happen inside the subcommands, so ``conceptspace --help`` and
``conceptspace cache info`` answer at once. Errors a user can fix are printed as one line without a traceback
(exit status 2); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conceptspace import __version__
from conceptspace.errors import ConceptspaceError


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
    """One text per line (.txt), or a ``column`` of a .jsonl / .csv file."""
    if not path.exists():
        raise ConceptspaceError(f"texts file {path} does not exist")
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if column not in record:
                raise ConceptspaceError(f"{path}:{number}: no field {column!r} (fields: {', '.join(record)})")
            texts.append(record[column])
        return texts
    if path.suffix == ".csv":
        import csv

        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise ConceptspaceError(f"{path}: no column {column!r} (columns: {reader.fieldnames})")
            return [row[column] for row in reader]
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _parse_layers(value: str) -> list[str] | None:
    if value.strip() == "all":
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _cmd_extract(args: argparse.Namespace) -> int:
    from conceptspace.activations import extract
    from conceptspace.models import load_model

    if (args.texts is None) == (args.dataset is None):
        raise ConceptspaceError("give exactly one of --texts FILE or --dataset NAME")
    if args.texts is not None:
        items: Any = _read_texts(Path(args.texts), args.text_column)
    else:
        from conceptspace.concepts import load_concepts

        items = load_concepts(args.dataset)
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
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if acts.folder is not None:
            for file in acts.folder.iterdir():
                shutil.copy2(file, out / file.name)
        else:
            import numpy as np

            for site in acts.sites:
                np.save(out / f"{site}.npy", acts.arrays[site])
        summary["out"] = str(out)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from conceptspace.cache import cache_clear, cache_info
    from conceptspace.errors import InvalidInputError

    if args.action == "info":
        info = cache_info(verify=args.verify)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_cache_info(info)
        return 1 if args.verify and any(e["state"] == "damaged" for e in info["entries"]) else 0
    if args.verify:
        raise InvalidInputError("--verify goes with `cache info`; `cache clear` removes damaged entries anyway")
    report = cache_clear(partial_only=args.partial)
    print(f"removed {len(report.removed)} cache entr{'y' if len(report.removed) == 1 else 'ies'}")
    for name in report.running:
        print(f"kept {name}: an extraction holds its lock (still running)")
    for name in report.left_alone:
        print(f"left alone {name}/: not an activation cache entry")
    return 0


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
        print(f"other area {area['name']}/: {area['what']} ({area['bytes'] / 1e6:.1f} MB; not cleared)")


def _cmd_run(args: argparse.Namespace) -> int:
    from conceptspace.models import RemoteMode
    from conceptspace.report import write_report
    from conceptspace.runner import run_suite
    from conceptspace.suite import load_suite

    suite = load_suite(args.suite).for_run(quick=args.quick, seed=args.seed, model=args.model)
    out = Path(args.out) if args.out else Path("reports") / f"{suite.name}-{Path(suite.model).name}"
    remote: RemoteMode = "local" if args.remote_dry_run else bool(args.remote)
    outcome = run_suite(suite, quick=args.quick, device=args.device, remote=remote, twin=args.twin,
                        progress=not args.quiet)
    paths = write_report(outcome, out)
    for verdict in outcome.verdicts:
        print(f"{verdict.claim:3s} {verdict.verdict:14s} {verdict.reason}")
    print(f"report: {paths['markdown']}  {paths['html']}  {paths['json']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conceptspace", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"conceptspace {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the bundled model aliases and whether they are installed")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=_cmd_models)

    datasets = commands.add_parser("datasets", help="list the bundled concept datasets")
    datasets.add_argument("--json", action="store_true")
    datasets.set_defaults(handler=_cmd_datasets)

    extract = commands.add_parser("extract", help="extract activations into the cache (and optionally a folder)")
    extract.add_argument("--model", default="smollm2-135m", help="alias, folder, .gguf file or Hub id")
    extract.add_argument("--texts", help="a .txt (one text per line), .jsonl or .csv file")
    extract.add_argument("--text-column", default="text", help="field of a .jsonl/.csv texts file (default: text)")
    extract.add_argument("--dataset", help="a bundled concept dataset name (see `conceptspace datasets`)")
    extract.add_argument("--layers", default="all", help="'all' or a comma list: embed,0,5,-1,final_norm")
    extract.add_argument("--position", default="last", help="last | mean | all | span:first | span:last | span:mean")
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--dtype", default=None, help="storage dtype: float32 | float16 | bfloat16")
    extract.add_argument("--model-dtype", default=None, help="compute dtype of the model (default float32)")
    extract.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto")
    extract.add_argument("--untrained", action="store_true", help="use the untrained twin of the model")
    extract.add_argument("--seed", type=int, default=0, help="seed of the untrained twin")
    where = extract.add_mutually_exclusive_group()
    where.add_argument("--remote", action="store_true", help="run on NDIF (Hub ids; key from NDIF_API_KEY)")
    where.add_argument("--remote-dry-run", action="store_true", help="nnsight's in-process remote round trip")
    extract.add_argument("--truncate", action="store_true", help="cut texts longer than the model's context")
    extract.add_argument("--no-cache", action="store_true", help="keep activations in memory only")
    extract.add_argument("--out", help="also copy the arrays and manifest into this folder")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.set_defaults(handler=_cmd_extract)

    run = commands.add_parser("run", help="run a probe suite and write report.md, report.html, results.json")
    run.add_argument("suite", help="a suite file (probes/concept_space.toml) or a bundled suite name")
    run.add_argument("--model", default=None, help="override the suite's model (alias, folder, .gguf, Hub id)")
    run.add_argument("--out", default=None, help="output folder (default reports/<suite>-<model>)")
    run.add_argument("--seed", type=int, default=None, help="override the suite's seed")
    run.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto")
    run_where = run.add_mutually_exclusive_group()
    run_where.add_argument("--remote", action="store_true", help="run on NDIF (Hub ids; key from NDIF_API_KEY)")
    run_where.add_argument("--remote-dry-run", action="store_true",
                     help="run every trace through nnsight's in-process remote round trip (weights held apart)")
    run.add_argument("--twin", default="config",
                     help="untrained control: 'config' (the model's own architecture, built locally), 'none', "
                          "or a model whose untrained version stands in (e.g. a smaller one of the same family)")
    run.add_argument("--quick", action="store_true", help="the suite's reduced battery (CI, smoke tests)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(handler=_cmd_run)

    cache = commands.add_parser("cache", help="inspect or clear the activation cache")
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("--partial", action="store_true", help="clear only unfinished extractions")
    cache.add_argument("--verify", action="store_true",
                       help="info: hash every array against its manifest (reads the whole cache; exit 1 if damaged)")
    cache.add_argument("--json", action="store_true")
    cache.set_defaults(handler=_cmd_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args))
    except (ConceptspaceError, FileNotFoundError) as error:
        if args.debug:
            raise
        print(f"conceptspace: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

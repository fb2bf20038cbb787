"""Run a bundled probe suite on the second bundled model (all-MiniLM-L6-v2, a 6-block BERT encoder).

    python examples/run_suite_on_minilm.py [--suite categories] [--out reports/categories-minilm]

Suites name layers by fraction of depth, so the same file runs on a 6-block encoder and a 30-block decoder;
kinds an encoder cannot take (next-token steering, the logit lens) are recorded as not applicable, with why.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from conceptspace.report import write_report
from conceptspace.suite import load_suite, run_suite


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", default="categories")
    parser.add_argument("--out", type=Path, default=Path("reports/categories-minilm"))
    parser.add_argument("--full", action="store_true", help="the full battery instead of --quick")
    args = parser.parse_args(argv)

    suite = load_suite(args.suite).for_run(quick=not args.full, model="minilm-l6")
    outcome = run_suite(suite, quick=not args.full, progress=False)
    paths = write_report(outcome, args.out)
    for record in outcome.records:
        print(f"{record.spec.id:12s} {record.spec.kind:12s} {record.status:15s} {len(record.results):3d} tests")
    for verdict in outcome.verdicts:
        print(f"{verdict.claim:3s} {verdict.verdict:14s} {verdict.reason}")
    print(f"report: {paths['markdown']}")
    return {v.claim: v.verdict for v in outcome.verdicts}


if __name__ == "__main__":
    main()

"""Compare two results.json files test by test: did a speed-up change any number?

``python benchmarks/compare_results.py A/results.json B/results.json [--tol 1e-9]``: tests are matched by their
structured key; ``statistic``, ``p``, ``p_adjusted``, ``ci_low``, ``ci_high``, ``effect_size`` and every number
under ``extra`` (timings excepted) are compared. Prints each difference beyond the tolerance, a test present on
one side only, and the largest absolute difference seen; exits 1 if anything differs beyond the tolerance.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from typing import Any

FIELDS = ("statistic", "p", "p_adjusted", "ci_low", "ci_high", "effect_size")


def test_key(test: dict[str, Any]) -> str:
    """The test's structured key as a canonical string (its id when an old file has no key)."""
    key = test.get("key")
    return json.dumps(key, sort_keys=True) if key else str(test.get("id"))


def index(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for test in results["tests"]:
        key = test_key(test)
        if key in out:
            raise SystemExit(f"two tests share the key {key}: the file cannot be compared test by test")
        out[key] = test
    return out


def leaves(x: Any, y: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """Pairs of leaf values at the same path (timings, i.e. keys with 'second' or ending '_s', skipped)."""
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            if "second" not in k and not k.endswith("_s"):
                yield from leaves(x.get(k), y.get(k), f"{path}.{k}")
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            yield from leaves(u, v, f"{path}[{i}]")
    else:
        yield path, x, y


def difference(x: Any, y: Any) -> float:
    """|x - y| for numbers (0 for two NaNs), 0 for equal non-numbers, inf otherwise."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
    if numbers:
        if math.isnan(x) and math.isnan(y):
            return 0.0
        return abs(float(x) - float(y))
    return 0.0 if x == y else math.inf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--tol", type=float, default=1e-9)
    args = parser.parse_args(argv)
    with open(args.a) as fa, open(args.b) as fb:
        A, B = index(json.load(fa)), index(json.load(fb))
    bad, compared, worst = 0, 0, 0.0
    for key in sorted(set(A) | set(B)):
        if key not in A or key not in B:
            print(f"only in {'B' if key not in A else 'A'}: {key}")
            bad += 1
            continue
        pairs = [(f, A[key].get(f), B[key].get(f)) for f in FIELDS]
        pairs += list(leaves(A[key].get("extra"), B[key].get("extra"), "extra"))
        for name, x, y in pairs:
            compared += 1
            d = difference(x, y)
            if d != math.inf:
                worst = max(worst, d)
            if d > args.tol:
                print(f"{name} of {key}: {x!r} vs {y!r}")
                bad += 1
    print(f"{len(A)} / {len(B)} tests, {compared} values compared, largest difference {worst:.3g}, "
          f"{bad} beyond {args.tol:g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""N5 (self-mapping) and N7 (filtering vs aggregation) on the bundled SmolLM2-135M through the runner, with the
battery's quick settings (one twin seed, the spectrum twin), run once; the numbers are printed for the report."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conceptspace.suite import parse_suite
from conceptspace.suite._runner import run_suite
from conceptspace.theory import VERDICTS

BATTERY = Path(__file__).parents[2] / "probes" / "concept_space.toml"


@pytest.fixture(scope="module")
def outcome():
    text = BATTERY.read_text()
    suite = parse_suite(text, str(BATTERY)).for_run(quick=True)
    keep = tuple(a for a in suite.analyses if a.claim in ("N5", "N7"))
    assert len(keep) == 2
    small = replace(suite, analyses=keep, claims={c: r for c, r in suite.claims.items() if c in ("N5", "N7")})
    start = time.perf_counter()
    result = run_suite(small, quick=True, progress=False)
    print(f"\nN5+N7 quick on SmolLM2: {time.perf_counter() - start:.1f}s; {result.timings['analyses_s']}")
    return result


def test_each_analysis_has_one_primary_with_controls_and_a_verdict(outcome):
    for record in outcome.records:
        assert record.status == "ok", record.reason
        assert record.seconds < 60, (record.spec.id, record.seconds)
    for r in outcome.results:
        print(f"{r.test_id}: role={r.extra['role']} stat={r.statistic:.3f} effect={r.effect_size:.3f} "
              f"[{r.ci_low:.3f}, {r.ci_high:.3f}] p={r.p_value:.4g} draws={r.extra.get('n_permutations')} "
              + " ".join(f"{k}={v:.3f}" for k, v in r.extra.items() if k.startswith(("kl_", "index_", "recovery"))
                         and isinstance(v, float)))
    primaries = [r for r in outcome.results if r.extra["role"] == "primary"]
    assert sorted(r.claim for r in primaries) == ["N5", "N7"]
    for r in primaries:
        assert math.isfinite(r.effect_size) and r.ci_low <= r.effect_size <= r.ci_high
        assert r.p_adjusted is not None
    by_key = {r.key: r for r in outcome.results}
    spectrum = any(c["control"] == "spectrum_matched" for c in outcome.controls)
    for r in primaries:
        assert r.key.counterpart("untrained") in by_key
        assert (r.key.counterpart("spectrum_matched") in by_key) == spectrum
    n5 = next(r for r in primaries if r.claim == "N5")
    assert "lexical" in n5.extra["paired"] and "untrained" in n5.extra["paired"]
    for v in outcome.verdicts:
        print(f"{v.claim}: {v.verdict} ({v.reason})")
        assert v.verdict in VERDICTS

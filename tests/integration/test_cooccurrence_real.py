"""P5 against corpus PMI (``p5_corpus_pmi``, kind ``cooccurrence``) on the bundled SmolLM2-135M through the runner
with the battery's quick settings (120 words, one twin seed, the spectrum twin), run once; numbers are printed
for docs/RESULTS.md ("P5 against corpus PMI", which also has the full run's)."""

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
    suite = parse_suite(BATTERY.read_text(), str(BATTERY)).for_run(quick=True)
    keep = tuple(a for a in suite.analyses if a.id == "p5_corpus_pmi")
    assert len(keep) == 1
    small = replace(suite, analyses=keep, claims={c: r for c, r in suite.claims.items() if c == "P5"})
    start = time.perf_counter()
    result = run_suite(small, quick=True, progress=False)
    print(f"\nP5 corpus PMI quick on SmolLM2: {time.perf_counter() - start:.1f}s")
    for r in result.results:
        print(f"{r.test_id}: role={r.extra['role']} rho={r.statistic:.3f} effect={r.effect_size:.3f} "
              f"[{r.ci_low:.3f}, {r.ci_high:.3f}] p={r.p_value:.4g} pairs={r.n} words={r.n_groups}")
    return result


def test_rows_exist_with_both_twins_beside_the_primary(outcome):
    (record,) = outcome.records
    assert record.status == "ok", record.reason
    primary = next(r for r in outcome.results if r.extra.get("role") == "primary")
    assert primary.claim == "P5" and primary.key.method == "partial_spearman" and primary.site == "unembed"
    assert primary.n_groups == 120 and primary.n > 500  # scored pairs among the 120 words
    assert math.isfinite(primary.effect_size) and primary.ci_low <= primary.effect_size <= primary.ci_high
    keys = {r.key for r in outcome.results}
    for control in ("untrained", "spectrum_matched"):
        twin = primary.key.counterpart(control)
        assert twin in keys, control
        row = next(r for r in outcome.results if r.key == twin)
        # no learned geometry: the twins' token rows must not follow the corpus (the claim's must_fail)
        assert row.ci_low < 0.05, (control, row.effect_size, row.ci_low)
    exploratory = {r.key.method for r in outcome.results if r.extra.get("role") == "exploratory"}
    assert exploratory == {"spearman", "partial_spearman_freq_matched"}
    (verdict,) = outcome.verdicts
    print(f"P5: {verdict.verdict} ({verdict.reason})")
    assert verdict.verdict in VERDICTS

"""N6 (attention_pattern) on the bundled SmolLM2-135M through the runner, with the battery's quick settings (one
twin seed, the spectrum twin), run once; the numbers are printed for the report."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conceptspace.suite import parse_suite
from conceptspace.suite._runner import run_suite
from conceptspace.theory import NOT_TESTABLE, VERDICTS

BATTERY = Path(__file__).parents[2] / "probes" / "concept_space.toml"


@pytest.fixture(scope="module")
def outcome():
    suite = parse_suite(BATTERY.read_text(), str(BATTERY)).for_run(quick=True)
    keep = tuple(a for a in suite.analyses if a.claim == "N6")
    assert len(keep) == 1
    small = replace(suite, analyses=keep, claims={c: r for c, r in suite.claims.items() if c == "N6"})
    start = time.perf_counter()
    result = run_suite(small, quick=True, progress=False)
    print(f"\nN6 quick on SmolLM2: {time.perf_counter() - start:.1f}s; {result.timings['analyses_s']}")
    for r in result.results:
        print(f"{r.test_id}: role={r.extra['role']} R={r.statistic:.3f} effect={r.effect_size:.3f} "
              f"[{r.ci_low:.3f}, {r.ci_high:.3f}] p={r.p_value:.4g} "
              + " ".join(f"{k}={v:.3f}" for k, v in r.extra.items() if k.startswith(("kl_", "loss_", "recovered"))
                         and isinstance(v, float)))
    return result


def _by(outcome, control=None):
    return next(r for r in outcome.results if r.control == control and r.site == "layer.15")


def test_one_primary_with_controls_and_a_verdict(outcome):
    (record,) = outcome.records
    assert record.status == "ok", record.reason
    assert record.seconds < 60, record.seconds
    primary = _by(outcome)
    assert primary.extra["role"] == "primary" and primary.claim == "N6"
    assert math.isfinite(primary.effect_size) and primary.ci_low <= primary.effect_size <= primary.ci_high
    assert primary.p_adjusted is not None
    for control in ("untrained", "spectrum_matched", "induction"):
        assert primary.key.counterpart(control) in {r.key for r in outcome.results}, control
    (verdict,) = outcome.verdicts
    print(f"N6: {verdict.verdict} ({verdict.reason})")
    assert verdict.verdict in VERDICTS


def test_the_positive_control_and_the_verdict_agree(outcome):
    """SmolLM2 copies repeated random tokens (several nats better than on the permuted repeat). Whether the mean
    pattern at the blocks after the primary loses that advantage when the copy offset varies and keeps it when
    the offset is fixed decides whether the run can test the claim; the verdict must say what the control found."""
    check = _by(outcome).extra["copy_check"]
    print(check)
    assert check["advantage_clean_nats"] > 5.0 and list(check["blocks"]) == list(range(16, 30)), check
    assert check["fixed_offset_advantage_clean_nats"] > 1.0, check
    (verdict,) = outcome.verdicts
    assert (check["state"] == "failed") == (verdict.verdict == NOT_TESTABLE), (check, verdict.verdict)
    assert (check["fixed_offset_kept"] < 0.5) == ("not specific" in verdict.reason), (check, verdict.reason)


def test_kl_ordering_and_the_twins(outcome):
    """At the primary block the fixed pattern changes the output less than mean-ablation (0 = clean <= mean
    pattern <= ablate, in KL from the clean model) but not nothing; the untrained twin's near-uniform attention
    is data-independent, so there R is 1 up to rounding."""
    primary = _by(outcome)
    assert 0.0 < primary.extra["kl_mean_pattern"] < primary.extra["kl_ablate"]
    assert 0.0 < primary.statistic < 0.95
    untrained = _by(outcome, "untrained")
    assert untrained.statistic > 0.95 and untrained.extra["kl_mean_pattern"] < 0.01
    assert all(math.isfinite(r.statistic) and math.isfinite(r.ci_low) for r in outcome.results)

"""N6b (composition of contexts vs idioms) on the bundled SmolLM2-135M through the runner, with the battery's quick
settings (48 phrases, one twin seed, the spectrum twin), run once; the numbers are printed for the report.

What is asserted is what the measurement needs to be sound, each of which could fail: SmolLM2's tokenizer keeps
every word's tokens apart in the three contexts (no phrase excluded), the frames make the phrase matter (the
prediction after AB is not the prediction after B), the random twin shows no class difference (the strings alone
do not make idioms interact), and the statistics are finite, keyed and judged. The verdict itself is printed,
not asserted.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conceptspace.analyses import _composition as comp
from conceptspace.suite import parse_suite
from conceptspace.suite._runner import run_suite
from conceptspace.theory import VERDICTS

BATTERY = Path(__file__).parents[2] / "probes" / "concept_space.toml"


@pytest.fixture(scope="module")
def outcome():
    suite = parse_suite(BATTERY.read_text(), str(BATTERY)).for_run(quick=True)
    keep = tuple(a for a in suite.analyses if a.claim == "N6b")
    assert len(keep) == 1
    small = replace(suite, analyses=keep, claims={c: r for c, r in suite.claims.items() if c == "N6b"})
    start, cpu = time.perf_counter(), time.process_time()
    result = run_suite(small, quick=True, progress=False)
    print(f"\nN6b quick on SmolLM2: wall {time.perf_counter() - start:.1f}s, process CPU "
          f"{time.process_time() - cpu:.1f}s; {result.timings['analyses_s']}")
    return result


def test_composition_quick_on_smollm2(outcome):
    (record,) = outcome.records
    assert record.status == "ok", record.reason
    assert record.seconds < 90, record.seconds  # budget: < 30 s on an idle 2-core machine; the machine is shared
    for r in outcome.results:
        print(f"{r.test_id}: role={r.extra['role']} stat={r.statistic:.3f} effect={r.effect_size:.3f} "
              f"[{r.ci_low:.3f}, {r.ci_high:.3f}] p={r.p_value:.4g} draws={r.extra.get('n_permutations')}")
    (primary,) = [r for r in outcome.results if r.extra["role"] == "primary"]
    print({k: v for k, v in primary.extra.items() if k not in ("paired",)}, primary.extra.get("paired"))
    assert primary.extra["n_idiom"] == primary.extra["n_compositional"] == 24
    assert len(primary.extra["excluded_token_merge"]) == 0
    assert math.isfinite(primary.effect_size) and primary.ci_low <= primary.effect_size <= primary.ci_high
    assert primary.p_adjusted is not None and {"frequency", "untrained"} <= set(primary.extra["paired"])
    by_key = {r.key: r for r in outcome.results}
    twin = by_key[primary.key.counterpart("untrained")]
    assert abs(twin.effect_size) < 0.1 and abs(twin.extra["mean_abs_interaction_idiom"]) < 0.5
    assert primary.key.counterpart("spectrum_matched") in by_key
    (verdict,) = outcome.verdicts
    print(f"N6b: {verdict.verdict} ({verdict.reason}); {verdict.judgements[0].notes if verdict.judgements else ''}")
    assert verdict.verdict in VERDICTS


def test_the_phrase_changes_the_prediction():
    """After "The term red herring is a kind of" the model's next tokens are not those after "... herring ...":
    the interaction has something to measure (the same check for a literal phrase is printed beside)."""
    from conceptspace.models import load_model

    model = load_model("smollm2-135m")
    frame = comp.FRAMES[0]
    texts = [comp.fill(frame, w) for w in ("herring", "red herring", "apple", "red apple")]
    logp = comp.next_token_logprobs(model, texts)[0]
    top = [set(np.argsort(-row)[:10].tolist()) for row in logp]
    print("top-10 overlap B vs AB: idiom", len(top[0] & top[1]), "literal", len(top[2] & top[3]))
    assert len(top[0] & top[1]) < 5

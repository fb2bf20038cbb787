"""C2 against Park et al.'s protocol on SmolLM2 (issue 14): the path on the real tokenizer and unembedding.

Small draws (docs/RESULTS.md's numbers come from the suite runner with the battery's settings). Checked: the
single-token pairs Park et al. would keep, held-out projections far right of random pairs' and beyond the
re-paired null, the causal inner product bringing separable relations to random-direction |cos| where the
Euclidean one leaves them aligned, and the untrained twin showing no pairing-specific projection.
"""

from __future__ import annotations

import pytest

from conceptspace.analyses.geometry._park import GAP, POOLED, PROJECTION, SEPARABLE
from conceptspace.analyses.geometry._run_park import park_output, park_pairs
from conceptspace.concepts import load_concepts


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    from conceptspace.models import load_model

    return load_model("smollm2-135m")


def test_park_protocol_on_smollm2_google_analogy(model) -> None:  # type: ignore[no-untyped-def]
    cs = load_concepts("google_analogy/all")
    pairs = park_pairs(model, cs, max_per_relation=100)
    assert 350 < pairs.single.size < len(cs)  # 391 of 573 on SmolLM2's tokenizer (docs/RESULTS.md)
    out = park_output(model, cs, controls=[("untrained", 0, model.untrained(0))], n_permutations=19,
                      n_bootstrap=20, seed=0, n_random_pairs=500)

    def row(stat: str, geometry: str, control: str | None = None, words: str = "single_token"):  # type: ignore[no-untyped-def]
        return next(r for r in out.results if r.key.control == control and r.extra["relation"] == POOLED
                    and r.key.method == f"{stat}_{geometry}" and r.extra["words"] == words)

    auroc, gap = row(PROJECTION, "causal"), row(GAP, "causal")
    assert auroc.statistic > 0.98  # Park et al.'s histograms: counterfactual pairs right of random pairs
    assert gap.effect_size > 0.5 and gap.p_value <= 0.05  # and beyond the re-paired pairs
    assert row(GAP, "causal", "untrained").effect_size < 0.3
    causal, euclid = row(SEPARABLE, "causal"), row(SEPARABLE, "euclidean")
    assert causal.statistic < 0.06 < 0.12 < euclid.statistic
    assert causal.effect_size < 0.02  # no more aligned than directions of random pairs

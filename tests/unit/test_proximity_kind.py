"""The P5 kind on a tiny model: one primary test at the middle requested block, the last block a sanity check,
one untrained counterpart over twin seeds and one spectrum-matched counterpart on shared draws, the null
battery's shuffled contexts."""

from __future__ import annotations

import dataclasses

import pytest

from conceptspace.analyses import RunContext, get_kind
from conceptspace.analyses.kinds.proximity import ProximityParams
from conceptspace.errors import InvalidInputError

PARAMS = ProximityParams(dataset="truth_is_universal/animal_class", layers=[0, 1, 2], max_items=12)


@pytest.fixture(scope="module")
def context(tiny_models):
    model = tiny_models["llama"]
    return RunContext(model=model, twin=None, twins=(model.untrained(0), model.untrained(1)), twin_seeds=(0, 1),
                      spectrum_twin=model.untrained(7), claim="P5", n_permutations=19, n_bootstrap=30)


def test_roles_controls_and_replicates(context):
    out = get_kind("proximity").run(context, PARAMS)
    roles = [r.extra["role"] for r in out.results]
    primary = [r for r in out.results if r.extra["role"] == "primary"]
    assert len(primary) == 1 and primary[0].site == "layer.1" and primary[0].method == "cosine_vs_logp"
    assert all(r.extra["role"] == "sanity" for r in out.results if r.site == "layer.2")
    assert "exploratory" in roles and "control" in roles
    twins = [r for r in out.results if r.control == "untrained"]
    assert len({(r.site, r.method) for r in twins}) == len(twins)  # one counterpart per test, not one per seed
    twin = next(r for r in twins if r.key == primary[0].key.counterpart("untrained"))
    assert out.replicates[twin.key].shape == (2, 30) and len(twin.extra["per_seed"]) == 2
    spectrum = primary[0].key.counterpart("spectrum_matched")
    assert out.replicates[spectrum].shape == (30,) and out.replicates[primary[0].key].shape == (30,)
    assert primary[0].extra["n_permutations"] >= 19 and "p_mc_high" in primary[0].extra


def test_primary_site_and_the_last_block(context):
    chosen = get_kind("proximity").run(dataclasses.replace(context, primary_site="layer.0"), PARAMS)
    assert [r.site for r in chosen.results if r.extra["role"] == "primary"] == ["layer.0"]
    with pytest.raises(InvalidInputError, match="last block"):
        get_kind("proximity").run(dataclasses.replace(context, primary_site="layer.2"), PARAMS)


def test_null_battery_shuffles_contexts_against_their_distributions(context):
    real = get_kind("proximity").run(context, PARAMS).results
    null = get_kind("proximity").run(dataclasses.replace(context, null_seed=1), PARAMS).results
    real_primary = next(r for r in real if r.extra["role"] == "primary")
    null_primary = next(r for r in null if r.key == real_primary.key)
    assert null_primary.statistic != real_primary.statistic
    assert "shuffled" in null_primary.extra["null_battery"]
    identity = [r for r in null if r.method == "dot_vs_logp" and r.control == "identity"]
    assert identity and all(r.statistic == pytest.approx(1.0, abs=1e-6) for r in identity)  # not re-paired

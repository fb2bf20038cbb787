"""Issue 13 roles and controls for the geometry kinds, run through the kinds on a tiny model.

Each kind must return exactly one primary test (its declared metric at the primary site), ONE untrained
counterpart however many twin seeds there are (mean over seeds, per-seed effects listed), one spectrum-matched
counterpart, the paired replicates of those (and of the only-b baseline for analogies), and in a ``--null``
run a changed statistic under the same keys.
"""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses import RunContext, registry

PARAMS = {
    "clustering": {"dataset": "function_vectors/categories", "sites": ["unembed", "layer.1"], "max_per_class": 4,
                   "classes": None, "methods": ["kmeans"]},
    "similarity": {"dataset": "function_vectors/categories", "sites": ["unembed", "layer.1"], "max_per_class": 4},
    "relations": {"dataset": "google_analogy/family", "sites": ["unembed", "layer.1"]},
    "analogies": {"dataset": "google_analogy/family", "sites": ["unembed", "layer.1"], "max_per_relation": 6,
                  "methods": ["3cosadd", "3cosmul"]},
}
PRIMARY = {  # (site, method, statistic) of the primary test when primary_site = "layer.1"
    "clustering": ("layer.1", "kmeans", "ari"),
    "similarity": ("layer.1", "rsa_mantel_spearman", "spearman_rho"),
    "relations": ("layer.1", "mean_pairwise_cosine_euclidean", "mean_pairwise_cosine"),
    "analogies": ("layer.1", "3cosadd", "accuracy_minus_only_b"),
}


@pytest.fixture(scope="module")
def controls(tiny_models):
    model = tiny_models["llama"]
    return model, (model.untrained(0), model.untrained(1)), model.untrained(7)


def _run(kind: str, controls, *, with_controls: bool = True, **context):  # type: ignore[no-untyped-def]
    model, twins, spectrum = controls
    analysis = registry()[kind]
    if not with_controls:
        twins, spectrum = twins[:1], None
    ctx = RunContext(model=model, twin=twins[0], claim=analysis.claims[0], seed=0, n_permutations=19,
                     n_bootstrap=20, twins=twins, twin_seeds=(0, 1)[:len(twins)], spectrum_twin=spectrum, **context)
    return analysis.run(ctx, analysis.make_params(PARAMS[kind]))


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_one_primary_one_counterpart_per_control_and_paired_replicates(kind: str, controls) -> None:  # type: ignore[no-untyped-def]
    out = _run(kind, controls, primary_site="layer.1")
    roles = [r.extra["role"] for r in out.results]
    primary = [r for r in out.results if r.extra["role"] == "primary"]
    assert len(primary) == 1
    p = primary[0]
    assert (p.site, p.method, p.statistic_name) == PRIMARY[kind]
    assert "exploratory" in roles and set(roles) <= {"primary", "exploratory", "control", "baseline"}
    untrained = [r for r in out.results if r.key == p.key.counterpart("untrained")]
    spectrum = [r for r in out.results if r.key == p.key.counterpart("spectrum_matched")]
    assert len(untrained) == 1 and len(spectrum) == 1
    twin = untrained[0]
    assert twin.extra["role"] == "control" and list(twin.extra["twin_seeds"]) == [0, 1]
    assert twin.effect_size == pytest.approx(np.mean(twin.extra["per_seed"]))
    assert len(set(twin.extra["per_seed"])) == 2  # two different networks
    assert out.replicates[p.key].shape == (20,)
    assert out.replicates[twin.key].shape == (2, 20)  # one row per twin seed: the runner's two-level bootstrap
    assert out.replicates[spectrum[0].key].shape == (20,)
    for key in out.replicates:  # only the primary and its counterparts
        assert key.replace(control=None, model="trained") == p.key
    assert p.effect_size == pytest.approx(p.statistic - p.extra["null_mean"]) or kind == "analogies"
    assert {"n_permutations", "p_mc_low", "p_mc_high", "settled", "null_mean", "null_sd"} <= set(p.extra)


def test_only_b_is_the_analogy_baseline_with_replicates(controls) -> None:  # type: ignore[no-untyped-def]
    out = _run("analogies", controls)
    p = next(r for r in out.results if r.extra["role"] == "primary")
    base = next(r for r in out.results if r.key == p.key.counterpart("only_b"))
    assert base.extra["role"] == "baseline" and np.isnan(base.p_value)
    assert base.statistic == pytest.approx(p.extra["only_b_accuracy"])
    assert out.replicates[base.key].shape == (20,)


def test_the_default_primary_site_is_the_first_and_an_unknown_one_is_refused(controls) -> None:  # type: ignore[no-untyped-def]
    out = _run("clustering", controls)
    assert [r.site for r in out.results if r.extra["role"] == "primary"] == ["unembed"]
    with pytest.raises(Exception, match=r"primary site .layer\.2. is not among"):
        _run("clustering", controls, primary_site="layer.2")


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_the_null_battery_keeps_the_keys_and_changes_the_signal(kind: str, controls) -> None:  # type: ignore[no-untyped-def]
    real = {r.key: r for r in _run(kind, controls, with_controls=False).results}
    null = {r.key: r for r in _run(kind, controls, with_controls=False, null_seed=1).results}
    assert set(real) == set(null)
    moved = [k for k in real if real[k].control is None and real[k].statistic != null[k].statistic]
    assert moved

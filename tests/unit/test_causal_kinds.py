"""The causal kinds in a run (issue 13): one primary test, controls on every control model (one untrained
counterpart over twin seeds, one spectrum-matched), paired replicates, and the null battery's concept."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses import RunContext, registry
from conceptspace.analyses._base import CAUSAL_SMOKE_PARAMS
from conceptspace.analyses._causal_runs import causal_subjects
from conceptspace.stats import SPECTRUM_MATCHED, UNTRAINED


@pytest.fixture(scope="module")
def context(tiny_models):  # type: ignore[no-untyped-def]
    model = tiny_models["llama"]
    twins = (model.untrained(0), model.untrained(1))
    # a third re-initialisation stands in for the spectrum-matched twin: the kinds only need a control model
    return RunContext(model=model, twin=twins[0], twins=twins, twin_seeds=(0, 1), spectrum_twin=model.untrained(2),
                      claim="C5", seed=0, n_permutations=40, max_permutations=80, n_bootstrap=50)


@pytest.mark.parametrize("kind", ["steering", "derivatives", "erasure"])
def test_one_primary_and_one_counterpart_per_control(kind, context):
    analysis = registry()[kind]
    params = analysis.make_params({**analysis.smoke_params, "n_random": 6})
    output = analysis.run(context, params)
    roles = [r.extra["role"] for r in output.results]
    assert roles.count("primary") == 1
    primary = next(r for r in output.results if r.extra["role"] == "primary")
    assert primary.extra["n_permutations"] >= (6 if kind == "erasure" else 40)
    assert primary.extra["null_sd"] > 0 and "null_mean" in primary.extra
    untrained = [r for r in output.results if r.key == primary.key.counterpart(UNTRAINED)]
    spectrum = [r for r in output.results if r.key == primary.key.counterpart(SPECTRUM_MATCHED)]
    assert len(untrained) == 1 and len(spectrum) == 1
    assert [s["seed"] for s in untrained[0].extra["per_seed"]] == [0, 1]
    assert untrained[0].effect_size == pytest.approx(np.mean([s["effect"] for s in untrained[0].extra["per_seed"]]))
    assert all(r.extra["role"] == "control" for r in untrained + spectrum)
    reps = output.replicates
    assert reps[primary.key].shape == (50,)
    assert reps[untrained[0].key].shape == (2, 50)  # one row per twin seed: the runner resamples seeds
    assert reps[spectrum[0].key].shape == (50,)


def test_null_battery_concept_is_a_relabelling(context):
    import dataclasses

    analysis = registry()["steering"]
    params = analysis.make_params(CAUSAL_SMOKE_PARAMS)
    real = causal_subjects(context, params)[0]
    null = causal_subjects(dataclasses.replace(context, null_seed=1), params)[0]
    assert sorted(null.concept_set.labels) == sorted(real.concept_set.labels)
    assert not np.array_equal(null.concept_set.labels, real.concept_set.labels)
    assert not np.allclose(null.mass_mean_direction(), real.mass_mean_direction())


@pytest.mark.parametrize("dataset", ["vader_lexicon/polarity", "truth_is_universal/animal_class_polarity",
                                     "trilemma_city_locations/true_false"])
def test_fast_relabelling_is_null_labels(dataset):
    from conceptspace.analyses._causal_runs import relabeller
    from conceptspace.concepts import load_concepts, null_labels

    cs = load_concepts(dataset)
    relabel = relabeller(cs)
    for seed in (0, 1, 12345):
        np.testing.assert_array_equal(relabel(seed), null_labels(cs, seed).labels)

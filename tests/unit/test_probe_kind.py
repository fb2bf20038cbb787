"""The probe kind as the runner sees it: one primary test, exploratory layers with max-T, controls on shared
draws and resamples (replicates for paired differences), twins over seeds reported once, a null battery."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses import RunContext, registry
from conceptspace.analyses.kinds.probe import control_types, lexical_features, primary_site
from conceptspace.concepts import load_concepts

PARAMS = {"dataset": "truth_is_universal/animal_class_polarity", "layers": [0, 1], "max_items": 40, "n_splits": 3}


@pytest.fixture(scope="module")
def run(tiny_models):
    model = tiny_models["llama"]
    kind = registry()["probe"]
    params = kind.make_params({**{k: v for k, v in PARAMS.items()}, "position": "last", "probe": "ridge",
                               "controls": ["control_task", "untrained", "lexical"], "penalty": 1.0})

    def go(**context):
        ctx = RunContext(model=model, twin=None, claim="C4", seed=0, n_permutations=19, n_bootstrap=20,
                         twins=(model.untrained(0), model.untrained(1)), twin_seeds=(0, 1),
                         spectrum_twin=model.untrained(7), **context)
        return kind.run(ctx, params)

    return model, go


def test_one_primary_exploratory_layers_and_controls_on_shared_resamples(run):
    _, go = run
    out = go()
    roles = {(r.control, r.site): r.extra["role"] for r in out.results}
    assert roles[(None, "layer.1")] == "primary"  # the middle (upper) of the two requested layers
    assert roles[(None, "layer.0")] == "exploratory"
    assert roles[("control_task", "layer.1")] == "control"
    assert roles[("untrained", "layer.1")] == "control" and roles[("spectrum_matched", "layer.1")] == "control"
    assert roles[("lexical", "embed")] == "baseline"
    assert sum(r.extra["role"] == "primary" for r in out.results) == 1
    assert len(out.results.filter(control="untrained")) == 2  # one row per site, not per seed
    untrained = out.results.filter(control="untrained", site="layer.1")[0]
    assert [s["seed"] for s in untrained.extra["per_seed"]] == [0, 1]
    assert untrained.statistic == pytest.approx(np.mean([s["statistic"] for s in untrained.extra["per_seed"]]))
    primary = out.results.filter(control=None, site="layer.1")[0]
    assert "p_maxt" in primary.extra and primary.extra["p_maxt"] >= primary.p_value
    assert primary.effect_size == pytest.approx(primary.statistic - primary.extra["null_mean"])
    assert all(r.extra["n_permutations"] == primary.extra["n_permutations"] for r in out.results)
    reps = out.replicates
    assert reps[primary.key].shape == (20,)
    assert reps[primary.key.counterpart("untrained")].shape == (2, 20)
    for control in ("control_task", "spectrum_matched", "lexical"):
        assert reps[primary.key.counterpart(control)].shape == (20,)
    assert out.figure_data["primary_site"] == "layer.1"


def test_declared_primary_site_and_the_null_battery(run):
    _, go = run
    declared = go(primary_site="layer.0")
    assert declared.results.filter(control=None, site="layer.0")[0].extra["role"] == "primary"
    real = go().results.filter(control=None, site="layer.1")[0]
    null = go(null_seed=3).results.filter(control=None, site="layer.1")[0]
    assert null.key == real.key and null.statistic != real.statistic


def test_control_types_recur_across_groups_and_the_lexical_baseline_reads_the_words(tiny_models):
    model = tiny_models["llama"]
    sentences = load_concepts("truth_is_universal/animal_class_polarity")
    types, rule = control_types(model, sentences)
    assert rule == "last alphanumeric token of the text"
    groups = np.asarray(sentences.groups)
    shared = [t for t in np.unique(types) if np.unique(groups[types == t]).size > 1]
    assert len(shared) > 0.5 * np.unique(types).size  # types recur across groups, so across folds
    words = load_concepts("vader_lexicon/polarity")
    words = words.replace(data=words.data.select(list(range(60))))
    first, rule = control_types(model, words)
    assert rule == "first token of the word" and np.unique(first).size < 60
    lex = lexical_features(model, words)
    assert lex.shape == (60, model.d_model) and np.unique(lex.round(6), axis=0).shape[0] > 30


def test_primary_site_default_is_the_middle_requested_layer():
    assert primary_site(["layer.3", "layer.9", "layer.15", "layer.21", "layer.27"], None) == "layer.15"
    assert primary_site(["layer.9", "layer.21"], "layer.15") == "layer.15"
    with pytest.raises(Exception, match="layer"):
        primary_site(["layer.9"], "unembed")

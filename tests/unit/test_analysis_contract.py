"""The contract every analysis kind keeps, checked over the whole registry (like scikit-learn's
``parametrize_with_checks``): a kind added to ``conceptspace/analyses/kinds/`` is tested here with no edit.

Each kind runs its ``smoke_params`` on a tiny random llama and its untrained twin, through the same suite
validation a TOML file goes through, and must: yield keyed results that its claim owns, with unique ids, each
real test beside its twin counterpart; round-trip through results.json exactly; and draw its figures.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from conceptspace.analyses import AnalysisOutput, Figure, RunContext, param_fields, registry
from conceptspace.stats import ResultSet, is_sanity_check
from conceptspace.suite import parse_suite
from conceptspace.suite._document import _test_record, result_from_record
from conceptspace.suite._runner import _tag

KINDS = sorted(registry())


def _toml_value(value: object) -> str:
    return json.dumps(value)


def _suite_text(kind: str, claim: str, params: dict[str, object]) -> str:
    lines = ["[suite]", 'name = "contract"', f"[claims.{claim}]", "min_effect = 0.1", "[[analysis]]",
             f'id = "{kind}_smoke"', f'claim = "{claim}"', f'kind = "{kind}"']
    lines += [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def twin_pair(tiny_models):
    model = tiny_models["llama"]
    return model, model.untrained(0)


def test_the_registry_lists_every_kind_including_erasure_and_derivatives():
    assert {"probe", "clustering", "relations", "analogies", "proximity", "aggregation", "steering", "erasure",
            "derivatives"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_have_one_home(kind):
    """Every suite key is a field of the kind's frozen parameter class, with a type check and a default or
    marked required; the smoke parameters are valid suite input."""
    analysis = registry()[kind]
    params = analysis.Params
    assert dataclasses.is_dataclass(params) and params.__dataclass_params__.frozen  # type: ignore[attr-defined]
    fields = param_fields(params)
    assert fields, f"{kind} declares no parameters"
    assert set(analysis.smoke_params) <= set(fields)
    spec = parse_suite(_suite_text(kind, analysis.claims[0], analysis.smoke_params), "contract.toml").analyses[0]
    assert set(spec.params) == set(fields)  # the suite filled every default from the dataclass
    with pytest.raises(Exception, match="unknown key 'not_a_parameter'"):
        parse_suite(_suite_text(kind, analysis.claims[0], {**analysis.smoke_params, "not_a_parameter": 1}), "c.toml")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_runs_keys_round_trips_and_draws(kind, twin_pair):
    model, twin = twin_pair
    analysis = registry()[kind]
    claim = analysis.claims[0]
    spec = parse_suite(_suite_text(kind, claim, analysis.smoke_params), "contract.toml").analyses[0]
    context = RunContext(model=model, twin=twin, claim=claim, seed=0, n_permutations=9, n_bootstrap=9)
    output = analysis.run(context, analysis.make_params(spec.resolved(False, None)))
    assert isinstance(output, AnalysisOutput) and len(output.results) > 0
    results = _tag(output.results, spec)

    ids = [r.test_id for r in results]
    assert len(set(ids)) == len(ids)
    assert all(r.key.analysis == spec.id and r.claim == claim for r in results)
    by_key = {r.key: r for r in results}
    primary = [r for r in results if r.control is None and not is_sanity_check(r)]
    assert primary, "a kind must test something on the real model"
    for r in primary:  # the twin ran the same test: found by key, never by cutting strings
        assert r.key.counterpart("untrained") in by_key, r.test_id
        assert math.isfinite(r.effect_size) and 0 < r.p_value <= 1

    records = [json.loads(json.dumps(_test_record(r), allow_nan=False)) for r in results]
    back = ResultSet(result_from_record(rec) for rec in records)
    for a, b in zip(results, back, strict=True):
        assert a.key == b.key and a.test_id == b.test_id
        for name in ("statistic", "effect_size", "ci_low", "ci_high", "p_value"):
            x, y = getattr(a, name), getattr(b, name)
            assert (math.isnan(x) and math.isnan(y)) or x == y, (a.test_id, name)

    figures = analysis.figures(spec.id, f"{claim} {spec.id}", list(results), output.figure_data)
    assert figures and all(isinstance(f, Figure) and f.png.startswith(b"\x89PNG") for f in figures)
    assert len({f.name for f in figures}) == len(figures)


"""Secondary analyses (suite ``role = "secondary"``): reported beside their claim's verdict, never in the family.

Why these tests: C5's erasure and directional-derivative designs were run once before they joined the battery, so
they may only be shown as secondary evidence. The promise is that adding them cannot move C5's verdict (not its
m_c, not its thresholds, not its adjusted p) and that a reader of report.md / report.html / results.json cannot
mistake them for the verdict.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conceptspace.report import build_report, render_markdown
from conceptspace.report._build import SECONDARY_HEADING
from conceptspace.report._html import render_html
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.suite._document import results_document
from conceptspace.suite._runner import RunOutcome, run_suite
from conceptspace.suite._spec import SuiteError, load_suite, parse_suite
from conceptspace.theory._family import SECONDARY, as_secondary, correct_by_claim

PROBES = Path(__file__).resolve().parents[2] / "probes"

CAUSAL = """\
dataset = "vader_lexicon/polarity"
layer = 1
max_items = 24
positive = ["a", "e"]
negative = ["o", "u"]
prompts = ["The movie was", "Today I feel", "The food is", "My day was"]
n_random = 4
"""


def _suite_text(model: object, *, secondary: bool) -> str:
    text = (f'[suite]\nname = "secondary"\nmodel = "{model}"\ntwin_seeds = [0]\nspectrum_twin = false\n'
            "n_permutations = 19\nmax_permutations = 79\nn_bootstrap = 50\n\n"
            "[claims.C5]\nmin_effect = 0.1\nbeat = [\"untrained\"]\n\n"
            f'[[analysis]]\nid = "steer"\nclaim = "C5"\nkind = "steering"\nstrengths = [-1.0, 1.0]\n{CAUSAL}\n')
    if secondary:
        text += (f'[[analysis]]\nid = "erase"\nclaim = "C5"\nkind = "erasure"\nrole = "secondary"\n{CAUSAL}'
                 "n_splits = 3\nn_placebos = 9\n\n"
                 f'[[analysis]]\nid = "tcav"\nclaim = "C5"\nkind = "derivatives"\nrole = "secondary"\n{CAUSAL}\n')
    return text


@pytest.fixture(scope="module")
def runs(tiny_model_dirs) -> dict[bool, RunOutcome]:  # type: ignore[no-untyped-def]
    """The same suite on the tiny llama, without and with the two secondary analyses."""
    folder = tiny_model_dirs["llama"]
    return {flag: run_suite(parse_suite(_suite_text(folder, secondary=flag), "s.toml").for_run(), progress=False)
            for flag in (False, True)}


def test_secondary_rows_never_enter_the_family_and_leave_the_verdict_unchanged(runs):
    alone, both = runs[False], runs[True]
    assert all(r.status == "ok" for r in both.records), [r.reason for r in both.records]
    secondary = [r for r in both.results if r.extra.get("role") == SECONDARY]
    assert {r.key.analysis for r in secondary} == {"erase", "tcav"}
    assert all(r.p_adjusted is None and r.significant is None for r in secondary)
    assert not any(r.extra.get("role") == "primary" for r in both.results if r.key.analysis in ("erase", "tcav"))
    assert both.family["C5"].n_primary == alone.family["C5"].n_primary == 1
    assert both.family["C5"].p_adjusted == alone.family["C5"].p_adjusted
    (v_alone,), (v_both,) = alone.verdicts, both.verdicts
    assert (v_both.verdict, v_both.best_test_id, v_both.reason) == (v_alone.verdict, v_alone.best_test_id,
                                                                    v_alone.reason)
    # their controls are still paired with them (the report shows "minus controls")
    assert any(r.extra.get("paired") for r in secondary)


def test_the_report_shows_secondary_rows_under_the_claim_apart_from_the_verdict(runs):
    outcome = runs[True]
    data = build_report(outcome, with_figures=False)
    (section,) = data.sections
    assert {r["analysis"] for r in section.secondary} == {"erase", "tcav"}
    assert all(r["p"] != "-" and r["floor"] != "-" for r in section.secondary)
    erase = next(r for r in section.secondary if r["analysis"] == "erase")
    assert erase["floor"] == "0.1000"  # 9 fixed placebo erasers: p >= 1/10
    text = render_markdown(data)
    verdict_at = text.index("*Verdict.*", text.index("## C5"))
    heading_at = text.index(SECONDARY_HEADING)
    assert verdict_at < heading_at and "p (uncorrected)" in text[heading_at:]
    verdicts_table = text[text.index("## Verdicts"):text.index("## Multiple testing")]
    assert "erase" not in verdicts_table and "tcav" not in verdicts_table  # never the claim's best test
    assert "(erasure, secondary evidence, not in the verdict)" in text
    html = render_html(data)
    assert SECONDARY_HEADING in html and "p (uncorrected)" in html
    document = json.loads(json.dumps(results_document(outcome)))  # results.json's content
    roles = {a["id"]: a["role"] for a in document["analyses"]}
    assert roles == {"steer": "primary", "erase": SECONDARY, "tcav": SECONDARY}
    assert document["family"]["tests_by_role"][SECONDARY] == 2
    assert {a["id"]: a["role"] for a in document["suite"]["analyses"]} == roles


def test_a_failed_secondary_analysis_does_not_make_its_claim_not_run(tiny_model_dirs):
    text = _suite_text(tiny_model_dirs["llama"], secondary=True)
    at = text.index('id = "erase"')
    text = text[:at] + text[at:].replace("layer = 1\n", "layer = 99\n", 1)  # the tiny model has no block 99
    outcome = run_suite(parse_suite(text, "s.toml").for_run(), progress=False)
    erase = next(r for r in outcome.records if r.spec.id == "erase")
    assert erase.status == "failed"
    (verdict,) = outcome.verdicts
    assert verdict.verdict != "not run", verdict.reason


def test_as_secondary_keeps_every_row_out_of_the_family():
    def row(p: float, analysis: str) -> TestResult:
        return TestResult(key=TestKey(test="t", dataset="d", method="m", site="layer.1", analysis=analysis),
                          claim="C5", statistic_name="s", statistic=0.5, effect_size_name="e", effect_size=0.5,
                          ci_low=0.4, ci_high=0.6, p_value=p, extra={"role": "primary"})

    secondary = as_secondary(ResultSet([row(1e-6, "b")]))
    corrected, family = correct_by_claim(ResultSet([row(0.02, "a")]) + secondary)
    assert family["C5"].n_primary == 1 and family["C5"].p_value == pytest.approx(0.02)
    (b,) = [r for r in corrected if r.key.analysis == "b"]
    assert b.extra["role"] == SECONDARY and b.p_adjusted is None


def test_the_role_key_is_validated():
    base = ('[suite]\nname = "t"\n[claims.C5]\nmin_effect = 0.1\n[[analysis]]\nid = "e"\nclaim = "C5"\n'
            f'kind = "erasure"\n{CAUSAL}')
    assert parse_suite(base, "t.toml").analyses[0].role == "primary"
    assert parse_suite(base + 'role = "secondary"\n', "t.toml").analyses[0].secondary
    with pytest.raises(SuiteError, match=r"t\.toml:\d+: analysis\[0\]\.role: must be one of"):
        parse_suite(base + 'role = "exploratory"\n', "t.toml")
    with pytest.raises(SuiteError, match="a secondary analysis has no primary test"):
        parse_suite(base + 'role = "secondary"\nprimary = "layer@0.5"\n', "t.toml")


def test_the_battery_runs_c5s_other_designs_as_secondary_evidence_only():
    suite = load_suite(PROBES / "concept_space.toml")
    c5 = {a.id: a for a in suite.analyses if a.claim == "C5"}
    assert c5["c5_sentiment_steering"].role == "primary"
    assert c5["c5_sentiment_erasure"].secondary and c5["c5_sentiment_derivatives"].secondary
    erasure = c5["c5_sentiment_erasure"]
    # 39 fixed placebos in full and quick runs: the fewest with a 95% rank interval (p >= 1/40)
    assert erasure.resolved(False, None)["n_placebos"] == erasure.resolved(True, 48)["n_placebos"] == 39
    assert erasure.params["n_random"] >= 39  # matched random subspaces: enough for a 95% rank interval
    assert c5["c5_sentiment_derivatives"].params["n_random"] >= 50  # the number of random CAVs
    steering = c5["c5_sentiment_steering"].params
    for spec in (erasure, c5["c5_sentiment_derivatives"]):  # the steering test's concept, layer and targets
        for name in ("dataset", "layer", "max_items", "positive", "negative"):
            assert spec.params[name] == steering[name], name
    assert c5["c5_sentiment_derivatives"].params["prompts"] == steering["prompts"]
    assert erasure.params["prompts"] == steering["prompts"][:12]  # cut for cost (a full forward per placebo)


def test_erasure_can_fix_its_placebos_and_its_probe_permutations(tiny_models):  # type: ignore[no-untyped-def]
    """The battery's cost controls: ``n_placebos`` fixes the relabelled-LEACE placebos on the model and on every
    control (never extended, whatever the run's thresholds), ``probe_permutations`` the probe rows' permutations."""
    from conceptspace.analyses import RunContext, registry
    from conceptspace.analyses._base import CAUSAL_SMOKE_PARAMS

    model = tiny_models["llama"]
    context = RunContext(model=model, twin=model.untrained(0), claim="C5", seed=0, n_permutations=40,
                         max_permutations=640, n_bootstrap=30, thresholds=(1e-4,))  # would draw to the cap
    erasure = registry()["erasure"]
    params = erasure.make_params({**CAUSAL_SMOKE_PARAMS, "n_splits": 3, "n_placebos": 7, "probe_permutations": 9})
    results = erasure.run(context, params).results
    placebo_rows = [r for r in results if r.extra.get("placebo") == "relabelled_leace"]
    assert placebo_rows and all(r.extra["n_permutations"] == 7 for r in placebo_rows)
    probe_rows = [r for r in results if r.key.detail and r.key.detail[0].startswith("probe_")]
    assert probe_rows and all(r.extra["n_permutations"] == 9 for r in probe_rows)

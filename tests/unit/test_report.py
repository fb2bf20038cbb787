"""Reports from a synthetic run: verdict table first, self-contained HTML, JSON with the documented fields."""

from __future__ import annotations

import json

import pytest

from conceptspace.report import build_report, render_markdown, write_report
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.suite._runner import AnalysisRecord, RunOutcome, assign_roles, correct_family
from conceptspace.suite._spec import parse_suite
from conceptspace.theory._verdicts import judge_all

SUITE = """\
[suite]
name = "synthetic"
[claims.C4]
min_effect = 0.1
beat = ["untrained"]
[claims.P5]
min_effect = 0.05
[[analysis]]
id = "probe"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
"""


def _r(layer, effect, p, control=None, **extra):
    return TestResult(
        key=TestKey(test="probe", dataset="truth", method="RidgeProbe", site=f"layer.{layer}", position="last",
                    control=control, analysis="probe"),
        claim="C4", statistic_name="balanced_accuracy", statistic=0.5 + effect,
        effect_size_name="balanced_accuracy_minus_chance", effect_size=effect, ci_low=effect - 0.05,
        ci_high=effect + 0.05, p_value=p, n=100, extra=extra,
    )


@pytest.fixture()
def outcome():
    suite = parse_suite(SUITE, "synthetic.toml")
    rows = []
    for layer in (1, 2, 3):
        rows.append(_r(layer, 0.1 * layer, 0.001))
        rows.append(_r(layer, 0.01, 0.4, control="untrained"))
    results = correct_family(assign_roles(ResultSet(rows), "layer.3"), "holm", 0.05)
    record = AnalysisRecord(suite.analyses[0], dict(suite.analyses[0].params), status="ok", results=results)
    verdicts = judge_all(results, suite.claims, alpha=0.05, correction="holm",
                         not_run={"P5": "p5: analysis module not available"})
    model = {"name": "tiny", "architecture": "Llama", "n_layers": 4, "d_model": 8, "parameters": 1234,
             "weights_sha256": "ab" * 32}
    return RunOutcome(suite, False, model, {**model, "untrained_seed": 0}, [record], results, verdicts,
                      {"total_s": 1.0}, [])


def test_markdown_starts_with_verdicts_and_reports_not_run(outcome):
    text = render_markdown(build_report(outcome, with_figures=False))
    assert text.index("## Verdicts") < text.index("## C4")
    assert "**supported**" in text and "**not run**" in text and "analysis module not available" in text
    assert "0.300" in text and "[0.250, 0.350]" in text  # best effect and its CI
    assert "0.010 [-0.040, 0.060]" in text  # the twin beside it


def test_written_report_is_self_contained_and_json_documented(outcome, tmp_path):
    paths = write_report(outcome, tmp_path)
    html = paths["html"].read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count("data:image/png;base64,") >= 1
    assert list((tmp_path / "figures").glob("*.png"))
    doc = json.loads(paths["json"].read_text())
    assert doc["schema"] == "conceptspace.results" and doc["schema_version"] == 3
    family = doc["family"]
    assert family["tests_by_role"] == {"exploratory": 2, "primary": 1, "control": 3}
    assert "across claims" in family["procedure"] and doc["null_seed"] is None
    test = doc["tests"][0]
    for key in ("id", "claim", "dataset", "layer", "position", "method", "control", "statistic", "effect_size",
                "ci_low", "ci_high", "p", "p_adjusted", "significant", "n"):
        assert key in test
    verdicts = {v["claim"]: v for v in doc["verdicts"]}
    assert verdicts["C4"]["verdict"] == "supported" and verdicts["P5"]["verdict"] == "not run"
    assert "probe/probe/truth/layer.3/last/RidgeProbe/task" in verdicts["C4"]["test_ids"]
    assert test["key"]["site"] == test["site"] and test["key"]["analysis"] == "probe"
    assert doc["model"]["weights_sha256"] == "ab" * 32 and "timings" in doc and "packages" in doc


def test_the_header_names_the_exact_model_variant(outcome):
    from conceptspace.report._html import render_html
    from conceptspace.suite._runner import model_variant

    variant = model_variant("smollm2-135m")
    assert variant is not None and "SmolLM2-135M-Instruct" in variant and "Q4_1 dequantized to float32" in variant
    assert model_variant("/some/folder") is None
    outcome.model["variant"] = variant
    data = build_report(outcome, with_figures=False)
    assert "variant: SmolLM2-135M-Instruct" in render_markdown(data).splitlines()[2]
    assert "Q4_1 dequantized to float32" in render_html(data)


def test_the_paired_column_names_the_interval_each_control_was_judged_by():
    from conceptspace.report._build import paired_note

    extra = {"paired": {"untrained": {"difference": 0.2, "ci_low": 0.1, "ci_high": 0.3, "method": "signal_world"},
                        "control_task": {"difference": 0.1, "ci_low": 0.0, "ci_high": 0.2, "method": "nested_cv"},
                        "lexical": {"difference": 0.3, "ci_low": 0.2, "ci_high": 0.4}}}
    note = paired_note(extra)
    assert note == ("untrained 0.200 [0.100, 0.300] (signal world); control_task 0.100 [0.000, 0.200] (nested CV); "
                    "lexical 0.300 [0.200, 0.400]")

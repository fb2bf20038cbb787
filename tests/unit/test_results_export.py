"""Results a researcher can take away: results.json read back exactly (by ``load_results`` and by
``ResultSet.from_json``), flat columns for the numbers hidden in ``extra``, CSV and Parquet files, short reprs."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest

import conceptspace
from conceptspace.errors import ConceptspaceError, InvalidInputError
from conceptspace.stats import ResultSet, TestKey, TestResult
from conceptspace.suite import load_results, parse_suite
from conceptspace.suite._runner import run_suite

SUITE = """
[suite]
name = "export_check"
model = "{model}"
seed = 0
n_permutations = 19
n_bootstrap = 20

[claims.C4]
min_effect = 0.1
beat = ["untrained", "lexical", "control_task"]

[claims.C1]
min_effect = 0.1
beat = ["untrained"]

[[analysis]]
id = "probe"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
layers = [0, 1]
max_items = 40
controls = ["control_task", "untrained", "lexical"]

[[analysis]]
id = "clusters"
claim = "C1"
kind = "clustering"
dataset = "function_vectors/categories"
"""


@pytest.fixture(scope="module")
def run(tiny_model_dirs, tmp_path_factory):  # type: ignore[no-untyped-def]
    from conceptspace.report import write_report

    suite = parse_suite(SUITE.format(model=tiny_model_dirs["llama"]), "export_check.toml").for_run()
    outcome = run_suite(suite, progress=False)
    assert all(r.status == "ok" for r in outcome.records), [(r.spec.id, r.reason) for r in outcome.records]
    paths = write_report(outcome, tmp_path_factory.mktemp("report"))
    return outcome, paths["json"]


def _records(results: ResultSet) -> list[dict[str, object]]:
    """Every field of every result (NaN as None, so that equal records compare equal)."""
    return [r.to_dict() for r in results]


def test_results_json_round_trips_every_field_through_every_reader(run):
    outcome, path = run
    expected = _records(outcome.results)
    assert len(expected) > 10 and any(r.p_adjusted is not None for r in outcome.results)
    for loaded in (load_results(path), conceptspace.load_results(path), ResultSet.from_json(path),
                   ResultSet.from_json(str(path)), ResultSet.from_json(path.read_text(encoding="utf-8"))):
        assert _records(loaded) == expected
        assert [r.key for r in loaded] == [r.key for r in outcome.results]


def test_from_json_still_reads_its_own_output_and_refuses_other_json(run, tmp_path):
    outcome, _ = run
    assert _records(ResultSet.from_json(outcome.results.to_json())) == _records(outcome.results)
    with pytest.raises(InvalidInputError, match="neither"):
        ResultSet.from_json('{"rows": []}')
    with pytest.raises(InvalidInputError, match=r"not a conceptspace results\.json"):
        ResultSet.from_json('{"schema": "something.else"}')
    with pytest.raises(FileNotFoundError, match="neither JSON text nor an existing file"):
        ResultSet.from_json(str(tmp_path / "missing.json"))


def test_flat_frame_has_selectivity_twin_score_and_null_as_columns(run):
    outcome, _ = run
    frame = outcome.results.to_frame()
    for column in ("selectivity", "selectivity_ci_low", "selectivity_ci_high", "twin_score", "null_mean",
                   "null_sd"):
        assert frame[column].dtype == np.float64, column
    assert "extra" in frame.columns  # everything else stays reachable
    for row, r in zip(frame.itertuples(), outcome.results, strict=True):
        paired = (r.extra.get("paired") or {}).get("control_task")
        if paired:  # selectivity is the paired difference task - control task the verdict judges
            assert row.selectivity == paired["difference"]
            assert (row.selectivity_ci_low, row.selectivity_ci_high) == (paired["ci_low"], paired["ci_high"])
        elif "selectivity" in r.extra:
            assert row.selectivity == r.extra["selectivity"]
        else:
            assert math.isnan(row.selectivity)
        if "null_mean" in r.extra:
            assert (row.null_mean, row.null_sd) == (r.extra["null_mean"], r.extra["null_sd"])
    assert frame["selectivity"].notna().sum() >= 1 and frame["null_mean"].notna().sum() >= 1
    assert "selectivity" not in outcome.results.to_frame(flat=False).columns


def test_csv_and_parquet_hold_the_frame(run, tmp_path):
    outcome, _ = run
    frame = outcome.results.to_frame()
    from_csv = pd.read_csv(outcome.results.to_csv(tmp_path / "r.csv"))
    from_parquet = pd.read_parquet(outcome.results.to_parquet(tmp_path / "r.parquet"))
    for back in (from_csv, from_parquet):
        assert list(back.columns) == list(frame.columns)
        assert list(back["test_id"]) == list(frame["test_id"])
        np.testing.assert_array_equal(back["selectivity"].to_numpy(), frame["selectivity"].to_numpy())
        np.testing.assert_array_equal(back["p_value"].to_numpy(), frame["p_value"].to_numpy())
        assert [json.loads(e) for e in back["extra"]] == [r.to_dict()["extra"] for r in outcome.results]


def test_parquet_without_pyarrow_names_the_extra(run, tmp_path, monkeypatch):
    outcome, _ = run
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(ConceptspaceError, match=r"conceptspace\[parquet\]"):
        outcome.results.to_parquet(tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()


def _result(name: str, **extra: object) -> TestResult:
    return TestResult(key=TestKey(test="probe", dataset=name, method="m"), claim=None, statistic_name="acc",
                      statistic=0.9, effect_size_name="acc-chance", effect_size=0.4, ci_low=0.3, ci_high=0.5,
                      p_value=0.01, extra=extra)


def test_repr_is_short_and_html_is_escaped():
    results = ResultSet([_result(f"d{i}") for i in range(40)] + [_result("<script>x</script>")]).correct()
    text = repr(results)
    assert len(text.splitlines()) <= 7 and "41 results" in text and "correction=holm" in text
    assert "36 more" in text
    page = ResultSet([_result("<script>x</script>"), _result("plain")])._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and page.count("<tr>") == 3
    assert "20 more" not in page and "21 more" in results._repr_html_()


def test_the_committed_reference_results_round_trip_exactly():
    """ResultSet.from_json on the reference report's results.json gives back every field of every test record."""
    import json
    from pathlib import Path

    from conceptspace.stats import ResultSet

    path = Path(__file__).resolve().parents[2] / "reports" / "smollm2-135m" / "results.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    results = ResultSet.from_json(path)
    assert len(results) == len(document["tests"]) > 100
    renamed = {"id": "test_id", "p": "p_value"}
    for result, record in zip(results, document["tests"], strict=True):
        fields = json.loads(json.dumps(result.to_dict()))  # strict JSON: what results.json holds
        for name, value in record.items():
            if name != "sanity_check":
                assert fields[renamed.get(name, name)] == value, (record["id"], name)

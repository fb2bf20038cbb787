"""Every bundled suite runs with --quick on the bundled 6-block BERT encoder (MiniLM-L6), not only on SmolLM2.

The suites name layers by depth (probes/README.md), so none of them may fail on a model of another depth; what
an encoder cannot take (next-token tests, the logit lens, A6's final context vector) must be recorded as "not
applicable" with its reason, and the run must still exit 0. About 25 s on two CPU cores for all six suites.
"""

from __future__ import annotations

import json

import pytest

from conceptspace.cli import main
from conceptspace.resources import probes_dir

SUITES = sorted(p.name for p in probes_dir().glob("*.toml"))
#: kinds that need an LM head or a final norm, which a BERT encoder lacks
NEEDS_A_DECODER = {"steering", "proximity", "aggregation", "icl_narrowing", "function_vector", "self_mapping",
                   "filtering", "composition", "attention_pattern", "erasure", "derivatives"}


@pytest.mark.parametrize("suite", SUITES)
def test_bundled_suite_runs_quick_on_minilm(suite, tmp_path, capsys):
    out = tmp_path / "report"
    status = main(["run", str(probes_dir() / suite), "--model", "minilm-l6", "--quick", "--twin", "config",
                   "--out", str(out), "--quiet"])
    assert status == 0, capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["model"]["n_layers"] == 6
    n_blocks = doc["model"]["n_layers"]
    for analysis in doc["analyses"]:
        if analysis["kind"] in NEEDS_A_DECODER:
            assert analysis["status"] == "not applicable", analysis
            assert "minilm-l6" in analysis["reason"] and analysis["n_tests"] == 0
            continue
        assert analysis["status"] == "ok" and analysis["n_tests"] > 0, analysis
        for site in analysis["sites"]:
            assert site in ("unembed", "embed") or int(site.removeprefix("layer.")) < n_blocks, site
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "failed" not in report

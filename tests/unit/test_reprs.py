"""What ``print(x)`` and a notebook show: a few lines that describe the object, never its arrays or bytes."""

from __future__ import annotations

import numpy as np

from conceptspace.activations import extract
from conceptspace.report import build_report
from conceptspace.suite import parse_suite
from conceptspace.suite._runner import run_suite

TEXTS = ["Paris is a city", "a dog barks", "the sky is blue", "<b>bold</b> & more"]


def test_activations_repr_names_sites_and_shapes_not_values(tiny_models):
    model = tiny_models["llama"]
    cached = extract(model, TEXTS, sites="all", progress=False)
    memory = extract(model, TEXTS, sites=["layer.0", "layer.1"], cache=False, progress=False)
    text = repr(cached)
    assert len(text.splitlines()) <= 8
    assert "4 items" in text and "position='last'" in text and "float32" in text and "cached at" in text
    assert f"layer.0: (4, {model.d_model})" in text
    assert str(np.asarray(cached["layer.0"])[0, 0])[:6] not in text.replace(str(cached.folder), "")
    assert "in memory (not cached)" in repr(memory) and "layer.1" in repr(memory)
    page = cached._repr_html_()
    assert page.count("<tr>") == len(cached.sites) + 1 and "layer.0" in page


def test_report_data_repr_lists_verdicts_and_escapes_html(tiny_model_dirs):
    suite = parse_suite(f"""
[suite]
name = "repr_check"
model = "{tiny_model_dirs['llama']}"
seed = 0
n_permutations = 9
n_bootstrap = 9
[claims.C1]
min_effect = 0.1
beat = ["untrained"]
[[analysis]]
id = "clusters"
claim = "C1"
kind = "clustering"
dataset = "function_vectors/categories"
""", "repr_check.toml").for_run()
    data = build_report(run_suite(suite, progress=False), with_figures=False)
    text = repr(data)
    assert text.startswith("ReportData(") and "C1:" in text and len(text.splitlines()) == 1 + len(data.verdict_rows)
    data.verdict_rows[0]["title"] = "<img src=x onerror=alert(1)>"
    page = data._repr_html_()
    assert "<img" not in page and "&lt;img" in page

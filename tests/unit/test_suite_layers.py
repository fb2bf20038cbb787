"""Suites name layers by depth: the parser accepts fractions (and refuses what is neither a block nor a depth),
``--layers`` replaces every analysis's layers, and the run records what it did."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from conceptspace.cli import _layers_argument, main
from conceptspace.suite._spec import SuiteError, parse_suite, single_layer

HEAD = """\
[suite]
name = "t"

[claims.C4]
min_effect = 0.1
beat = ["untrained"]

[claims.C5]
min_effect = 0.1

[claims.C1]
min_effect = 0.1
"""

PROBE = """
[[analysis]]
id = "probe"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
layers = {layers}
quick = {{ layers = [0.5] }}
"""

STEER = """
[[analysis]]
id = "steer"
claim = "C5"
kind = "steering"
dataset = "vader_lexicon/polarity"
layer = {layer}
positive = [" good"]
negative = [" bad"]
prompts = ["The movie was"]
"""

CLUSTER = """
[[analysis]]
id = "clusters"
claim = "C1"
kind = "clustering"
dataset = "function_vectors/categories"
sites = {sites}
"""


def suite_text(layers="[0.1, 0.5, 1.0]", layer="0.5", sites='["unembed", "layer@0.5"]'):
    return HEAD + PROBE.format(layers=layers) + STEER.format(layer=layer) + CLUSTER.format(sites=sites)


def test_parser_accepts_fractions_ints_and_depth_sites():
    suite = parse_suite(suite_text(layers="[0.0, 3, -1, 1.0]", layer="-1"))
    by_id = {a.id: a for a in suite.analyses}
    assert by_id["probe"].params["layers"] == [0.0, 3, -1, 1.0]
    assert by_id["probe"].quick == {"layers": [0.5]}
    assert by_id["steer"].params["layer"] == -1
    assert by_id["clusters"].params["sites"] == ["unembed", "layer@0.5"]
    assert parse_suite(suite_text(layers='"all"', layer="0.5")).analyses[0].params["layers"] == "all"


@pytest.mark.parametrize(
    ("text", "key"),
    [(suite_text(layers="[0.5, 1.5]"), "analysis[0].layers"),
     (suite_text(layers="[]"), "analysis[0].layers"),
     (suite_text(layer="2.0"), "analysis[1].layer"),
     (suite_text(layer='"middle"'), "analysis[1].layer"),
     (suite_text(sites='["layer@1"]'), "analysis[2].sites"),
     (suite_text(sites='["layer@2.0"]'), "analysis[2].sites")],
)
def test_parser_refuses_what_is_neither_a_block_nor_a_depth(text, key):
    with pytest.raises(SuiteError, match=r"<suite>:\d+: " + re.escape(key) + ": must be"):
        parse_suite(text)


def test_layers_override_replaces_layers_quick_choices_and_the_single_layer():
    suite = parse_suite(suite_text()).for_run(quick=True, layers=[0.25, 0.5, 0.75])
    by_id = {a.id: a for a in suite.analyses}
    assert by_id["probe"].resolved(True, None)["layers"] == [0.25, 0.5, 0.75]  # --quick's [0.5] gives way
    assert by_id["probe"].resolved(False, None)["layers"] == [0.25, 0.5, 0.75]
    assert by_id["steer"].resolved(True, None)["layer"] == 0.5
    assert by_id["clusters"].params["sites"] == ["unembed", "layer@0.5"]  # sites lists are left as written
    record = suite.to_dict()
    assert record["layers"] == [0.25, 0.5, 0.75]
    assert [a["params"]["layers"] for a in record["analyses"] if a["id"] == "probe"] == [[0.25, 0.5, 0.75]]
    assert parse_suite(suite_text()).for_run().to_dict()["layers"] is None


def test_single_layer_takes_the_middle_value_written():
    assert single_layer([0.25, 0.5, 0.75]) == 0.5
    assert single_layer([3, 9]) == 3  # the earlier of the two middle ones
    assert single_layer([-1]) == -1
    assert single_layer("all") == 0.5


def test_override_refuses_what_is_not_layers():
    with pytest.raises(SuiteError, match="--layers must be"):
        parse_suite(suite_text()).for_run(layers=[2.5])


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0.25,0.5,0.75", [0.25, 0.5, 0.75]), ("3, -1", [3, -1]), ("all", "all"), ("1", [1]), ("1.0", [1.0]),
     ("0,0.5", [0, 0.5])],
)
def test_layers_argument(text, parsed):
    value = _layers_argument(text)
    assert value == parsed
    assert [type(x) for x in value] == [type(x) for x in parsed] if value != "all" else True


@pytest.mark.parametrize("text", ["1.5", "-0.5", "middle", "0.5,,", "nan"])
def test_layers_argument_refuses_with_the_rule(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"fraction|layer"):
        _layers_argument(text)


def test_run_with_layers_records_the_override_and_the_sites_read(tiny_model_dirs, tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        f'[suite]\nname = "tiny"\nmodel = "{tiny_model_dirs["llama"]}"\nn_permutations = 19\nn_bootstrap = 20\n\n'
        '[claims.C4]\nmin_effect = 0.1\nbeat = []\n\n'
        '[[analysis]]\nid = "probe"\nclaim = "C4"\nkind = "probe"\ndataset = "truth_is_universal/animal_class"\n'
        'layers = [0]\nmax_items = 24\ncontrols = []\n'
    )
    out = tmp_path / "report"
    assert main(["run", str(suite), "--layers", "0.0,1.0", "--twin", "none", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "results.json").read_text())
    n_layers = doc["model"]["n_layers"]
    assert n_layers >= 2
    assert doc["suite"]["layers"] == [0.0, 1.0]
    assert doc["analyses"][0]["params"]["layers"] == [0.0, 1.0]
    assert doc["analyses"][0]["sites"] == ["layer.0", f"layer.{n_layers - 1}"]
    depths = {t["site"]: t["extra"]["depth"] for t in doc["tests"]}
    assert depths == {"layer.0": 0.0, f"layer.{n_layers - 1}": 1.0}
    report = (out / "report.md").read_text()
    assert "in this run. Layers set on the command line (--layers 0.0, 1.0)" in report
    assert f"read at layer.0, layer.{n_layers - 1}" in report
    assert "Layers set on the command line (--layers 0.0, 1.0)" in (out / "report.html").read_text()

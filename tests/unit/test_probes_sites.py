"""The probing API reads an Activations object's sites: each result is labelled with the site its row was read at
(embed, layer.<i>, final_norm) and carries its relative depth; row labels that would be a guess are errors."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.activations import Activations
from conceptspace.analyses.probes import RidgeProbe
from conceptspace.analyses.probes._evaluation import (
    cross_validate_layers,
    layer_rows,
    probe_layers,
    probe_with_controls,
    side_by_side,
)
from conceptspace.errors import InvalidInputError

N_BLOCKS, N_ITEMS, D = 4, 80, 6
SITES = ("embed", *(f"layer.{i}" for i in range(N_BLOCKS)), "final_norm")
FAST = {"n_permutations": 19, "n_bootstrap": 20, "n_splits": 4, "ncv_repeats": 4}


def activations(signal_site: str = "layer.2", seed: int = 0) -> tuple[Activations, np.ndarray, np.ndarray]:
    """Noise at every site, the label planted at one: a mislabelled row shows up as the wrong best site."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], N_ITEMS // 2)
    groups = np.arange(N_ITEMS) // 2
    arrays = {}
    for site in SITES:
        x = rng.standard_normal((N_ITEMS, D)).astype(np.float32)
        if site == signal_site:
            x[:, 0] += 4.0 * (2 * y - 1)
        arrays[site] = x
    acts = Activations(sites=SITES, position="last", n_items=N_ITEMS, d_model=D,
                       model={"name": "toy", "n_layers": N_BLOCKS}, arrays=arrays)
    return acts, y, groups


def test_results_are_labelled_with_the_real_sites_and_depths():
    acts, y, groups = activations("final_norm")
    results, cv = probe_layers(RidgeProbe(), acts, y, groups, dataset="toy", **FAST)
    assert [r.site for r in results] == list(SITES) == list(cv.sites)
    best = max(results, key=lambda r: r.statistic)
    assert best.site == "final_norm" and best.layer is None  # not "layer.5" as a row number would say
    depths = {r.site: r.extra.get("depth") for r in results}
    assert depths == {"embed": None, "layer.0": 0.0, "layer.1": pytest.approx(1 / 3), "layer.2": pytest.approx(2 / 3),
                      "layer.3": 1.0, "final_norm": None}
    assert all(r.position == "last" for r in results)  # read from the Activations


def test_the_same_numbers_as_the_stacked_array():
    acts, y, groups = activations()
    from_acts, _ = probe_layers(RidgeProbe(), acts, y, groups, dataset="toy", layers=["layer.1", "layer.2"], **FAST)
    from_array, _ = probe_layers(RidgeProbe(), acts.stack(["layer.1", "layer.2"]), y, groups, dataset="toy",
                                 layers=[1, 2], **FAST)
    assert [r.statistic for r in from_acts] == [r.statistic for r in from_array]
    assert [r.p_value for r in from_acts] == [r.p_value for r in from_array]
    assert [r.site for r in from_acts] == [r.site for r in from_array] == ["layer.1", "layer.2"]


@pytest.mark.parametrize(
    ("layers", "sites"),
    [(["embed", "final_norm"], ["embed", "final_norm"]), ([0.5, -1], ["layer.2", "layer.3"]),
     (["layer@0.0", "layer.-1"], ["layer.0", "layer.3"]), ("all", ["layer.0", "layer.1", "layer.2", "layer.3"]),
     ([1], ["layer.1"])],
)
def test_layers_choose_sites_of_an_activations(layers, sites):
    acts, y, groups = activations()
    assert list(layer_rows(acts, layers).sites) == sites
    cv = cross_validate_layers(RidgeProbe(), acts, y, groups, layers=layers, n_splits=4)
    assert list(cv.sites) == sites and cv.scores.shape == (len(sites),)


def test_one_int_per_stacked_row_is_refused():
    acts, _, _ = activations()
    with pytest.raises(InvalidInputError, match=r"one int per stacked row.*embed and final_norm would be mislabelled"):
        layer_rows(acts, list(range(len(SITES))))
    some = Activations(sites=("layer.0", "layer.2"), position="last", n_items=N_ITEMS, d_model=D,
                       model={"n_layers": N_BLOCKS}, arrays={"layer.0": acts["layer.0"], "layer.2": acts["layer.2"]})
    assert layer_rows(some, [0, 2]).sites == ("layer.0", "layer.2")  # block indices that happen to be two
    assert layer_rows(some, [2, 0]).sites == ("layer.2", "layer.0")


def test_sites_not_extracted_and_repeats_are_refused():
    acts, _, _ = activations()
    small = Activations(sites=("layer.1",), position="last", n_items=N_ITEMS, d_model=D,
                        model={"n_layers": N_BLOCKS}, arrays={"layer.1": acts["layer.1"]})
    with pytest.raises(InvalidInputError, match=r"layer.2 were not extracted; these Activations hold layer.1"):
        layer_rows(small, [0.5])
    with pytest.raises(InvalidInputError, match=r"ambiguous labels: layer\.3"):
        layer_rows(acts, [1.0, -1])
    with pytest.raises(InvalidInputError, match="does not exist"):
        layer_rows(acts, [7])


def test_array_rows_must_match_the_model_or_be_named():
    acts, y, groups = activations()
    stacked = acts.stack()  # 6 rows: embed, 4 blocks, final_norm
    with pytest.raises(InvalidInputError, match="X has 6 rows but the model has 4 blocks"):
        probe_layers(RidgeProbe(), stacked, y, groups, dataset="toy", n_layers=N_BLOCKS, **FAST)
    with pytest.raises(InvalidInputError, match="names 4 rows but X has 6"):
        layer_rows(stacked, [0, 1, 2, 3])
    with pytest.raises(InvalidInputError, match="pass n_layers="):
        layer_rows(stacked[:1], [0.5])
    with pytest.raises(InvalidInputError, match="'oops' is not a site name"):
        layer_rows(stacked[:1], ["oops"])
    named = layer_rows(stacked, list(SITES), n_layers=N_BLOCKS)
    assert named.sites == SITES
    results, _ = probe_layers(RidgeProbe(), stacked, y, groups, dataset="toy", layers=list(SITES), n_layers=N_BLOCKS,
                              **FAST)
    assert [r.site for r in results] == list(SITES) and results[3].extra["depth"] == pytest.approx(2 / 3)
    plain, _ = probe_layers(RidgeProbe(), stacked[1:5], y, groups, dataset="toy", **FAST)
    assert [r.site for r in plain] == [f"layer.{i}" for i in range(4)] and "depth" not in plain[0].extra


def test_controls_read_the_twin_at_the_same_sites():
    acts, y, groups = activations("layer.2")
    twin, _, _ = activations("nowhere", seed=1)
    lexical = np.random.default_rng(2).standard_normal((N_ITEMS, D))
    rs = probe_with_controls(RidgeProbe(), acts, y, groups, dataset="toy", layers=["embed", 0.5], X_untrained=twin,
                             X_lexical=lexical, **FAST)
    task = rs.filter(control=None)
    untrained = rs.filter(control="untrained")
    assert [r.site for r in task] == [r.site for r in untrained] == ["embed", "layer.2"]
    assert task[1].extra["depth"] == pytest.approx(2 / 3) and task[1].statistic > untrained[1].statistic + 0.3
    assert task[1].extra["untrained_score"] == untrained[1].statistic
    assert [r.site for r in rs.filter(control="lexical")] == ["embed"]
    table = side_by_side(rs)  # rows are sites in the order probed: embed keeps its own row
    assert list(table.index) == ["embed", "layer.2", "lexical"]
    assert table.loc["layer.2", "task"] == task[1].statistic and table.loc["embed", "task"] == task[0].statistic
    assert table.loc["lexical", "lexical"] == rs.filter(control="lexical")[0].statistic


def test_side_by_side_orders_blocks_by_depth_not_as_text():
    acts, y, groups = activations()
    many = Activations(sites=tuple(f"layer.{i}" for i in (2, 10)), position="last", n_items=N_ITEMS, d_model=D,
                       model={"n_layers": 12}, arrays={"layer.2": acts["layer.1"], "layer.10": acts["layer.2"]})
    rs, _ = probe_layers(RidgeProbe(), many, y, groups, dataset="toy", **FAST)
    assert list(side_by_side(rs).index) == ["layer.2", "layer.10"]
    assert [r.extra["depth"] for r in rs] == [pytest.approx(2 / 11), pytest.approx(10 / 11)]


def test_activations_are_indexed_by_depth_too():
    acts, _, _ = activations()
    assert acts[0.5] is acts["layer@0.5"] is acts["layer.2"]
    assert acts[1.0] is acts[-1] is acts["layer.3"]
    assert acts.stack([0.0, "final_norm"]).shape == (2, N_ITEMS, D)
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        acts[1.5]
    with pytest.raises(InvalidInputError, match="decimal point"):
        acts["layer@1"]

"""Figures are matplotlib objects a researcher can restyle: data in (ResultSet, frame, SteeringResult), Figure
out, ``ax=`` honoured, integer layer ticks, legends beside the data, no label outside the canvas, and the
steering placebo band actually drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure as MplFigure
from matplotlib.text import Text

from conceptspace.analyses.causal._steering import steering_test
from conceptspace.analyses.figures import NothingToDraw, dose_response, layer_curves, paired_bars, to_png
from conceptspace.errors import InvalidInputError
from conceptspace.models._load import load_model
from conceptspace.stats import ResultSet, TestKey, TestResult
from tests.unit.planted import BAD, GOOD, NEUTRAL, make_planted_model, prompts


def _result(layer: int | None, control: str | None, effect: float, *, dataset: str = "sentiment",
            detail: tuple[str, ...] = ()) -> TestResult:
    key = TestKey(test="probe", dataset=dataset, method="RidgeProbe",
                  site=None if layer is None else f"layer.{layer}", position="last", detail=detail,
                  control=control, analysis="c4_long_analysis_name")
    return TestResult(key=key, claim="C4", statistic_name="acc", statistic=effect, effect_size_name="acc-chance",
                      effect_size=effect, ci_low=effect - 0.05, ci_high=effect + 0.05, p_value=0.01)


def _curves() -> ResultSet:
    rows = [_result(layer, control, 0.1 * layer + shift) for layer in (1, 2)
            for control, shift in ((None, 0.3), ("untrained", 0.0), ("control_task", 0.1))]
    return ResultSet(rows).correct()


def _bars() -> ResultSet:
    details = [("unembed", "kmeans", m) for m in ("adjusted_rand_index", "normalized_mutual_information")]
    details += [("layer.15", "true_labels", "silhouette_cosine_with_a_very_long_metric_name")]
    rows = []
    for d in details:
        for control, effect in ((None, 0.4), ("untrained", 0.01)):
            rows.append(_result(None, control, effect, dataset="function_vectors/categories", detail=d))
    return ResultSet(rows)


def _drawn_texts(fig: MplFigure) -> list[Text]:
    """Every text matplotlib draws: titles, axis labels, legend entries, and the tick labels of ticks inside the
    view limits (a locator also returns ticks beyond them, which are never drawn)."""
    texts = [t for t in fig.findobj(Text) if not any(t in a.get_majorticklabels() for ax in fig.axes
                                                     for a in (ax.xaxis, ax.yaxis))]
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            texts += [label for loc, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=True)
                      if low - 1e-9 <= loc <= high + 1e-9]
    return [t for t in texts if t.get_visible() and t.get_text()]


def _assert_every_text_inside(fig: MplFigure) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    canvas = fig.bbox
    texts = _drawn_texts(fig)
    assert len(texts) > 5
    for t in texts:
        box = t.get_window_extent(renderer)
        assert canvas.x0 - 0.5 <= box.x0 and box.x1 <= canvas.x1 + 0.5, f"{t.get_text()!r} cut off: {box}"
        assert canvas.y0 - 0.5 <= box.y0 and box.y1 <= canvas.y1 + 0.5, f"{t.get_text()!r} cut off: {box}"


def _assert_legend_beside_the_data(fig: MplFigure) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert legend is not None
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_layer_curves_returns_a_figure_with_integer_ticks_from_a_resultset_or_frame():
    for data in (_curves(), _curves().to_frame()):
        fig = layer_curves(data, title="sentiment")
        assert isinstance(fig, MplFigure)
        (ax,) = fig.axes
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks  # not 1.5 between layers 1 and 2
        assert {line.get_label() for line in ax.get_lines()} >= {"model", "untrained twin", "control task"}
        _assert_legend_beside_the_data(fig)
        _assert_every_text_inside(fig)


def test_figures_draw_into_the_callers_axes():
    fig = MplFigure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    assert layer_curves(_curves(), ax=left) is fig
    assert paired_bars(_bars(), ax=right) is fig
    assert left.get_lines() and right.patches


def test_paired_bars_labels_are_whole_and_inside_the_canvas():
    fig = paired_bars(_bars(), title="C1 categories")
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "unembed/kmeans/adjusted_rand_index"  # the parts every bar shares are dropped, not cut
    assert labels[2] == "layer.15/true_labels/silhouette_cosine_with_a_very_long_metric_name"
    assert len(ax.patches) == 6
    _assert_legend_beside_the_data(fig)
    _assert_every_text_inside(fig)
    assert to_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_to_draw_and_bad_input_are_clear():
    with pytest.raises(NothingToDraw, match="no per-layer results"):
        layer_curves(ResultSet([_result(None, None, 0.2)]))
    with pytest.raises(InvalidInputError, match="lacks column"):
        layer_curves(_curves().to_frame().drop(columns=["layer"]))
    with pytest.raises(InvalidInputError, match="SteeringResult"):
        dose_response({"model": [1, 2, 3]})


@pytest.fixture(scope="module")
def steering(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    info = make_planted_model(Path(tmp_path_factory.mktemp("planted")))
    model = load_model(str(info.folder))
    return steering_test(model, info.v, prompts(NEUTRAL[:8]), (GOOD, BAD), site="layer.0", n_random=6,
                         n_orthogonal=2, n_bootstrap=50, seed=0)


def _placebo_band(fig: MplFigure) -> PolyCollection:
    (ax,) = fig.axes
    bands = [c for c in ax.collections if isinstance(c, PolyCollection) and "random directions" in c.get_label()]
    assert len(bands) == 1, [c.get_label() for c in ax.collections]
    return bands[0]


def test_dose_response_draws_the_placebo_band_of_random_directions(steering):
    frame = steering.dose_response()
    for data in (steering, frame, {"model": steering}):
        fig = dose_response(data, title="planted")
        vertices = _placebo_band(fig).get_paths()[0].vertices
        assert np.isclose(vertices[:, 1].min(), frame["random_low"].min())
        assert np.isclose(vertices[:, 1].max(), frame["random_high"].max())
        (ax,) = fig.axes
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert any(np.allclose(line.get_ydata(), frame["random_median"]) for line in dashed)
        _assert_legend_beside_the_data(fig)
        _assert_every_text_inside(fig)


def test_report_figures_of_the_steering_kind_carry_the_band(steering):
    from conceptspace.analyses import registry

    kind = registry()["steering"]
    curves = {"dose_response": {"model": steering.dose_response()}}
    figures = kind.figures("c5", "C5 c5", list(steering.results), curves)
    assert [f.name for f in figures][-1] == "c5-dose-response.png"
    assert figures[-1].png[:8] == b"\x89PNG\r\n\x1a\n"

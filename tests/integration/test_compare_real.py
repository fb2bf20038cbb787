"""conceptspace compare on the two bundled models: the categories suite (--quick) on SmolLM2-135M (30 blocks,
decoder) and MiniLM-L6 (6 blocks, encoder), one report with their verdicts side by side and the C4 curves on one
relative-depth axis."""

from __future__ import annotations

import json

from conceptspace.cli import main
from conceptspace.report import compare_runs
from conceptspace.resources import probes_dir


def test_compare_the_bundled_models(tmp_path, capsys):
    runs = []
    for model in ("smollm2-135m", "minilm-l6"):
        out = tmp_path / model
        assert main(["run", str(probes_dir() / "categories.toml"), "--model", model, "--quick", "--out", str(out),
                     "--quiet"]) == 0, capsys.readouterr().err
        runs.append(out)
    assert main(["compare", *map(str, runs), "--label", "SmolLM2-135M", "--label", "MiniLM-L6", "--out",
                 str(tmp_path / "cmp")]) == 0
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| claim | SmolLM2-135M | MiniLM-L6 |" in markdown
    compared = compare_runs(runs)
    for run in compared:  # each model's probe layers land inside [0, 1] whatever its depth
        depths = [run.depth(r) for r in run.results if r.claim == "C4" and r.layer is not None]
        assert depths and all(0.0 <= d <= 1.0 for d in depths)
    verdicts = {run.model["n_layers"]: run.verdicts for run in compared}
    assert set(verdicts) == {30, 6}
    for n_layers, folder in zip((30, 6), runs, strict=True):
        doc = json.loads((folder / "results.json").read_text())
        assert [v["verdict"] for v in doc["verdicts"]] == [v["verdict"] for v in verdicts[n_layers].values()]
    assert (tmp_path / "cmp" / "figures" / "compare-C4.png").exists()

"""The command line: output, files written, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np

from conceptspace.cli import main


def test_models_lists_aliases(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["alias"] for r in rows} == {"smollm2-135m", "minilm-l6"}


def test_extract_texts_file_to_out_folder(tiny_model_dirs, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("Paris is in France.\nDogs bark.\n\nThe old castle.\n")
    out = tmp_path / "out"
    code = main(
        [
            "extract",
            "--model",
            str(tiny_model_dirs["llama"]),
            "--texts",
            str(texts),
            "--layers",
            "0,-1",
            "--position",
            "mean",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_items"] == 3 and summary["sites"] == ["layer.0", "layer.2"]
    assert np.load(out / "layer.2.npy").shape == (3, 32)
    assert json.loads((out / "manifest.json").read_text())["position"] == "mean"


def test_extract_jsonl_with_missing_field_is_a_one_line_error(tiny_model_dirs, tmp_path, capsys):
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"sentence": "a"}\n')
    code = main(["extract", "--model", str(tiny_model_dirs["llama"]), "--texts", str(texts), "--quiet"])
    assert code == 2
    assert "no field 'text'" in capsys.readouterr().err


def test_bad_layer_and_unknown_model_exit_2(tiny_model_dirs, tmp_path, capsys):
    texts = tmp_path / "t.txt"
    texts.write_text("hello there\n")
    assert main(["extract", "--model", str(tiny_model_dirs["llama"]), "--texts", str(texts), "--layers", "9"]) == 2
    assert "valid indices are 0..2" in capsys.readouterr().err
    assert main(["extract", "--model", "nope-model", "--texts", str(texts)]) == 2
    assert "smollm2-135m" in capsys.readouterr().err


def test_cache_info_and_clear(tiny_model_dirs, tmp_path, capsys):
    texts = tmp_path / "t.txt"
    texts.write_text("hello there\n")
    main(["extract", "--model", str(tiny_model_dirs["gpt2"]), "--texts", str(texts), "--quiet"])
    capsys.readouterr()
    assert main(["cache", "info", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 1
    assert main(["cache", "clear"]) == 0
    assert "removed 1 cache entry" in capsys.readouterr().out


def test_run_remote_dry_run_without_twin_writes_a_report_that_says_so(tiny_model_dirs, tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        f'[suite]\nname = "tiny"\nmodel = "{tiny_model_dirs["llama"]}"\nn_permutations = 19\nn_bootstrap = 20\n\n'
        '[claims.C4]\nmin_effect = 0.1\nbeat = ["untrained"]\n\n'
        '[[analysis]]\nid = "probe"\nclaim = "C4"\nkind = "probe"\ndataset = "truth_is_universal/animal_class"\n'
        'layers = [1]\nmax_items = 24\ncontrols = ["untrained"]\n'
    )
    out = tmp_path / "report"
    assert main(["run", str(suite), "--remote-dry-run", "--twin", "none", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["model"]["remote"] == "local" and doc["twin"] is None
    assert doc["timings"]["download_mb_total"] > 0
    markdown = (out / "report.md").read_text()
    assert "remote dry run" in markdown and "no untrained twin in this run" in markdown


def test_texts_files_are_read_exactly(tmp_path):
    """Texts come back as written: no JSON quoting, no number inference ('1984' stays a string), blank lines skipped."""
    from conceptspace.cli import _read_texts

    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "He said \\"yes\\"."}\n\n{"text": "1984"}\n', encoding="utf-8")
    assert _read_texts(jsonl, "text") == ['He said "yes".', "1984"]
    csv_file = tmp_path / "t.csv"
    csv_file.write_text('id,text\n1,1984\n2,"a, b"\n', encoding="utf-8")
    assert _read_texts(csv_file, "text") == ["1984", "a, b"]
    tsv = tmp_path / "t.tsv"
    tsv.write_text("text\nx\ty\n", encoding="utf-8")
    assert _read_texts(tsv, "text") == ["x"]
    txt = tmp_path / "t.txt"
    txt.write_text("caf\u00e9\n\n  \nna\u00efve\n", encoding="utf-8")
    assert _read_texts(txt, "text") == ["caf\u00e9", "na\u00efve"]


def test_cache_clear_area_removes_only_that_area(tiny_model_dirs, tmp_path, capsys):
    """The forward memo (and the other derived areas) survive a plain `cache clear` and go with `--area`; the
    activation entries survive `--area`; an unknown area or a mixed request says what to do."""
    from conceptspace.activations._forward_memo import memo_root, write_entry

    texts = tmp_path / "t.txt"
    texts.write_text("hello there\n")
    main(["extract", "--model", str(tiny_model_dirs["gpt2"]), "--texts", str(texts), "--quiet"])
    write_entry(memo_root(), "k" * 32, {"x": np.arange(1000.0)}, {"name": "test"})
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    assert "`cache clear --area forward-memo` clears it" in capsys.readouterr().out
    assert main(["cache", "clear", "--area", "forward-memo"]) == 0
    assert "cleared forward-memo/" in capsys.readouterr().out and not memo_root().exists()
    assert main(["cache", "info", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 1  # the extraction is still there
    assert main(["cache", "clear", "--area", "forward-memo"]) == 0
    assert "nothing to clear" in capsys.readouterr().out
    assert main(["cache", "clear", "--area", "memo"]) == 2
    assert "unknown cache area" in capsys.readouterr().err
    assert main(["cache", "clear", "--area", "all", "--partial"]) == 2
    assert main(["cache", "info", "--area", "weights"]) == 2

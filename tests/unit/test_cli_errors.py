"""Every bad input to the command line is one stderr line, a documented exit status, no traceback, no output left.

Each case below was (or could be) a Python traceback before: the checks run in-process through ``main`` with the
tiny models of tests/conftest.py, or with no model at all where the error comes first.
"""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conceptspace import cli
from conceptspace.cli import EXIT_BUG, EXIT_ERROR, EXIT_FAILED_ANALYSES, EXIT_INTERRUPTED, describe_error, main

SUITE_TEMPLATE = """\
[suite]
name = {name}
model = "{model}"
n_permutations = 19
n_bootstrap = 20

[claims.C4]
min_effect = 0.1
beat = ["untrained"]

[[analysis]]
id = "probe"
claim = "C4"
kind = "probe"
dataset = "{dataset}"
layers = {layers}
max_items = 24
controls = ["untrained"]
{extra}"""


def _suite(folder: Path, model: Path, *, name: str = '"tiny"', dataset: str = "truth_is_universal/animal_class",
           layers: str = "[1]", extra: str = "") -> Path:
    path = folder / "suite.toml"
    path.write_text(SUITE_TEMPLATE.format(name=name, model=model, dataset=dataset, layers=layers, extra=extra))
    return path


def _texts(folder: Path, name: str = "texts.txt", content: str | bytes = "Paris is in France.\nDogs bark.\n") -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: chmod 555 for a normal user; /proc or /sys for root."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    for candidate in (Path("/proc"), Path("/sys")):
        try:
            (candidate / "conceptspace-probe").mkdir()
        except OSError:
            return candidate
    pytest.skip("no unwritable folder available to root here")


def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _disk_full_during_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    from conceptspace.activations import _cache as cache

    def full(folder: Path, index: int, tensors: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / f"shard-{index}.safetensors"))

    monkeypatch.setattr(cache, "write_shard", full)


def _remote_layout_unknown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny: dict[str, Any]) -> None:
    """A reachable 'Hub' whose config.json has no model_type: transformers' own ValueError, for real."""
    import transformers

    from conceptspace.models import _remote as models

    odd = tmp_path / "hub-odd"
    odd.mkdir()
    (odd / "config.json").write_text('{"hidden_size": 8}')
    real_config = transformers.AutoConfig.from_pretrained
    real_tokenizer = models._load_tokenizer_from
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setattr(models, "_load_tokenizer_from", lambda *a, **k: real_tokenizer(tiny["llama"]))
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", lambda *a, **k: real_config(str(odd)))

Case = Callable[[Path, dict[str, Any], pytest.MonkeyPatch], list[str]]

# Each case returns the argv; any setup (files, monkeypatches) happens inside it, under tmp_path (the cwd).
CASES: dict[str, Case] = {
    # extract: the texts file
    "binary file": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                     str(_texts(t, "bin.txt", b"ELF\x00\x01\x02binary\x00" * 20))],
    "random bytes": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                      str(_texts(t, "rand.txt", bytes(random.Random(0).randrange(128, 256)
                                                                      for _ in range(300))))],
    "latin-1 file": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                      str(_texts(t, "latin.txt", "café au lait\n".encode("latin-1")))],
    "malformed jsonl": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                         str(_texts(t, "t.jsonl", '{"text": "a"}\n{"text": \n'))],
    "mixed-type jsonl": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                          str(_texts(t, "t.jsonl", '{"text": "a cat"}\n{"text": 3}\n'))],
    "jsonl without the field": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                                 str(_texts(t, "t.jsonl", '{"sentence": "a"}\n'))],
    "csv with an empty text": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                                str(_texts(t, "t.csv", "text,label\nhello,1\n,0\n"))],
    "jsonl texts that are numbers": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                                      str(_texts(t, "t.jsonl", '{"text": 1}\n{"text": 2}\n'))],
    "header-only csv": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                         str(_texts(t, "t.csv", "text,label\n"))],
    "missing texts file": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts", str(t / "nope.txt")],
    "texts and dataset": lambda t, m, mp: ["extract", "--texts", str(_texts(t)), "--dataset", "x"],
    "unknown dataset": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--dataset", "no_such_dataset"],
    "unknown model": lambda t, m, mp: ["extract", "--model", "nope-model", "--texts", str(_texts(t))],
    "unknown layer": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts", str(_texts(t)),
                                       "--layers", "9", "--out", str(t / "acts")],
    # extract: device and output folder, checked before the model loads
    "extract on cuda without cuda": lambda t, m, mp: (_no_cuda(mp), ["extract", "--model", str(m["llama"]),
                                                                     "--texts", str(_texts(t)), "--device",
                                                                     "cuda"])[1],
    "not a device": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts", str(_texts(t)),
                                      "--device", "gpu0"],
    "extract --out is a file": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts", str(_texts(t)),
                                                 "--out", str(_texts(t, "taken.txt"))],
    "extract --out under a file": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts",
                                                    str(_texts(t)), "--out", str(_texts(t, "f.txt") / "sub")],
    "extract --out unwritable": lambda t, m, mp: ["extract", "--model", str(m["llama"]), "--texts", str(_texts(t)),
                                                  "--out", str(_unwritable_folder(t) / "acts")],
    "disk full during extraction": lambda t, m, mp: (_disk_full_during_extraction(mp),
                                                     ["extract", "--model", str(m["llama"]), "--texts",
                                                      str(_texts(t)), "--out", str(t / "acts")])[1],
    # extract: remote
    "remote, hub unreachable": lambda t, m, mp: (mp.setenv("NDIF_API_KEY", "test-key"),
                                                 ["extract", "--model", "nobody/nothing", "--texts",
                                                  str(_texts(t)), "--remote"])[1],
    "remote, layout unknown": lambda t, m, mp: (_remote_layout_unknown(mp, t, m),
                                                ["extract", "--model", "nobody/odd", "--texts", str(_texts(t)),
                                                 "--remote"])[1],
    # run: suite and output problems, all before the model loads
    "run on cuda without cuda": lambda t, m, mp: (_no_cuda(mp), ["run", str(_suite(t, m["llama"])), "--device",
                                                                 "cuda"])[1],
    "run --out is a file": lambda t, m, mp: ["run", str(_suite(t, m["llama"])), "--out", str(_texts(t))],
    "run --out unwritable": lambda t, m, mp: ["run", str(_suite(t, m["llama"])), "--out",
                                              str(_unwritable_folder(t) / "report")],
    "suite name climbs out of reports/": lambda t, m, mp: ["run", str(_suite(t, m["llama"],
                                                                      name='"../../../../elsewhere/x"'))],
    "bad suite key": lambda t, m, mp: ["run", str(_suite(t, m["llama"], extra="n_splitz = 3\n"))],
    "unknown dataset in suite": lambda t, m, mp: ["run", str(_suite(t, m["llama"], dataset="truth/nope"))],
    "suite is not TOML": lambda t, m, mp: ["run", str(_texts(t, "bad.toml", "[suite\nname = 1"))],
    "suite does not exist": lambda t, m, mp: ["run", str(t / "missing.toml")],
}


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_every_bad_input_is_one_error_line(case, tiny_model_dirs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = CASES[case](tmp_path, tiny_model_dirs, monkeypatch)
    before = _tree(tmp_path)
    code = main([*argv, "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("conceptspace: error: "), err
    assert "Traceback" not in err
    assert _tree(tmp_path) == before  # no --out folder, no reports/, no staging folder left behind


def test_messages_name_the_file_line_and_fix(tiny_model_dirs, tmp_path, capsys):
    """Spot checks that the one line says what and where, not just that something failed."""
    expectations = {
        "mixed-type jsonl": ("t.jsonl:2", "field 'text' is a number here but a string on line 1"),
        "malformed jsonl": ("t.jsonl:2", "not valid JSON"),
        "header-only csv": ("t.csv", "no rows (only a header)"),
        "csv with an empty text": ("t.csv:3", "column 'text' is missing or empty"),
        "jsonl texts that are numbers": ("t.jsonl: row 1, line 1", "is 1, not a string"),
        "latin-1 file": ("latin.txt", "not valid UTF-8 (byte 0xe9 at offset 3, line 1)"),
        "binary file": ("bin.txt", "NUL byte"),
        "extract --out is a file": ("taken.txt", "is an existing file"),
        "suite name climbs out of reports/": ("suite.toml:2: suite.name", "choose the output folder with --out"),
    }
    for case, fragments in expectations.items():
        folder = tmp_path / case.replace(" ", "_").replace("/", "_")
        folder.mkdir()
        with pytest.MonkeyPatch.context() as mp:
            main([*CASES[case](folder, tiny_model_dirs, mp), "--quiet"])
        err = capsys.readouterr().err
        for fragment in fragments:
            assert fragment in err, (case, err)


@pytest.mark.parametrize("case", ["extract on cuda without cuda", "run on cuda without cuda", "extract --out is a file",
                                  "extract --out under a file", "extract --out unwritable", "run --out is a file",
                                  "run --out unwritable"])
def test_device_and_output_folder_fail_before_the_model_loads(case, tiny_model_dirs, tmp_path, monkeypatch, capsys):
    """A run that cannot use its device or save its results must fail in a second, not after the forwards."""
    from conceptspace import models

    monkeypatch.chdir(tmp_path)
    argv = CASES[case](tmp_path, tiny_model_dirs, monkeypatch)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model must not load"))
    assert main([*argv, "--quiet"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "torch sees no CUDA GPU" in err if "cuda" in case else "--out" in err


def test_run_with_failed_analyses_writes_the_report_and_exits_3(tiny_model_dirs, tmp_path, monkeypatch, capsys):
    """Layers past the end and too negative: the run finishes, records both failures, and says so in its status."""
    monkeypatch.chdir(tmp_path)
    extra = ('\n[[analysis]]\nid = "negative"\nclaim = "C4"\nkind = "probe"\n'
             'dataset = "truth_is_universal/animal_class"\nlayers = [-99]\nmax_items = 24\ncontrols = ["untrained"]\n')
    suite = _suite(tmp_path, tiny_model_dirs["llama"], layers="[99]", extra=extra)
    code = main(["run", str(suite), "--twin", "none", "--quiet"])
    captured = capsys.readouterr()
    assert code == EXIT_FAILED_ANALYSES
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("conceptspace: error: 2 of 2 analyses failed or were not run"), captured.err
    assert "layer 99" in lines[0] and "layer -99" in lines[0] and "Traceback" not in captured.err
    doc = json.loads((tmp_path / "reports" / "tiny-llama" / "results.json").read_text())
    assert [a["status"] for a in doc["analyses"]] == ["failed", "failed"]


def test_disk_full_while_writing_the_report_leaves_no_folder(tiny_model_dirs, tmp_path, monkeypatch, capsys):
    from conceptspace import report

    real = report.write_report

    def write_then_fill_up(outcome: Any, folder: Path) -> dict[str, Path]:
        real(outcome, folder)  # most files are on disk when the disk fills up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(folder) / "report.html"))

    monkeypatch.setattr(report, "write_report", write_then_fill_up)
    out = tmp_path / "deep" / "report"
    code = main(["run", str(_suite(tmp_path, tiny_model_dirs["llama"])), "--twin", "none", "--out", str(out),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and err.count("\n") == 1 and "no space left on the device" in err
    assert not (tmp_path / "deep").exists()  # the parent folders it made are gone too


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, where):
    texts = str(_texts(tmp_path, "x.txt", b"\xff\xfe"))
    argv = ["--debug", "extract", "--texts", texts] if where == "before" else ["extract", "--texts", texts, "--debug"]
    with pytest.raises(Exception, match="not valid UTF-8"):
        main(argv)


def test_real_process_prints_one_line_and_exit_status(tmp_path):
    """Through the installed entry point, as a user runs it: stderr is exactly one line, status 2."""
    texts = _texts(tmp_path, "latin.txt", "naïve\n".encode("latin-1"))
    proc = subprocess.run([sys.executable, "-m", "conceptspace.cli", "extract", "--texts", str(texts), "--quiet"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("conceptspace: error: ")
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------ error classification
def test_describe_error_maps_each_family():
    disk = describe_error(OSError(errno.ENOSPC, "No space left on device", "/x/shard-0.safetensors"))
    assert disk[0] == EXIT_ERROR and "no space left" in disk[1] and "/x/shard-0.safetensors" in disk[1]
    assert describe_error(PermissionError(errno.EACCES, "Permission denied", "/r"))[1].startswith("permission denied")
    assert describe_error(KeyboardInterrupt())[0] == EXIT_INTERRUPTED
    assert describe_error(ValueError("bad value"))[0] == EXIT_ERROR
    bug = describe_error(KeyError("oops"))
    assert bug[0] == EXIT_BUG and "bug" in bug[1] and "--debug" in bug[1]


def test_network_and_ndif_errors_are_user_errors():
    """httpx errors (the Hub client) and nnsight's RemoteError (NDIF refused or unreachable) are not bugs."""
    import httpx
    from nnsight.intervention.backends.remote import RemoteError as NdifError

    for error in (httpx.ConnectError("[Errno -2] Name or service not known"),
                  NdifError("Failed to send request: 401 invalid API key")):
        code, message = describe_error(error)
        assert code == EXIT_ERROR and "remote request failed" in message and "NDIF_API_KEY" in message


def test_ndif_refusal_during_extraction_is_one_line(tiny_model_dirs, tmp_path, monkeypatch, capsys):
    """NDIF unreachable mid-extraction (the trace is sent when extraction starts): one line, exit 2, no --out."""
    import httpx

    from conceptspace import activations

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(activations, "extract", unreachable)
    code = main(["extract", "--model", str(tiny_model_dirs["llama"]), "--texts", str(_texts(tmp_path)),
                 "--remote-dry-run", "--out", str(tmp_path / "acts"), "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and err.count("\n") == 1 and "Connection refused" in err
    assert not (tmp_path / "acts").exists()


def test_torch_cuda_errors_are_user_errors():
    """The error torch itself raises when CUDA is missing (AssertionError or RuntimeError) becomes exit 2."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so torch raises no 'CUDA not available' error")
    with pytest.raises((AssertionError, RuntimeError)) as raised:
        torch.zeros(1, device="cuda")
    code, message = describe_error(raised.value)
    assert code == EXIT_ERROR and "--device cpu" in message


# ------------------------------------------------------------------------------------------ output folders
def test_publish_folder_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "a" / "b" / "out"

    def half(folder: Path) -> None:
        (folder / "results.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        cli.publish_folder(out, half)
    assert list(tmp_path.iterdir()) == []


def test_publish_folder_replaces_files_in_an_existing_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("old")
    (out / "notes.txt").write_text("the user's own file")
    cli.publish_folder(out, lambda folder: (folder / "report.md").write_text("new"))
    assert (out / "report.md").read_text() == "new" and (out / "notes.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left
    fresh = tmp_path / "fresh"
    cli.publish_folder(fresh, lambda folder: (folder / "x").write_text("1"))
    assert (fresh / "x").read_text() == "1" and oct(fresh.stat().st_mode & 0o777) != oct(0o700)


@pytest.mark.parametrize("name", ["../../../../elsewhere/x", "/etc/passwd", "..", ".hidden", "a\\..\\b", "<x>|`y`"])
def test_default_report_folder_stays_in_reports(name):
    folder = cli.default_report_folder(name, "../../models/" + name)
    assert folder.parent == Path("reports") and len(folder.parts) == 2
    assert ".." not in folder.name and not folder.name.startswith(".") and "/" not in folder.name


# ------------------------------------------------------------------------------------------------- help
def test_help_has_no_raw_markup_and_every_option_is_explained(capsys):
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in [("conceptspace", parser), *subparsers.items()]:
        text = sub.format_help()
        assert "`" not in text, name
        for action in sub._actions:
            if action.dest not in ("command", "help"):
                assert action.help, (name, action.option_strings or action.dest)
    assert "exit status:\n  0    success\n  1    unexpected internal error" in parser.format_help()

"""Analyses in worker processes (``run_suite(jobs=N)``, ``conceptspace run --jobs N``): the same numbers as one process.

Why these tests: issue 18's wall-time budgets are for a 2-core machine, and the statistics are GIL-bound, so the
second core only helps in a second process. The promise that makes that usable is that nothing a run reports
depends on how many workers ran it or which worker took which analysis: every test, replicate and figure's data
come back bit for bit (through JSON and .npz, never pickle), a worker that dies loses only its analysis (reported
as failed, with the worker's exit status), and a value the record files cannot hold is computed again in the
parent rather than dropped.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conceptspace.paths import activation_cache_dir
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.suite import _runner
from conceptspace.suite._document import results_document
from conceptspace.suite._record_codec import UnencodableError, read_record, write_record
from conceptspace.suite._runner import run_suite
from conceptspace.suite._spec import parse_suite
from conceptspace.suite._workers import run_forked, usable_jobs
from conceptspace.utils.threads import one_thread

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"),
                                reason="worker processes are forked (Linux)")

SUITE = """\
[suite]
name = "workers"
model = "{model}"
seed = 0
twin_seeds = [0]
spectrum_twin = true
n_permutations = 19
max_permutations = 39
n_bootstrap = 30

[claims.C4]
min_effect = 0.1
beat = ["untrained"]

[claims.C5]
min_effect = 0.1
beat = ["untrained"]

[[analysis]]
id = "probe_animals"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
layers = [0, 1]
max_items = 40
n_splits = 3
controls = ["untrained"]

[[analysis]]
id = "probe_cities"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/inventors"
layers = [1]
max_items = 40
n_splits = 3

[[analysis]]
id = "steer"
claim = "C5"
kind = "steering"
strengths = [-1.0, 1.0]
dataset = "vader_lexicon/polarity"
layer = 1
max_items = 24
positive = ["a", "e"]
negative = ["o", "u"]
prompts = ["The movie was", "Today I feel", "The food is", "My day was"]
n_random = 4
"""


def _same(a: object, b: object) -> bool:
    """Equal bits through dicts, sequences, arrays and frames (NaN equals NaN)."""
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b) and list(a.dtypes) == list(b.dtypes)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        b = np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and (a == b or (a != a and b != b))


@pytest.fixture(autouse=True)
def _two_workers_even_on_one_cpu(monkeypatch):  # type: ignore[no-untyped-def]
    """The runner's workers as asked (the CPU cap has its own test), so a 1-CPU machine tests the same path."""
    monkeypatch.setattr(_runner, "usable_jobs", lambda requested, n_jobs: max(1, min(requested, n_jobs)))


@pytest.fixture(scope="module")
def suite(tiny_model_dirs):  # type: ignore[no-untyped-def]
    return parse_suite(SUITE.format(model=tiny_model_dirs["llama"]), "workers.toml").for_run()


def _document(outcome: _runner.RunOutcome) -> str:
    document = results_document(outcome)
    del document["timings"]
    return json.dumps(document, sort_keys=True)


def test_two_workers_report_what_one_process_reports(suite):
    with one_thread():  # as each worker computes (float sums depend on the thread count)
        one = run_suite(suite, progress=False)
    two = run_suite(suite, progress=False, jobs=2)
    assert all(r.status == "ok" for r in two.records), [r.reason for r in two.records]
    assert two.timings["workers"] == 2 and one.timings["workers"] == 1
    assert _document(one) == _document(two)
    for a, b in zip(one.records, two.records, strict=True):
        assert a.replicates.keys() == b.replicates.keys()
        assert all(_same(a.replicates[k], b.replicates[k]) for k in a.replicates)
        assert _same(a.figure_data, b.figure_data)
    assert "dose_response" in two.records[2].figure_data  # the steering curves came back as frames
    # the queue's order for the next run: this run's analysis times, in the (test's own) cache folder
    remembered = json.loads((activation_cache_dir() / "run-timings" / "workers.json").read_text())
    assert set(remembered) == {"probe_animals", "probe_cities", "steer"}
    # both runs read the activation cache the same way: the workers' counts reach the run's timings
    assert two.timings["forward_passes"]["requests"] == one.timings["forward_passes"]["requests"] > 0


def test_a_record_the_files_cannot_hold_is_run_again_in_the_parent(suite, monkeypatch):
    with one_thread():
        reference = _document(run_suite(suite, progress=False))
    parent = os.getpid()
    original = _runner.write_record

    def refuse_steering(folder: Path, stem: str, **parts: object) -> None:
        if os.getpid() != parent and stem == "record-2":
            raise UnencodableError("a value of type Unknown")
        original(folder, stem, **parts)  # type: ignore[arg-type]

    monkeypatch.setattr(_runner, "write_record", refuse_steering)
    again = run_suite(suite, progress=False, jobs=2)
    assert all(r.status == "ok" for r in again.records)
    assert _document(again) == reference


def test_an_analysis_whose_worker_dies_is_reported_failed_and_the_others_finish(suite, monkeypatch):
    parent = os.getpid()
    original = _runner._run_record

    def dying(number: int, records: list, *args: object, **kwargs: object) -> None:
        if os.getpid() != parent and records[number - 1].spec.id == "probe_cities":
            os._exit(7)  # as an out-of-memory kill would: no exception, no cleanup
        original(number, records, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_runner, "_run_record", dying)
    outcome = run_suite(suite, progress=False, jobs=2)
    status = {r.spec.id: (r.status, r.reason) for r in outcome.records}
    assert status["probe_cities"][0] == "failed" and "status 7" in status["probe_cities"][1]
    assert status["probe_animals"][0] == "ok" and status["steer"][0] == "ok"


def test_the_record_files_give_back_every_value_exactly(tmp_path):
    key = TestKey(test="probe", dataset="d", method="m", site="layer.1", detail=("a", "b"), analysis="x")
    result = TestResult(key=key, claim="C4", statistic_name="s", statistic=0.1 + 0.2, effect_size_name="e",
                        effect_size=float("nan"), ci_low=-math.inf, ci_high=1e-300, p_value=0.05, n=7, n_groups=3,
                        extra={"role": "primary", "nested": {"t": (1, 2.5, None, float("nan")), "flag": True},
                               "ints": [1, 2], "big": 2**40})
    replicates = {key: np.arange(6, dtype=np.float32).reshape(2, 3), key.replace(method="n"): np.array([np.nan])}
    frame = pd.DataFrame({"alpha": [-1.0, 1.0], "label": ["a", "b"], "n": np.array([3, 4], dtype=np.int16)})
    figure_data = {"curves": {"model": frame}, "scalar": np.float32(0.5), "pair": (1, "x"), "list": [np.int64(3)]}
    scalars = {"status": "ok", "seconds": 1.25, "memo": {"hits": 2}, "primary_site": None}
    write_record(tmp_path, "r", scalars=scalars, results=ResultSet([result]), replicates=replicates,
                 figure_data=figure_data)
    back_scalars, back_results, back_replicates, back_figures = read_record(tmp_path, "r")
    assert back_scalars == scalars
    (back,) = list(back_results)
    assert back.key == key and back.to_dict() == result.to_dict()
    assert math.isnan(back.effect_size) and back.ci_low == -math.inf and back.statistic == 0.1 + 0.2
    assert back.extra["nested"]["t"][:3] == (1, 2.5, None) and math.isnan(back.extra["nested"]["t"][3])
    assert type(back.extra["big"]) is int and back.extra["ints"] == (1, 2)
    assert _same(back_replicates, replicates)
    assert _same(back_figures, figure_data)
    assert type(back_figures["scalar"]) is np.float32


def test_the_record_files_refuse_what_they_cannot_hold(tmp_path):
    for value in ({"x": object()}, {"x": np.array([object()])}, {"x": {1: "non-string key"}},
                  {"x": pd.DataFrame({"a": [1.0]}, index=["r"])}):
        with pytest.raises(UnencodableError):
            write_record(tmp_path, "r", scalars={}, results=ResultSet(), replicates={}, figure_data=value)
        assert not list(tmp_path.iterdir())  # nothing half-written


def test_workers_take_every_job_once_and_report_the_ones_they_lost(tmp_path):
    def work(i: int) -> None:
        if i == 3:
            raise RuntimeError("job 3 fails")
        (tmp_path / f"out-{i}").write_text(str(os.getpid()))

    outcome = run_forked(range(8), work, lambda k: None, jobs=2, folder=tmp_path)
    assert sorted(outcome.finished) == [0, 1, 2, 4, 5, 6, 7] and list(outcome.lost) == [3]
    assert "status 1" in outcome.lost[3]
    written = {i for i in range(8) if (tmp_path / f"out-{i}").exists()}
    assert written == set(outcome.finished)  # each finished job ran (once: it was read from the pipe once)


def test_a_worker_computes_after_the_parent_used_two_threads():
    """GNU OpenMP's thread team does not survive fork: without the workers' one-thread limit the child's first
    matmul waits forever (it did, in CI). Run in a fresh interpreter with a deadline, so a regression fails
    here instead of hanging the test run."""
    script = textwrap.dedent("""
        import sys, tempfile
        from pathlib import Path
        import torch
        from conceptspace.suite._workers import run_forked
        torch.set_num_threads(2)
        a = torch.randn(1000, 1000)
        (a @ a).sum()  # the parent's OpenMP team of two threads now exists
        def work(i):
            Path(folder, f"out-{i}").write_text(f"{float((a @ a).sum()):.6g} {torch.get_num_threads()}")
        with tempfile.TemporaryDirectory() as folder:
            outcome = run_forked([0, 1], work, lambda k: None, jobs=2, folder=Path(folder))
            print(sorted(outcome.finished), [Path(folder, f"out-{i}").read_text().split()[1] for i in (0, 1)])
        print("threads after:", torch.get_num_threads())
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # its own group: a hung worker is killed too
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("a forked worker hung in its first parallel region (the parent's OpenMP team)")
    assert process.returncode == 0, stderr
    assert "[0, 1] ['1', '1']" in stdout  # both jobs finished, each worker on one thread
    assert "threads after: 2" in stdout  # the parent keeps its own


def test_one_thread_restores_the_callers_count():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_number_of_workers_is_bounded_by_cpus_and_jobs():
    cpus = len(os.sched_getaffinity(0))
    assert usable_jobs(1, 10) == 1
    assert usable_jobs(0, 100) == cpus
    assert usable_jobs(64, 3) == min(3, cpus)
    with pytest.raises(ValueError, match="jobs must be >= 0"):
        usable_jobs(-1, 3)


def test_the_cli_takes_a_number_of_workers_and_refuses_a_negative_one(capsys):
    from conceptspace.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["run", "probes/concept_space.toml", "--jobs", "-1"])
    assert stop.value.code == 2
    assert "'-1' is not a number of workers" in capsys.readouterr().err


def test_the_queue_runs_the_longest_first_and_ignores_an_unreadable_timings_file(suite):
    from conceptspace.suite._runner import AnalysisRecord, _longest_first, _timings_file

    records = [AnalysisRecord(spec, spec.resolved(False, None)) for spec in suite.analyses]
    path = _timings_file(suite, False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"probe_animals": 1.0, "probe_cities": 9.5, "steer": 3.0}))
    assert _longest_first(records, suite, False) == [1, 2, 0]
    path.write_text(json.dumps({"probe_animals": "slow", "steer": None}))
    assert _longest_first(records, suite, False) == [0, 1, 2]  # unknown times: the suite's order
    path.write_text("not json")
    assert _longest_first(records, suite, False) == [0, 1, 2]

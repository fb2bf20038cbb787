"""P5's non-circular test (``p5_corpus_pmi``, kind ``cooccurrence``) judged as a claim: a planted positive and a
null on tiny models, through the suite runner under P5's rule exactly as ``probes/concept_space.toml`` declares
it (min_effect, margin, beat, must_fail), beside test_planted_verdicts.py's logit-lens cases.

The models are word-level Llamas (tests/unit/planted_geometry.py) whose vocabulary is the 150 most frequent usable
words of the bundled corpus (datasets/python_docs_corpus), so the analysis scores exactly those words.

* Planted positive: the unembedding rows are the PMI matrix's leading eigenvectors scaled by the root of their
  eigenvalues (32 of them, the model's width), so cosines follow the corpus's PMI -> "supported" (partial Spearman
  ~0.77 over its Mantel null; the untrained twin's ~0, so the twin fails as ``must_fail`` requires and is beaten).
* Null: random unembedding rows -> "not supported" (-0.028 [-0.076, 0.016]: the interval's top is under
  min_effect 0.05, so the claim is ruled out). The ``--null`` battery on the planted model (corpus words permuted
  against the token vectors) is never "supported" but may be "inconclusive" (0.017 [-0.045, 0.071] here): with
  150 words the interval is about +/-0.06 wide, near P5's min_effect, so a null at this size is not always ruled
  out below the threshold. (On SmolLM2 the battery scores 300 words; the corpus, ~70,000 words, bounds how many
  words have enough co-occurring pairs.) Numbers measured 2026-12-03 on this machine, for orientation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conceptspace.analyses.geometry._cooccurrence import corpus_stats, corpus_words, read_corpus, select_words
from conceptspace.suite import parse_suite
from conceptspace.suite._runner import run_suite
from conceptspace.theory import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from tests.unit import planted_geometry as pg
from tests.unit.test_planted_verdicts import BATTERY, HEADER, battery_rule, primary_of, verdict_of

N_WORDS = 150
D = 32


def battery_pmi_analysis() -> dict[str, Any]:
    import tomllib

    return next(a for a in tomllib.loads(BATTERY.read_text(encoding="utf-8"))["analysis"]
                if a["claim"] == "P5" and a["kind"] == "cooccurrence")


@pytest.fixture(scope="module")
def corpus_words_and_pmi() -> tuple[list[str], np.ndarray]:
    spec = battery_pmi_analysis()
    texts = read_corpus(spec["corpus"])
    words = select_words(corpus_words(texts), lambda ws: [True] * len(ws), N_WORDS)
    stats = corpus_stats(texts, words, window=spec["window"], min_count=spec["min_count"])
    return list(stats.words), np.nan_to_num(stats.pmi)


def run_pmi(folder: Path, *, null_seed: int | None = None) -> Any:
    spec = battery_pmi_analysis()
    body = (f'corpus = "{spec["corpus"]}"\nsites = ["unembed"]\nn_words = {N_WORDS}\nwindow = {spec["window"]}\n'
            f'min_count = {spec["min_count"]}\n')
    text = (HEADER.format(model=folder) + battery_rule("P5")
            + f'[[analysis]]\nid = "planted"\nclaim = "P5"\nkind = "cooccurrence"\nprimary = "{spec["primary"]}"\n'
            + body)
    suite = parse_suite(text, "planted.toml")
    battery = parse_suite(BATTERY.read_text(encoding="utf-8"), str(BATTERY))
    assert suite.claims["P5"] == battery.claims["P5"], "the planted run must judge under the battery's own rule"
    outcome = run_suite(suite.for_run(), progress=False, null_seed=null_seed)
    assert all(r.status == "ok" for r in outcome.records), [r.reason for r in outcome.records]
    return outcome


def twin_of(outcome: Any, primary: Any) -> Any:
    return next(r for r in outcome.results if r.key == primary.key.counterpart("untrained"))


def test_planted_pmi_geometry_is_supported(tmp_path, corpus_words_and_pmi):
    words, pmi = corpus_words_and_pmi
    w, V = np.linalg.eigh(pmi)
    top = np.argsort(w)[::-1][:D]
    rows = V[:, top] * np.sqrt(np.clip(w[top], 0.0, None))
    rows += 0.05 * np.random.default_rng(1).standard_normal(rows.shape)
    folder = pg.write_model(tmp_path / "pmi", words, d_model=D, unembed=torch.tensor(rows, dtype=torch.float32))
    outcome = run_pmi(folder)
    primary = primary_of(outcome)
    twin = twin_of(outcome, primary)
    verdict = verdict_of(outcome, "P5")
    assert primary.key.method == "partial_spearman" and primary.n_groups == N_WORDS
    assert primary.effect_size > 0.5 and primary.ci_low > 0.3
    assert abs(twin.effect_size) < 0.1 and twin.ci_low < 0.05  # the twin fails, as must_fail requires
    assert verdict.verdict == SUPPORTED, verdict.reason


def test_random_rows_are_not_supported(tmp_path, corpus_words_and_pmi):
    words, _ = corpus_words_and_pmi
    folder = pg.write_model(tmp_path / "null", words, d_model=D)
    outcome = run_pmi(folder)
    primary = primary_of(outcome)
    verdict = verdict_of(outcome, "P5")
    assert primary.ci_low <= 0.0 <= primary.ci_high and not primary.significant
    assert verdict.verdict == NOT_SUPPORTED, verdict.reason


def test_the_null_battery_on_the_planted_model_is_not_supported_either(tmp_path, corpus_words_and_pmi):
    """``--null``: the corpus words are permuted against the token vectors before anything is scored."""
    words, pmi = corpus_words_and_pmi
    w, V = np.linalg.eigh(pmi)
    top = np.argsort(w)[::-1][:D]
    rows = V[:, top] * np.sqrt(np.clip(w[top], 0.0, None))
    folder = pg.write_model(tmp_path / "pmi_null", words, d_model=D, unembed=torch.tensor(rows, dtype=torch.float32))
    outcome = run_pmi(folder, null_seed=1)
    verdict = verdict_of(outcome, "P5")
    assert verdict.verdict in (NOT_SUPPORTED, INCONCLUSIVE), verdict.reason
    assert primary_of(outcome).ci_low <= 0.05

"""The analogies kind with ``candidates = "vocabulary"``: one primary, the twins as controls, static sites only."""

from __future__ import annotations

from pathlib import Path

import pytest

from conceptspace.analyses import RunContext, registry
from conceptspace.concepts import load_concepts
from conceptspace.errors import InvalidInputError
from conceptspace.suite._spec import kind_keys

PARAMS = {"dataset": "google_analogy/family", "sites": ["unembed"], "max_per_relation": 8,
          "methods": ["3cosadd", "3cosmul"]}


@pytest.fixture(scope="module")
def models(tiny_models):  # type: ignore[no-untyped-def]
    model = tiny_models["llama"]
    return model, (model.untrained(0), model.untrained(1))


def _run(models, null_seed: int | None = None, **params):  # type: ignore[no-untyped-def]
    model, twins = models
    analysis = registry()["analogies"]
    ctx = RunContext(model=model, twin=twins[0], claim="C3", seed=0, n_permutations=19, n_bootstrap=20,
                     twins=twins, twin_seeds=(0, 1), null_seed=null_seed)
    return analysis.run(ctx, analysis.make_params({**PARAMS, **params}))


def _word_file(path: Path) -> tuple[Path, int]:
    """The family relation's words (the tiny tokenizer has few whole words) and some fillers, one a line."""
    cs = load_concepts(PARAMS["dataset"])
    words = list(dict.fromkeys(w.lower() for w in [*cs.column("a"), *cs.column("b")]))
    words += ["table", "river", "green", "quickly", "stone", "music", "window", "seven"]
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return path, len(words)


def test_vocabulary_candidates_give_one_primary_with_the_vocabulary_and_baselines(models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, n_words = _word_file(tmp_path / "words.txt")
    out = _run(models, candidates="vocabulary", vocabulary=str(path))
    primary = [r for r in out.results if r.extra["role"] == "primary"]
    assert len(primary) == 1
    p = primary[0]
    assert (p.key.method, p.extra["relation"], p.extra["candidates"]) == ("3cosadd", "all", "vocabulary")
    assert p.extra["n_vocabulary"] == n_words and p.extra["n_candidates"] == n_words - 3
    for name in ("only_b_accuracy", "ignore_a_accuracy", "add_opposite_accuracy"):
        assert 0.0 <= p.extra[name] <= 1.0
    assert p.extra["n_questions_skipped"] == 0 and p.n == 8
    assert any(r.key.control == "untrained" and r.key.method == "3cosadd" for r in out.results)


def test_the_relation_protocol_stays_the_default(models) -> None:  # type: ignore[no-untyped-def]
    out = _run(models)
    p = next(r for r in out.results if r.extra["role"] == "primary")
    assert "candidates" not in p.extra and "ignore_a_accuracy" not in p.extra
    assert p.extra["n_candidates"] < 100  # the relation's own words


def test_a_context_site_is_refused_with_the_way_out(models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _ = _word_file(tmp_path / "words.txt")
    with pytest.raises(InvalidInputError, match="static sites"):
        _run(models, candidates="vocabulary", vocabulary=str(path), sites=["unembed", "layer.1"])


def test_the_suite_accepts_the_two_protocols_and_refuses_anything_else() -> None:
    keys = kind_keys("analogies")
    assert keys["candidates"].check("vocabulary") and keys["candidates"].check("relation")
    assert not keys["candidates"].check("everything") and not keys["candidates"].check(["vocabulary"])
    assert keys["candidates"].default == "relation" and keys["vocabulary"].default == "single_token_words"


def test_the_null_battery_repairs_the_pairs_and_keeps_the_keys(models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _ = _word_file(tmp_path / "words.txt")
    real = _run(models, candidates="vocabulary", vocabulary=str(path))
    null = _run(models, candidates="vocabulary", vocabulary=str(path), null_seed=3)
    assert [r.key for r in null.results] == [r.key for r in real.results]
    p_real = next(r for r in real.results if r.extra["role"] == "primary")
    p_null = next(r for r in null.results if r.extra["role"] == "primary")
    assert p_null.extra["null_battery_seed"] == 3 and "null_battery_seed" not in p_real.extra

"""Run the PMI test of P5 (``_cooccurrence``) on a model and its control models.

Why a module of its own: the corpus statistics are built once from the trained model's tokenizer (the twins
share it) and then every model reads only its token rows for those words; the draws, the sequential stopping
and the untrained/spectrum counterparts are the geometry kinds' (``_controls.run_models``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from conceptspace.analyses.geometry._controls import GeometryOutput, run_models
from conceptspace.analyses.geometry._cooccurrence import (
    CorpusStats,
    corpus_stats,
    corpus_words,
    pmi_null_rows,
    pmi_results,
    select_words,
)
from conceptspace.analyses.geometry._run import canonical_sites, static_word_vectors
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.site_names import UNEMBED
from conceptspace.stats._sequential import SequentialPlan

Control = tuple[str, int, ConceptModel]


def single_token_checker(tokenizer: Any, max_tokens: int = 1) -> Any:
    """``words -> [bool]``: is ``" " + word`` (its mid-sentence form) at most ``max_tokens`` tokens of
    ``tokenizer``? The test's rule is one token (a word's vector is then one embedding row); more is for tiny
    test tokenizers, whose words are then the mean of their pieces' rows."""
    if max_tokens < 1:
        raise InvalidInputError(f"max_tokens must be >= 1; got {max_tokens}")

    def check(words: list[str]) -> list[bool]:
        if not words:
            return []
        encoded = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
        unknown = getattr(tokenizer, "unk_token_id", None)  # a word-level vocabulary maps a missing word to <unk>:
        return [1 <= len(ids) <= max_tokens and unknown not in ids for ids in encoded]  # one token, not the word

    return check


def model_corpus_stats(model: ConceptModel, texts: Sequence[str], *, n_words: int, window: int,
                       min_count: int, max_tokens: int = 1) -> CorpusStats:
    """The corpus statistics over the ``n_words`` most frequent usable words of ``model``'s tokenizer."""
    if not any(t.strip() for t in texts):
        raise InvalidInputError("the corpus is empty: no text to count words in")
    words = select_words(corpus_words(texts), single_token_checker(model.tokenizer, max_tokens), n_words)
    return corpus_stats(texts, words, window=window, min_count=min_count)


def cooccurrence_output(
    model: ConceptModel,
    corpus: CorpusStats,
    sites: Sequence[str],
    *,
    dataset: str,
    controls: Sequence[Control] = (),
    n_bootstrap: int = 300,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    n_permutations: int = 999,
    extra: dict[str, Any] | None = None,
) -> GeometryOutput:
    """The PMI tests at each static site (``unembed`` / ``embed``) of the model and of every control model; the
    sequential plan decides on the first site's partial correlation (row 0)."""
    names = canonical_sites(model, sites)
    bad = [s for s in names if s not in (UNEMBED, "embed")]
    if bad:
        raise InvalidInputError(f"the cooccurrence test reads token rows: sites must be 'unembed' or 'embed'; "
                                f"got {bad}")

    def tests_of(m: ConceptModel, control: str | None) -> dict[str, Any]:
        built = {}
        for site in names:
            X = static_word_vectors(m, corpus.words, which=site)
            built[site] = (pmi_null_rows(X, corpus, n_bootstrap=n_bootstrap, seed=seed),
                           partial(pmi_results, dataset=dataset, site=site, control=control, extra=extra))
        return built

    models: list[tuple[str | None, int, ConceptModel]] = [(None, 0, model), *controls]
    chosen = plan if plan is not None else SequentialPlan.fixed(n_permutations)
    return run_models(models, names, tests_of, chosen, (names[0], 0), seed)


def word_summary(corpus: CorpusStats, top: int = 12) -> dict[str, Any]:
    """What a reader needs to judge the corpus side: the words, the pairs scored, the strongest pairs."""
    iu = np.triu_indices(len(corpus.words), 1)
    scored = corpus.scored[iu]
    pmi = corpus.pmi[iu][scored]
    a, b = iu[0][scored], iu[1][scored]
    order = np.argsort(-pmi)[:top]
    return {
        "n_words": len(corpus.words),
        "n_pairs": corpus.n_pairs,
        "window": corpus.window,
        "min_count": corpus.min_count,
        "most_frequent": corpus.words[:top],
        "top_pmi_pairs": [f"{corpus.words[a[i]]}~{corpus.words[b[i]]} ({pmi[i]:.2f})" for i in order],
    }

"""P5 without the logit lens: do token-embedding cosines follow corpus co-occurrence (PMI)?

The test, its corpus statistics, partialling and null are declared in ``geometry._cooccurrence``. Primary test:
the partial Spearman correlation (frequency and token norm partialled out) at the first site (``unembed``:
SmolLM2 ties it to ``embed``). Exploratory rows beside it: the raw Spearman and the frequency-matched partial
correlation. Controls: the untrained twins (one test, mean over seeds) and the spectrum-matched twin; neither
has learned geometry, so both must fail (the claim's ``must_fail``). In a ``--null`` run the corpus words are
permuted against the token vectors first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.analyses._base import (
    SITES_TYPE,
    Analysis,
    AnalysisOutput,
    RunContext,
    is_int,
    is_sites,
    is_str,
    mark_roles,
    param,
    register,
)
from conceptspace.analyses.geometry._controls import primary_replicates
from conceptspace.analyses.geometry._cooccurrence import read_corpus
from conceptspace.analyses.geometry._run_cooccurrence import cooccurrence_output, model_corpus_stats, word_summary
from conceptspace.errors import InvalidInputError


@dataclass(frozen=True)
class CooccurrenceParams:
    # not ``dataset``: a suite's ``dataset`` names a concept set; this is running text (datasets/<corpus>/topics.tsv)
    corpus: str = param("python_docs_corpus", check=is_str, type_name="string",
                        doc="a bundled corpus folder (topics.tsv)")
    sites: list[str] = param(["unembed"], check=is_sites, type_name=SITES_TYPE, doc="'unembed' and/or 'embed'")
    n_words: int = param(300, check=is_int, type_name="integer", doc="most frequent usable corpus words")
    window: int = param(5, check=is_int, type_name="integer", doc="co-occurrence window, words either side")
    min_count: int = param(5, check=is_int, type_name="integer", doc="fewest co-occurrences of a scored pair")
    max_tokens: int = param(1, check=is_int, type_name="integer",
                            doc="most tokens of ' word' (1: one embedding row per word; more only for tiny tokenizers)")


@register
class CooccurrenceAnalysis(Analysis):
    kind = "cooccurrence"
    claims = ("P5",)
    Params = CooccurrenceParams
    description = ("partial Spearman of token-embedding cosines with corpus PMI (frequency and norm partialled "
                   "out; Mantel permutation of words)")
    smoke_params: ClassVar[dict[str, Any]] = {"n_words": 40, "min_count": 2, "max_tokens": 4}

    def run(self, context: RunContext, params: CooccurrenceParams) -> AnalysisOutput:
        corpus = model_corpus_stats(context.model, read_corpus(params.corpus), n_words=params.n_words,
                                    window=params.window, min_count=params.min_count,
                                    max_tokens=params.max_tokens)
        extra: dict[str, Any] = {}
        if context.null_seed is not None:
            corpus = corpus.permuted(np.random.default_rng(context.null_seed).permutation(len(corpus.words)))
            extra["null_battery"] = f"corpus words permuted against the token vectors (seed {context.null_seed})"
        sites = _primary_first(params.sites, context.primary_site)
        out = cooccurrence_output(
            context.model, corpus, sites, dataset=params.corpus,
            controls=[(c.name, c.seed, c.model) for c in context.control_models()],
            n_bootstrap=context.n_bootstrap, seed=context.seed, plan=context.sequential_plan(),
            n_permutations=context.n_permutations, extra=extra,
        )
        first = out.results[0].site
        results = mark_roles(out.results, lambda r: r.site == first and r.key.method == "partial_spearman")
        return AnalysisOutput(results, figure_data={"corpus": word_summary(corpus)},
                              replicates=primary_replicates(results, out.replicates))


def _primary_first(sites: list[str], primary_site: str | None) -> list[str]:
    """The sites with the pre-declared primary one first (the sequential plan decides on the first)."""
    if primary_site is None:
        return list(sites)
    if primary_site not in sites:
        raise InvalidInputError(f"the primary site {primary_site!r} is not among the analysis's sites {sites}; "
                                "add it to `sites` or choose one of them")
    return [primary_site, *(s for s in sites if s != primary_site)]

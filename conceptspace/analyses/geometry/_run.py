"""Geometry of concepts on a model: clustering, analogies, relation directions, RSA, proximity vs probability.

The statistics live in one-job modules (``_clustering``, ``_analogies``, ``_relations``, ``_similarity``,
``_logit_lens``) that work on
plain arrays; this module connects them to a model and a concept set: it reads the vectors at any site
(``embed``, ``layer.<i>``, ``final_norm``, or ``unembed`` for the static output rows), runs the analysis on the
trained model *and* on its untrained twin (``control="untrained"``), and returns one
:class:`~conceptspace.stats.ResultSet` so the report corrects across every analysis together.

Multi-token words are never dropped: contextual sites read them through their span (``span:mean``), the static
``unembed`` site averages the rows of their pieces, and every result's ``extra["tokenization"]`` says how many
words were one token and how many were several.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from conceptspace.activations._extract import extract
from conceptspace.analyses.geometry._analogies import ANALOGY_METHODS, analogy_tests, questions_from_pairs
from conceptspace.analyses.geometry._clustering import CLUSTER_METHODS, cluster, clustering_tests, contingency
from conceptspace.analyses.geometry._logit_lens import (
    ModelPasses,
    context_matrices,
    proximity_probability_tests,
    proximity_results,
    token_zipf,
)
from conceptspace.analyses.geometry._relations import relation_consistency_tests, relation_orthogonality_tests
from conceptspace.analyses.geometry._similarity import category_similarity, mantel_test, rsa_tests
from conceptspace.analyses.geometry._vector_ops import causal_inner_product, cosine_matrix
from conceptspace.concepts._pairs import analogy_quadruples
from conceptspace.concepts._schema import ConceptSet
from conceptspace.concepts._tokenization import tokenization_report
from conceptspace.depth import resolve_layers
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.models._sites import parse_site
from conceptspace.models._weights import embedding_rows, unembedding_matrix, unembedding_rows
from conceptspace.site_names import UNEMBED
from conceptspace.stats._results import ResultSet
from conceptspace.stats._sequential import SequentialPlan
from conceptspace.utils.deprecation import renamed_keywords

__all__ = [
    "ANALOGY_METHODS",
    "CLUSTER_METHODS",
    "UNEMBED",
    "analogy_tests",
    "category_similarity",
    "causal_inner_product",
    "cluster",
    "clustering_tests",
    "concept_vectors",
    "concept_vectors_by_site",
    "contingency",
    "cosine_matrix",
    "mantel_test",
    "proximity_probability_tests",
    "relation_consistency_tests",
    "relation_orthogonality_tests",
    "rsa_tests",
    "run_analogies",
    "run_clustering",
    "run_proximity_probability",
    "run_relations",
    "run_similarity",
    "select_rows",
    "token_zipf",
    "word_tokenization_counts",
]


# ------------------------------------------------------------------------------------------------- vectors
def static_word_vectors(model: ConceptModel, words: Sequence[str], which: str = UNEMBED) -> np.ndarray:
    """Mean of the unembedding (``which="unembed"``) or embedding (``"embed"``) rows over the pieces of " word".

    The leading space is how the word appears mid-sentence. Only the rows of these words are read (a remote
    model downloads just those).
    """
    if which not in (UNEMBED, "embed"):
        raise InvalidInputError(f"which must be 'unembed' or 'embed'; got {which!r}")
    encoded = model.tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    flat = [i for ids in encoded for i in ids]
    rows = unembedding_rows(model, flat) if which == UNEMBED else embedding_rows(model, flat)
    out, start = [], 0
    for ids in encoded:
        out.append(rows[start : start + len(ids)].astype(np.float64).mean(axis=0))
        start += len(ids)
    return np.stack(out)


def concept_vectors(
    model: ConceptModel,
    concept_set: ConceptSet,
    site: str,
    *,
    side: str = "a",
    rows: Sequence[int] | np.ndarray | None = None,
    position: str | None = None,
) -> np.ndarray:
    """(n, d) vectors of a concept set's items at ``site``.

    Word and pair sets are read through the word's span (``span:mean`` by default); sentence sets at the last
    token (``last``). ``side="b"`` reads the ``b`` word of a pairs set. ``site="unembed"`` gives static
    unembedding rows (averaged over a multi-token word's pieces).
    """
    name = canonical_sites(model, [site])[0]
    return concept_vectors_by_site(model, concept_set, [name], side=side, rows=rows, position=position)[name]


def canonical_sites(model: ConceptModel, sites: Sequence[str | int | float]) -> list[str]:
    """The model's own names of ``sites`` in the order given, each once: ``layer@0.5`` or ``0.5`` (a fraction of
    depth) and ``layer.-1`` become ``layer.<i>``, so every result is labelled with the block it really read."""
    if isinstance(sites, (str, int, float)):
        raise InvalidInputError(f"sites must be a list of site names, e.g. [{sites!r}]; got the single {sites!r}")
    return list(dict.fromkeys(UNEMBED if s == UNEMBED else parse_site(s, model.site_map) for s in sites))


def concept_vectors_by_site(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    side: str = "a",
    rows: Sequence[int] | np.ndarray | None = None,
    position: str | None = None,
) -> dict[str, np.ndarray]:
    """:func:`concept_vectors` at several sites from one extraction pass (one forward per batch, one cache entry).

    Keyed by canonical site name (``layer@0.5`` is read and returned as ``layer.<i>``; see :func:`canonical_sites`).
    """
    sites = canonical_sites(model, sites)
    if side not in ("a", "b"):
        raise InvalidInputError(f"side must be 'a' or 'b'; got {side!r}")
    texts: list[str]
    spans: list[tuple[int, int]] | None
    words: list[str] | None
    if side == "b":
        texts, spans, words = concept_set.texts_b, concept_set.spans_b, [str(w) for w in concept_set.column("b")]
    else:
        texts, spans, words = concept_set.texts, concept_set.spans, concept_set.words
    idx = list(range(len(texts))) if rows is None else [int(r) for r in rows]
    if not idx:
        raise InvalidInputError("no rows selected")
    out: dict[str, np.ndarray] = {}
    if UNEMBED in sites:
        if words is None:
            raise InvalidInputError("the unembed site needs word items; sentence sets have no word per item")
        out[UNEMBED] = static_word_vectors(model, [words[i] for i in idx])
    contextual = [s for s in sites if s != UNEMBED]
    if contextual:
        pos = position or ("span:mean" if spans is not None else "last")
        chosen_spans = None if spans is None or not pos.startswith("span") else [spans[i] for i in idx]
        acts = extract(
            model, [texts[i] for i in idx], sites=contextual, position=pos, spans=chosen_spans, progress=False
        )
        out.update({s: np.asarray(acts[s], dtype=np.float64) for s in contextual})
    return out


def word_tokenization_counts(model: ConceptModel, concept_set: ConceptSet) -> dict[str, int] | None:
    """How the set's words tokenize (single vs multi-token), for ``extra``; None for sentence sets."""
    if not concept_set.is_word_level:
        return None
    report = tokenization_report(concept_set, model.tokenizer)
    return {
        "n_words": report.n_items,
        "single_token_leading_space": report.single_token_leading_space,
        "single_token_no_space": report.single_token_no_space,
        "multi_token": report.multi_token,
        "span_single_token_in_context": report.in_context_single,
        "span_multi_token_in_context": report.n_items - report.in_context_single,
    }


def select_rows(
    concept_set: ConceptSet,
    *,
    classes: Sequence[str] | None = None,
    max_per_class: int | None = None,
    unique_words: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Seeded row subset of a labelled set: chosen classes, at most ``max_per_class`` rows each.

    ``unique_words`` drops words listed under several classes (their vectors are identical, so no clustering
    could put them in both).
    """
    labels = concept_set.labels
    names = concept_set.label_names or [str(i) for i in range(int(labels.max()) + 1)]
    keep = np.ones(len(labels), dtype=bool)
    if classes is not None:
        unknown = sorted(set(classes) - set(names))
        if unknown:
            raise InvalidInputError(f"unknown class(es) {unknown}; classes are {names[:20]}...")
        keep &= np.isin(labels, [names.index(c) for c in classes])
    words = concept_set.words
    if unique_words and words is not None:
        per_word: dict[str, set[int]] = {}
        for w, lab, k in zip(words, labels, keep, strict=True):
            if k:
                per_word.setdefault(w, set()).add(int(lab))
        keep &= np.array([len(per_word.get(w, ())) <= 1 for w in words])
        seen: set[str] = set()
        for i, w in enumerate(words):  # one row per word
            if keep[i]:
                keep[i] = w not in seen
                seen.add(w)
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for lab in np.unique(labels[keep]):
        members = np.flatnonzero(keep & (labels == lab))
        if max_per_class is not None and members.size > max_per_class:
            members = np.sort(rng.choice(members, max_per_class, replace=False))
        out.extend(members.tolist())
    return np.array(sorted(out), dtype=np.int64)


def _models(
    model: ConceptModel, twin: bool | ConceptModel | None, twin_seed: int
) -> list[tuple[ConceptModel, str | None]]:
    out: list[tuple[ConceptModel, str | None]] = [(model, None)]
    if twin is True:
        out.append((model.untrained(twin_seed), "untrained"))
    elif isinstance(twin, ConceptModel):
        out.append((twin, "untrained"))
    return out


def _position(site: str, concept_set: ConceptSet, pairs: bool = False) -> str | None:
    """Where a site's vectors are read: nowhere for the static unembedding rows, else the word's span mean (the
    last token for sentence sets without spans; pairs sets always have spans)."""
    if site == UNEMBED:
        return None
    return "span:mean" if pairs or concept_set.spans else "last"


# ------------------------------------------------------------------------------------------------ runners
@renamed_keywords(n_boot="n_bootstrap")
def run_clustering(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    rows: Sequence[int] | None = None,
    methods: Sequence[str] = CLUSTER_METHODS,
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> ResultSet:
    """Clustering against the set's labels at each site, for the model and its untrained twin."""
    sites = canonical_sites(model, sites)
    idx = np.arange(len(concept_set)) if rows is None else np.asarray(rows, dtype=np.int64)
    labels = concept_set.labels[idx]
    groups = np.asarray(concept_set.groups)[idx]
    tokenization = word_tokenization_counts(model, concept_set.replace(data=concept_set.data.select(idx.tolist())))
    results = ResultSet()
    for m, control in _models(model, twin, twin_seed):
        vectors = concept_vectors_by_site(m, concept_set, sites, rows=idx)
        for site in sites:
            X = vectors[site]
            results = results + clustering_tests(
                X, labels, groups=groups, methods=methods, n_permutations=n_permutations, n_bootstrap=n_bootstrap,
                seed=seed, dataset=concept_set.name, site=site, control=control,
                position=_position(site, concept_set),
                extra={"tokenization": tokenization},
            )
    return results


@renamed_keywords(n_boot="n_bootstrap")
def run_analogies(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    max_per_relation: int | None = 200,
    methods: Sequence[str] = ANALOGY_METHODS,
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    n_permutations: int = 1000,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> ResultSet:
    """3CosAdd / 3CosMul vs only-b on a pairs set; candidates are every distinct word of the set."""
    sites = canonical_sites(model, sites)
    a_words, b_words = concept_set.column("a"), concept_set.column("b")
    vocabulary = list(dict.fromkeys([*a_words, *b_words]))
    quads = analogy_quadruples(concept_set, max_per_relation=max_per_relation, seed=seed)
    questions = questions_from_pairs(
        list(zip(a_words, b_words, strict=True)), concept_set.relations, vocabulary, quads, concept_set.groups
    )
    first_a = {w: i for i, w in reversed(list(enumerate(a_words)))}
    first_b = {w: i for i, w in reversed(list(enumerate(b_words)))}
    tokenization = word_tokenization_counts(model, concept_set)
    results = ResultSet()
    for m, control in _models(model, twin, twin_seed):
        a_vectors = concept_vectors_by_site(m, concept_set, sites, side="a")
        b_vectors = concept_vectors_by_site(m, concept_set, sites, side="b")
        for site in sites:
            A, B = a_vectors[site], b_vectors[site]
            V = np.stack([A[first_a[w]] if w in first_a else B[first_b[w]] for w in vocabulary])
            results = results + analogy_tests(
                V, questions, methods=methods, n_permutations=n_permutations, n_bootstrap=n_bootstrap, seed=seed,
                dataset=concept_set.name, site=site, control=control,
                position=_position(site, concept_set, pairs=True),
                extra={"tokenization": tokenization, "max_per_relation": max_per_relation},
            )
    return results


@renamed_keywords(n_boot="n_bootstrap")
def run_relations(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    orthogonal: Sequence[tuple[str, str]] = (),
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> ResultSet:
    """Relation consistency (and orthogonality of the ``orthogonal`` relation pairs), Euclidean and causal.

    The causal inner product is fitted on each model's own unembedding (the twin's on the twin's).
    """
    sites = canonical_sites(model, sites)
    relations = concept_set.relations
    tokenization = word_tokenization_counts(model, concept_set)
    results = ResultSet()
    for m, control in _models(model, twin, twin_seed):
        causal = causal_inner_product(unembedding_matrix(m))
        a_vectors = concept_vectors_by_site(m, concept_set, sites, side="a")
        b_vectors = concept_vectors_by_site(m, concept_set, sites, side="b")
        for site in sites:
            A, B = a_vectors[site], b_vectors[site]
            position = _position(site, concept_set, pairs=True)
            for ip in (None, causal):
                common: dict[str, Any] = {"dataset": concept_set.name, "site": site, "control": control,
                                          "position": position, "seed": seed, "inner_product": ip,
                                          "n_bootstrap": n_bootstrap, "extra": {"tokenization": tokenization}}
                results = results + relation_consistency_tests(A, B, relations, n_permutations=n_permutations,
                                                               **common)
                if orthogonal:
                    results = results + relation_orthogonality_tests(A, B, relations, orthogonal, **common)
    return results


@renamed_keywords(n_boot="n_bootstrap")
def run_similarity(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    rows: Sequence[int] | None = None,
    reference: np.ndarray | None = None,
    reference_name: str | None = None,
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    n_permutations: int = 1000,
    n_bootstrap: int = 300,
    seed: int = 0,
) -> ResultSet:
    """RSA against ``reference`` (n x n over the selected rows) or, by default, shared-category similarity."""
    sites = canonical_sites(model, sites)
    idx = np.arange(len(concept_set)) if rows is None else np.asarray(rows, dtype=np.int64)
    ref = category_similarity(concept_set.labels[idx]) if reference is None else reference
    name = reference_name or ("shared_category" if reference is None else "reference")
    groups = np.asarray(concept_set.groups)[idx]
    results = ResultSet()
    for m, control in _models(model, twin, twin_seed):
        vectors = concept_vectors_by_site(m, concept_set, sites, rows=idx)
        for site in sites:
            X = vectors[site]
            results = results + rsa_tests(
                X, ref, groups=groups, n_permutations=n_permutations, n_bootstrap=n_bootstrap, seed=seed,
                dataset=concept_set.name, reference_name=name, site=site, control=control,
                position=_position(site, concept_set),
            )
    return results


@renamed_keywords(n_boot="n_bootstrap")
def run_proximity_probability(
    model: ConceptModel,
    texts: Sequence[str],
    *,
    layers: Sequence[int | float] | str | None = None,
    dataset: str = "",
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> ResultSet:
    """Claim 5 (logit lens) for the model and its untrained twin on shared draws; see ``_logit_lens``."""
    texts = list(texts)
    chosen = resolve_layers("all" if layers is None else layers, model.n_layers, model=model.name)
    groups = [ModelPasses(control, (twin_seed,), (context_matrices(m, texts, layers=chosen),))
              for m, control in _models(model, twin, twin_seed)]
    results, _ = proximity_results(groups, dataset=dataset, plan=SequentialPlan.fixed(n_permutations),
                                   n_bootstrap=n_bootstrap, seed=seed)
    return results

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
from functools import partial
from typing import Any

import numpy as np

from conceptspace.activations._extract import extract
from conceptspace.analyses.geometry._analogies import (
    ANALOGY_METHODS,
    AnalogyRows,
    analogy_null_rows,
    analogy_results,
    analogy_tests,
    questions_from_pairs,
    repairing,
)
from conceptspace.analyses.geometry._clustering import (
    CLUSTER_METHODS,
    DEFAULT_CLUSTER_METHODS,
    cluster,
    clustering_null_rows,
    clustering_results,
    clustering_tests,
    contingency,
)
from conceptspace.analyses.geometry._controls import GeometryOutput, run_models, slice_null
from conceptspace.analyses.geometry._logit_lens import (
    ModelPasses,
    context_matrices,
    proximity_probability_tests,
    proximity_results,
    token_zipf,
)
from conceptspace.analyses.geometry._nulls import NullRows, stack_rows
from conceptspace.analyses.geometry._relations import (
    primary_relation_index,
    relation_consistency_tests,
    relation_null_rows,
    relation_orthogonality_tests,
    relation_results,
    token_split_rows,
)
from conceptspace.analyses.geometry._similarity import (
    category_similarity,
    mantel_test,
    rsa_null_rows,
    rsa_results,
    rsa_tests,
)
from conceptspace.analyses.geometry._vector_ops import causal_inner_product, cosine_matrix
from conceptspace.concepts._controls import frequency_matched_rows
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
from conceptspace.stats._sequential import SequentialNull, SequentialPlan, sequential_null
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


def single_token(model: ConceptModel, words: Sequence[Any]) -> np.ndarray:
    """Per word: is it one token where it follows another word (" word", as the static rows read it)?"""
    encoded = model.tokenizer([" " + str(w) for w in words], add_special_tokens=False)["input_ids"]
    return np.array([len(ids) == 1 for ids in encoded], dtype=bool)


def select_rows(
    concept_set: ConceptSet,
    *,
    classes: Sequence[str] | None = None,
    max_per_class: int | None = None,
    unique_words: bool = True,
    match_frequency: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Seeded row subset of a labelled set: chosen classes, at most ``max_per_class`` rows each.

    ``unique_words`` drops words listed under several classes (their vectors are identical, so no clustering
    could put them in both). ``match_frequency`` then keeps a subset whose classes have the same word-frequency
    histogram (:func:`conceptspace.concepts.frequency_matched_rows`) before the per-class cap.
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
    if match_frequency:
        if words is None:
            raise InvalidInputError(f"{concept_set.name!r} has no words to match on frequency")
        candidates = np.flatnonzero(keep)
        matched = candidates[frequency_matched_rows([words[i] for i in candidates], labels[candidates], seed=seed)]
        keep = np.zeros_like(keep)
        keep[matched] = True
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


#: a control model of a run: (control name, its seed, the model)
Control = tuple[str, int, ConceptModel]


def _controls(model: ConceptModel, twin: bool | ConceptModel | None, twin_seed: int,
              controls: Sequence[Control] | None) -> list[tuple[str | None, int, ConceptModel]]:
    """The trained model first, then ``controls`` (or, when None, the one ``twin`` of the older API)."""
    if controls is None:
        controls = [("untrained", twin_seed, m) for m, c in _models(model, twin, twin_seed) if c is not None]
    return [(None, 0, model), *controls]


def _plan(plan: SequentialPlan | None, n_permutations: int) -> SequentialPlan:
    return plan if plan is not None else SequentialPlan.fixed(n_permutations)


def resolve_primary_site(model: ConceptModel, sites: Sequence[str], primary_site: str | None) -> str:
    """The canonical site of an analysis's primary test: ``primary_site`` or, when None, the first site."""
    return _primary_site(canonical_sites(model, sites), primary_site)


def _primary_site(sites: list[str], primary_site: str | None) -> str:
    """The site of the primary test: ``primary_site`` (canonical name) or the first site."""
    if primary_site is None:
        return sites[0]
    if primary_site not in sites:
        raise InvalidInputError(f"the primary site {primary_site!r} is not among the analysis's sites {sites}; "
                                "add it to `sites` or choose one of them")
    return primary_site


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
    methods: Sequence[str] = DEFAULT_CLUSTER_METHODS,
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> ResultSet:
    """Clustering against the set's labels at each site, for the model and its untrained twin."""
    return clustering_output(model, concept_set, sites, rows=rows, methods=methods, twin=twin, twin_seed=twin_seed,
                             n_permutations=n_permutations, n_bootstrap=n_bootstrap, seed=seed).results


def clustering_output(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    rows: Sequence[int] | None = None,
    methods: Sequence[str] = DEFAULT_CLUSTER_METHODS,
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    controls: Sequence[Control] | None = None,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    primary_site: str | None = None,
) -> GeometryOutput:
    """:func:`run_clustering` with controls, a sequential plan deciding on the first method's ARI at the primary
    site, and the effect replicates."""
    sites = canonical_sites(model, sites)
    idx = np.arange(len(concept_set)) if rows is None else np.asarray(rows, dtype=np.int64)
    labels = concept_set.labels[idx]
    groups = np.asarray(concept_set.groups)[idx]
    tokenization = word_tokenization_counts(model, concept_set.replace(data=concept_set.data.select(idx.tolist())))

    def tests_of(m: ConceptModel, control: str | None) -> dict[str, Any]:
        vectors = concept_vectors_by_site(m, concept_set, sites, rows=idx)
        built = {}
        for site in sites:
            null_rows = clustering_null_rows(vectors[site], labels, groups=groups, methods=methods,
                                             n_bootstrap=n_bootstrap, seed=seed)
            built[site] = (null_rows, partial(clustering_results, dataset=concept_set.name, site=site,
                                              position=_position(site, concept_set), control=control,
                                              extra={"tokenization": tokenization}))
        return built

    primary = _primary_site(sites, primary_site)
    return run_models(_controls(model, twin, twin_seed, controls), sites, tests_of, _plan(plan, n_permutations),
                      (primary, 0), seed)


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
    return analogies_output(model, concept_set, sites, max_per_relation=max_per_relation, methods=methods, twin=twin,
                            twin_seed=twin_seed, n_permutations=n_permutations, n_bootstrap=n_bootstrap,
                            seed=seed).results


def analogies_output(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    max_per_relation: int | None = 200,
    methods: Sequence[str] = ANALOGY_METHODS,
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    controls: Sequence[Control] | None = None,
    n_permutations: int = 1000,
    n_bootstrap: int = 500,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    primary_site: str | None = None,
    null_seed: int | None = None,
) -> GeometryOutput:
    """:func:`run_analogies` with controls, a sequential plan deciding on the first method's overall paired
    difference at the primary site, the effect replicates, and (``null_seed``) the pairs re-paired first."""
    sites = canonical_sites(model, sites)
    a_words, b_words = concept_set.column("a"), concept_set.column("b")
    vocabulary = list(dict.fromkeys([*a_words, *b_words]))
    quads = analogy_quadruples(concept_set, max_per_relation=max_per_relation, seed=seed)
    questions = questions_from_pairs(
        list(zip(a_words, b_words, strict=True)), concept_set.relations, vocabulary, quads, concept_set.groups
    )
    if null_seed is not None:  # the null battery: every relation's b words re-paired among its a words
        questions = questions.repaired(repairing(questions, np.random.default_rng([null_seed, 104723])))
    first_a = {w: i for i, w in reversed(list(enumerate(a_words)))}
    first_b = {w: i for i, w in reversed(list(enumerate(b_words)))}
    tokenization = word_tokenization_counts(model, concept_set)
    primary = _primary_site(sites, primary_site)
    full_plan = _plan(plan, n_permutations)

    def tests_of(m: ConceptModel, control: str | None) -> dict[str, Any]:
        a_vectors = concept_vectors_by_site(m, concept_set, sites, side="a")
        b_vectors = concept_vectors_by_site(m, concept_set, sites, side="b")
        built = {}
        for site in sites:
            A, B = a_vectors[site], b_vectors[site]
            V = np.stack([A[first_a[w]] if w in first_a else B[first_b[w]] for w in vocabulary])
            rows = analogy_null_rows(V, questions, methods=methods, n_bootstrap=n_bootstrap, seed=seed)
            deciding = control is None and site == primary
            built[site] = (rows.flips, partial(
                _finish_analogies, rows, full_plan if deciding else SequentialPlan.fixed(full_plan.start),
                dataset=concept_set.name, site=site, position=_position(site, concept_set, pairs=True),
                control=control, extra={"tokenization": tokenization, "max_per_relation": max_per_relation,
                                        **({"null_battery_seed": null_seed} if null_seed is not None else {})}))
        return built

    return run_models(_controls(model, twin, twin_seed, controls), sites, tests_of, full_plan, (primary, 0), seed)


def _finish_analogies(rows: AnalogyRows, plan: SequentialPlan, flips_rows: NullRows, flips: SequentialNull,
                      **naming: Any) -> tuple[list[Any], list[np.ndarray]]:
    """The re-pairing guard's draws (sequential where the flips are, unless the flips already settled that the
    primary row is not significant: the larger p then decides), then the paired tests and baselines."""
    exact = rows.exact_flip_p[0]
    flip_low, flip_settled = (exact, True) if exact is not None else (float(flips.mc_low[0]), flips.settled)
    if flip_settled and flip_low > max(plan.thresholds):
        plan = SequentialPlan.fixed(plan.start)
    repaired = sequential_null(rows.repaired.draw, rows.repaired.observed, plan, decide=[0])
    results, reps, baselines, base_reps = analogy_results(rows, flips, repaired, **naming)
    if naming.get("control") is not None:
        return results, reps
    return results + baselines, reps + base_reps


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
    return relations_output(model, concept_set, sites, orthogonal=orthogonal, twin=twin, twin_seed=twin_seed,
                            n_permutations=n_permutations, n_bootstrap=n_bootstrap, seed=seed).results


def relations_output(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    orthogonal: Sequence[tuple[str, str]] = (),
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    controls: Sequence[Control] | None = None,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    primary_site: str | None = None,
    null_seed: int | None = None,
) -> GeometryOutput:
    """:func:`run_relations` with controls, a sequential plan deciding on the Euclidean mean pairwise cosine
    (pooled over relations) at the primary site, the effect replicates, and (``null_seed``) the b words
    re-paired within each relation first. Every statistic is also reported on the single-token-word pairs and,
    apart, on the pairs with a multi-token word (``extra["words"]``; see ``_relations.token_split_rows``)."""
    sites = canonical_sites(model, sites)
    relations = concept_set.relations
    tokenization = word_tokenization_counts(model, concept_set)
    repair = None if null_seed is None else _repairing_rows(relations, null_seed)
    one_b = single_token(model, concept_set.column("b"))
    single = single_token(model, concept_set.column("a")) & (one_b if repair is None else one_b[repair])
    extra: dict[str, Any] = {"tokenization": tokenization,
                             **({"null_battery_seed": null_seed} if null_seed is not None else {})}

    def tests_of(m: ConceptModel, control: str | None) -> dict[str, Any]:
        causal = causal_inner_product(unembedding_matrix(m))
        a_vectors = concept_vectors_by_site(m, concept_set, sites, side="a")
        b_vectors = concept_vectors_by_site(m, concept_set, sites, side="b")
        built = {}
        for site in sites:
            A, B = a_vectors[site], b_vectors[site]
            B = B if repair is None else B[repair]
            position = _position(site, concept_set, pairs=True)
            site_causal = causal if site in (UNEMBED, "embed") else causal.for_context()
            site_extra = {**extra, "causal_transform": CAUSAL_TRANSFORMS[site_causal.side]}
            parts = [relation_null_rows(A, B, relations, inner_product=ip, n_bootstrap=n_bootstrap, seed=seed)
                     for ip in (None, site_causal)]
            parts += [split for ip in (None, site_causal) for split in token_split_rows(
                A, B, relations, single, inner_product=ip, n_bootstrap=n_bootstrap, seed=seed)]
            extras = ResultSet()
            if orthogonal:
                for ip in (None, site_causal):
                    extras = extras + relation_orthogonality_tests(
                        A, B, relations, orthogonal, inner_product=ip, n_bootstrap=n_bootstrap, seed=seed,
                        dataset=concept_set.name, site=site, position=position, control=control,
                        extra=site_extra)
            built[site] = (stack_rows(parts), partial(_finish_relations, parts, list(extras),
                                                      dataset=concept_set.name, site=site, position=position,
                                                      control=control, extra=site_extra, n_bootstrap=n_bootstrap))
        return built

    primary = _primary_site(sites, primary_site)
    return run_models(_controls(model, twin, twin_seed, controls), sites, tests_of, _plan(plan, n_permutations),
                      (primary, primary_relation_index(relations)), seed)


#: what the causal rows of a site were whitened with (token vectors vs context vectors: Park et al.'s two maps)
CAUSAL_TRANSFORMS = {
    "unembedding": "Cov(U)^-1/2 (token vectors: unembedding/embedding rows)",
    "context": "Cov(U)^+1/2 (context vectors: Park et al.'s dual map; their guarantee covers the last layer only)",
}


def _repairing_rows(relations: Sequence[str], seed: int) -> np.ndarray:
    """Row order that re-pairs the b words among the a words of each relation (the null battery)."""
    rel = np.asarray(list(relations), dtype=str)
    rng = np.random.default_rng([seed, 104723])
    out = np.arange(rel.size)
    for r in sorted(set(rel.tolist())):
        idx = np.flatnonzero(rel == r)
        out[idx] = idx[rng.permutation(idx.size)]
    return out


def _finish_relations(parts: list[NullRows], orthogonality: list[Any], rows: NullRows, out: SequentialNull,
                      **naming: Any) -> tuple[list[Any], list[np.ndarray]]:
    """The consistency tests of each inner product's rows (then the orthogonality tests, without replicates)."""
    results: list[Any] = []
    reps: list[np.ndarray] = []
    start = 0
    for part in parts:
        stop = start + part.observed.size
        tests, part_reps = relation_results(part, slice_null(out, slice(start, stop)), **naming)
        results += tests
        reps += part_reps
        start = stop
    return results + orthogonality, reps + [np.full(2, np.nan) for _ in orthogonality]


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
    return similarity_output(model, concept_set, sites, rows=rows, reference=reference,
                             reference_name=reference_name, twin=twin, twin_seed=twin_seed,
                             n_permutations=n_permutations, n_bootstrap=n_bootstrap, seed=seed).results


def similarity_output(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    rows: Sequence[int] | None = None,
    reference: np.ndarray | None = None,
    reference_name: str | None = None,
    twin: bool | ConceptModel | None = True,
    twin_seed: int = 0,
    controls: Sequence[Control] | None = None,
    n_permutations: int = 1000,
    n_bootstrap: int = 300,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    primary_site: str | None = None,
) -> GeometryOutput:
    """:func:`run_similarity` with controls, a sequential plan deciding on the primary site's RSA, and the
    effect replicates."""
    sites = canonical_sites(model, sites)
    idx = np.arange(len(concept_set)) if rows is None else np.asarray(rows, dtype=np.int64)
    ref = category_similarity(concept_set.labels[idx]) if reference is None else reference
    name = reference_name or ("shared_category" if reference is None else "reference")
    groups = np.asarray(concept_set.groups)[idx]

    def tests_of(m: ConceptModel, control: str | None) -> dict[str, Any]:
        vectors = concept_vectors_by_site(m, concept_set, sites, rows=idx)
        return {site: (rsa_null_rows(vectors[site], ref, groups=groups, n_bootstrap=n_bootstrap, seed=seed),
                       partial(rsa_results, dataset=concept_set.name, reference_name=name, site=site,
                               position=_position(site, concept_set), control=control))
                for site in sites}

    primary = _primary_site(sites, primary_site)
    return run_models(_controls(model, twin, twin_seed, controls), sites, tests_of, _plan(plan, n_permutations),
                      (primary, 0), seed)


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

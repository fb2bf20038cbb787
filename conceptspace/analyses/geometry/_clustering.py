"""Do vectors cluster by concept? Unsupervised clustering scored against concept labels, with a label null.

Why unsupervised: a probe can find a separating direction in almost any high-dimensional cloud; the
concept-space reading ("concepts are places") predicts more, that items of one concept sit *together*. So we
cluster without labels (k-means; agglomerative with cosine/average linkage and with Ward), score agreement with
the labels (adjusted Rand index, NMI, purity) and the silhouette of the true labels, and compare each with a
permutation null on the labels (whole groups move together when a group carries one label).

The clustering does not depend on the labels, so it is computed once; every permutation only re-scores it.
Contingency-table metrics are written here, vectorised over permutations and bootstrap replicates; a unit test
checks them against scikit-learn. CIs resample groups over the evaluation sample (cluster assignments fixed,
as in the null), with the bootstrap's variance matched to the permutation null (``_nulls``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans

from conceptspace.analyses.geometry._naming import geometry_key
from conceptspace.analyses.geometry._nulls import NullRows, batch_rng, fixed_or_sequential, numbered, outcomes
from conceptspace.analyses.geometry._vector_ops import (
    check_class_labels,
    check_vectors,
    cosine_matrix,
    group_codes,
    unit_rows,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import group_counts
from conceptspace.stats._permutation import draw_permutations
from conceptspace.stats._results import ResultSet, TestResult
from conceptspace.stats._sequential import SequentialNull, SequentialPlan
from conceptspace.utils.deprecation import renamed_keywords

CLUSTER_METHODS: tuple[str, ...] = ("kmeans", "agglomerative_cosine", "agglomerative_ward", "kmeans_silhouette")
#: what the runners use when no methods are named: the three with k = the number of classes (the silhouette's
#: search over k costs eleven k-means fits, so it is asked for by name)
DEFAULT_CLUSTER_METHODS: tuple[str, ...] = CLUSTER_METHODS[:3]
#: the largest k ``kmeans_silhouette`` tries (and at most a fifth of the rows)
MAX_AUTO_CLUSTERS = 12
AGREEMENT_METRICS: tuple[str, ...] = ("ari", "nmi", "purity")


def cluster(X: Any, n_clusters: int, method: str = "kmeans", *, seed: int = 0) -> np.ndarray:
    """Cluster ids (n,) of the rows of X.

    ``kmeans`` runs on unit-normalised rows (spherical k-means, so norm differences between tokens do not
    dominate), ``agglomerative_cosine`` uses average linkage on cosine distance, ``agglomerative_ward`` Ward
    linkage on Euclidean distance of the raw rows. ``kmeans_silhouette`` ignores ``n_clusters``: spherical
    k-means with the k in 2..min(12, n/5) whose clustering has the highest cosine silhouette. Why: fixing k to
    the number of classes hands the clustering one fact from the labels; a k chosen from the vectors alone asks
    whether the categories are what the geometry finds on its own (the agreement scores then measure that).
    """
    X = check_vectors(X)
    if not 2 <= n_clusters <= X.shape[0]:
        raise InvalidInputError(f"n_clusters must be between 2 and the number of rows ({X.shape[0]}); got {n_clusters}")
    if method == "kmeans":
        model: Any = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
        return np.asarray(model.fit_predict(unit_rows(X)), dtype=np.int64)
    if method == "kmeans_silhouette":
        return _kmeans_best_silhouette(unit_rows(X), seed)
    if method == "agglomerative_cosine":
        model = AgglomerativeClustering(n_clusters=n_clusters, metric="cosine", linkage="average")
        return np.asarray(model.fit_predict(X), dtype=np.int64)
    if method == "agglomerative_ward":
        model = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
        return np.asarray(model.fit_predict(X), dtype=np.int64)
    raise InvalidInputError(f"unknown clustering method {method!r}; use one of {', '.join(CLUSTER_METHODS)}")


def contingency(true_codes: np.ndarray, pred_codes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Contingency tables (B, K, C) of true classes by clusters.

    ``true_codes`` is (n,) or (B, n) (B labelings at once); ``weights`` (B, n) are row multiplicities (bootstrap
    replicates), applied to a single labelling when ``true_codes`` is 1-D.
    """
    n_true = int(np.max(true_codes)) + 1
    n_pred = int(pred_codes.max()) + 1
    if weights is not None:
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        t = np.broadcast_to(np.atleast_2d(true_codes), w.shape)
    else:
        t = np.atleast_2d(true_codes)
        w = np.ones(t.shape)
    B = t.shape[0]
    cells = t * n_pred + pred_codes[None, :] + (np.arange(B) * n_true * n_pred)[:, None]
    table = np.bincount(cells.ravel(), weights=w.ravel(), minlength=B * n_true * n_pred)
    return table.reshape(B, n_true, n_pred)


def _comb2(x: np.ndarray) -> np.ndarray:
    return x * (x - 1.0) / 2.0


def ari_from_table(table: np.ndarray) -> np.ndarray:
    """Adjusted Rand index (Hubert & Arabie) of each (K, C) table; 1.0 where both partitions are trivial."""
    n = table.sum(axis=(-2, -1))
    index = _comb2(table).sum(axis=(-2, -1))
    rows = _comb2(table.sum(axis=-1)).sum(axis=-1)
    cols = _comb2(table.sum(axis=-2)).sum(axis=-1)
    expected = rows * cols / np.maximum(_comb2(n), 1e-12)
    top = (rows + cols) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(np.isclose(top, expected), 1.0, (index - expected) / (top - expected))
    return out


def _entropy(counts: np.ndarray) -> np.ndarray:
    n = counts.sum(axis=-1, keepdims=True)
    p = np.divide(counts, n, out=np.zeros_like(counts), where=n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


def nmi_from_table(table: np.ndarray) -> np.ndarray:
    """Normalised mutual information with the arithmetic-mean normaliser (scikit-learn's default)."""
    n = table.sum(axis=(-2, -1))[..., None, None]
    rows = table.sum(axis=-1, keepdims=True)
    cols = table.sum(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(table > 0, table / n * np.log(table * n / (rows * cols)), 0.0)
    mi = terms.sum(axis=(-2, -1))
    h_true = _entropy(table.sum(axis=-1))
    h_pred = _entropy(table.sum(axis=-2))
    denom = (h_true + h_pred) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, np.maximum(mi, 0.0) / np.where(denom > 0, denom, 1.0), 1.0)


def purity_from_table(table: np.ndarray) -> np.ndarray:
    """Fraction of rows whose cluster's majority class is their own class."""
    return table.max(axis=-2).sum(axis=-1) / table.sum(axis=(-2, -1))


_METRIC_FUNCTIONS = {"ari": ari_from_table, "nmi": nmi_from_table, "purity": purity_from_table}


def silhouette_values(distances: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-row silhouette of the labelling(s) ``codes`` ((n,) or (B, n)) under a precomputed distance matrix.

    Singleton classes get 0 (scikit-learn's convention). Vectorised over labelings: one (n, n) x (n, K)
    product per labelling.
    """
    codes2 = np.atleast_2d(codes)
    n = distances.shape[0]
    K = int(codes2.max()) + 1
    out = np.empty(codes2.shape, dtype=np.float64)
    for b, c in enumerate(codes2):
        onehot = np.zeros((n, K))
        onehot[np.arange(n), c] = 1.0
        sums = distances @ onehot  # (n, K)
        sizes = onehot.sum(axis=0)
        own = sizes[c]
        a = np.divide(sums[np.arange(n), c], own - 1.0, out=np.zeros(n), where=own > 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            means = sums / sizes
        means[np.arange(n), c] = np.inf
        means[:, sizes == 0] = np.inf
        bb = means.min(axis=1)
        denom = np.maximum(a, bb)
        s = np.divide(bb - a, denom, out=np.zeros(n), where=denom > 0)
        out[b] = np.where(own > 1, s, 0.0)
    return out if np.ndim(codes) == 2 else out[0]


#: permuted data sets whose bootstrap measures the bootstrap's excess variance (see ``_nulls``)
N_EXCESS_SETS = 4


def _kmeans_best_silhouette(U: np.ndarray, seed: int) -> np.ndarray:
    """Spherical k-means labels for the k (2..min(MAX_AUTO_CLUSTERS, n // 5)) with the best cosine silhouette."""
    from sklearn.metrics import silhouette_score

    top = max(2, min(MAX_AUTO_CLUSTERS, U.shape[0] // 5))
    best: tuple[float, np.ndarray] | None = None
    for k in range(2, top + 1):
        pred = np.asarray(KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(U), dtype=np.int64)
        if np.unique(pred).size < 2:
            continue
        score = float(silhouette_score(U, pred, metric="cosine"))
        if best is None or score > best[0]:
            best = (score, pred)
    if best is None:
        raise InvalidInputError("kmeans_silhouette found no clustering with two clusters (identical rows?)")
    return best[1]


def clustering_null_rows(
    X: Any,
    labels: Any,
    *,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    methods: Sequence[str] = DEFAULT_CLUSTER_METHODS,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> NullRows:
    """Rows (per method: ARI, NMI, purity; then the silhouette of the labels) sharing one label-permutation
    stream: permutation ``i`` comes from ``(seed, i)`` (whole groups move together when a group carries one
    label), so the rows of several sites built with one seed share their draws.

    The clusterings do not depend on the labels: they are computed once, and every permutation and bootstrap
    replicate only re-scores them (vectorised contingency tables)."""
    X = check_vectors(X, min_rows=4)
    codes = check_class_labels(labels, X.shape[0])
    gcodes = group_codes(groups, X.shape[0])
    if n_bootstrap < 2:
        raise InvalidInputError(f"n_bootstrap must be >= 2; got {n_bootstrap}")
    K = int(codes.max()) + 1
    grouping = None if groups is None else gcodes
    scheme = draw_permutations(codes, grouping, 1, seed=seed)[1]

    def permuted(rng: np.random.Generator) -> np.ndarray:
        perm = draw_permutations(codes, grouping, 1, seed=int(rng.integers(2**63 - 1)))[0][0]
        return codes[perm]

    preds = {method: cluster(X, K, method, seed=seed) for method in methods}
    distances = np.clip(1.0 - cosine_matrix(X), 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    weights = group_counts(gcodes, X.shape[0], n_bootstrap, seed + 1)  # row multiplicities per replicate

    def scores(labelling: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """Every row's statistic for one labelling: on the data (w None) or on each resample of ``w``."""
        out = []
        for pred in preds.values():
            table = contingency(labelling, pred, w)
            out += [_METRIC_FUNCTIONS[metric](table) for metric in AGREEMENT_METRICS]
        values = silhouette_values(distances, labelling)
        out.append(np.atleast_1d(values.mean()) if w is None else (w @ values) / w.sum(axis=1))
        return np.stack(out)

    labels_out: list[dict[str, Any]] = [{"method": method, "metric": metric} for method in methods
                                        for metric in AGREEMENT_METRICS]
    labels_out.append({"method": "true_labels", "metric": "silhouette_cosine"})
    for lab in labels_out:
        lab["n_clusters"] = int(preds[lab["method"]].max()) + 1 if lab["method"] in preds else None
    excess = [permuted(batch_rng(seed, k, 2)) for k in range(N_EXCESS_SETS)]
    boot_null = np.stack([scores(p, weights) for p in excess], axis=1)  # (rows, m, R)
    common = {"n_classes": K, "permutation_scheme": scheme, "n_groups": int(gcodes.max()) + 1, "n": X.shape[0]}
    return NullRows(labels_out, scores(codes, None)[:, 0], numbered(lambda rng: scores(permuted(rng), None)[:, 0],
                                                                     seed, 0),
                    scores(codes, weights), boot_null, [dict(common) for _ in labels_out])


def clustering_results(
    rows: NullRows,
    out: SequentialNull,
    *,
    dataset: str = "",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C1",
    extra: dict[str, Any] | None = None,
) -> tuple[list[TestResult], list[np.ndarray]]:
    """The tests of ``rows`` (and their effect replicates, in the same order)."""
    results, replicates = [], []
    for lab, row in zip(rows.labels, outcomes(rows, out), strict=True):
        metric, more = lab["metric"], dict(row.extra)
        n, n_groups = more.pop("n"), more.pop("n_groups")
        more = {**more, "n_clusters": lab["n_clusters"]} if lab["n_clusters"] is not None else more
        results.append(TestResult(
            key=geometry_key("clustering", dataset, site, position, lab["method"], metric, control=control),
            claim=claim,
            statistic_name=metric,
            statistic=row.statistic,
            effect_size_name=f"{metric} - permutation null mean",
            effect_size=row.effect,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            p_value=row.p_value,
            n=n,
            n_groups=n_groups,
            extra={"site": site, "n_bootstrap": int(rows.boot.shape[1]), "ci": "matched grouped bootstrap",
                   **more, **(extra or {})},
        ))
        replicates.append(row.replicates)
    return results, replicates


@renamed_keywords(n_boot="n_bootstrap")
def clustering_tests(
    X: Any,
    labels: Any,
    *,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    methods: Sequence[str] = DEFAULT_CLUSTER_METHODS,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    dataset: str = "",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C1",
    extra: dict[str, Any] | None = None,
) -> ResultSet:
    """Agreement of clusterings with ``labels`` (ARI, NMI, purity per method) and silhouette of the labels.

    Each statistic gets a permutation p-value (labels permuted; by whole group when ``groups`` carry one label
    each, so correlated rows never make the null too narrow), an effect size ``observed - null mean`` (NMI and
    purity are positive under the null, so the raw value overstates structure) and a CI from the grouped
    bootstrap matched to the null (``_nulls``). ``plan``: draw sequentially, deciding on the first method's
    ARI; None: ``n_permutations`` draws. Same seed, same numbers.
    """
    if n_permutations < 1 or n_bootstrap < 1:
        raise InvalidInputError("n_permutations and n_bootstrap must be >= 1")
    rows = clustering_null_rows(X, labels, groups=groups, methods=methods, n_bootstrap=max(n_bootstrap, 2),
                                seed=seed)
    out = fixed_or_sequential(rows, n_permutations, plan, [0])
    results, _ = clustering_results(rows, out, dataset=dataset, site=site, position=position, control=control,
                                    claim=claim, extra=extra)
    return ResultSet(results)

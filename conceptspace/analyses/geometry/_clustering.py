"""Do vectors cluster by concept? Unsupervised clustering scored against concept labels, with a label null.

Why unsupervised: a probe can find a separating direction in almost any high-dimensional cloud; the
concept-space reading ("concepts are places") predicts more, that items of one concept sit *together*. So we
cluster without labels (k-means; agglomerative with cosine/average linkage and with Ward), score agreement with
the labels (adjusted Rand index, NMI, purity) and the silhouette of the true labels, and compare each with a
permutation null on the labels (whole groups move together when a group carries one label).

The clustering does not depend on the labels, so it is computed once; every permutation only re-scores it.
Contingency-table metrics are written here, vectorised over permutations and bootstrap replicates; a unit test
checks them against scikit-learn. CIs are grouped bootstrap percentile intervals over the evaluation sample
(cluster assignments fixed), the convention of docs/STATISTICS.md.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans

from conceptspace.analyses.geometry._naming import geometry_key, null_summary
from conceptspace.analyses.geometry._vector_ops import (
    check_class_labels,
    check_vectors,
    cosine_matrix,
    group_codes,
    unit_rows,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import group_counts
from conceptspace.stats._permutation import draw_permutations, permutation_p_value
from conceptspace.stats._results import ResultSet, TestResult
from conceptspace.utils.deprecation import renamed_keywords

CLUSTER_METHODS: tuple[str, ...] = ("kmeans", "agglomerative_cosine", "agglomerative_ward")
AGREEMENT_METRICS: tuple[str, ...] = ("ari", "nmi", "purity")


def cluster(X: Any, n_clusters: int, method: str = "kmeans", *, seed: int = 0) -> np.ndarray:
    """Cluster ids (n,) of the rows of X.

    ``kmeans`` runs on unit-normalised rows (spherical k-means, so norm differences between tokens do not
    dominate), ``agglomerative_cosine`` uses average linkage on cosine distance, ``agglomerative_ward`` Ward
    linkage on Euclidean distance of the raw rows.
    """
    X = check_vectors(X)
    if not 2 <= n_clusters <= X.shape[0]:
        raise InvalidInputError(f"n_clusters must be between 2 and the number of rows ({X.shape[0]}); got {n_clusters}")
    if method == "kmeans":
        model: Any = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
        return np.asarray(model.fit_predict(unit_rows(X)), dtype=np.int64)
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


@renamed_keywords(n_boot="n_bootstrap")
def clustering_tests(
    X: Any,
    labels: Any,
    *,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    methods: Sequence[str] = CLUSTER_METHODS,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
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
    purity are positive under the null, so the raw value overstates structure) and a grouped bootstrap CI of
    that effect (bias-corrected percentile interval; see the comment in ``add``). Same seed, same numbers.
    """
    X = check_vectors(X, min_rows=4)
    codes = check_class_labels(labels, X.shape[0])
    gcodes = group_codes(groups, X.shape[0])
    if n_permutations < 1 or n_bootstrap < 1:
        raise InvalidInputError("n_permutations and n_bootstrap must be >= 1")
    K = int(codes.max()) + 1
    perms, scheme = draw_permutations(codes, None if groups is None else gcodes, n_permutations, seed=seed)
    permuted = codes[perms]  # (B, n)
    weights = group_counts(gcodes, X.shape[0], n_bootstrap, seed + 1)  # row multiplicities per bootstrap sample
    base_extra = {"site": site, "n_classes": K, "n_permutations": n_permutations, "n_bootstrap": n_bootstrap,
                  "permutation_scheme": scheme, **(extra or {})}
    results: list[TestResult] = []

    def add(method: str, metric: str, observed: float, null: np.ndarray, boot: np.ndarray, more: dict) -> None:
        ns = null_summary(null)
        # Bias-corrected percentile interval: plug-in agreement metrics computed on a bootstrap sample, where
        # drawn groups repeat, are biased upward (NMI most of all), so plain percentiles can sit entirely above
        # the estimate (seen on the untrained twin). Shifting the percentiles by the bootstrap's estimated bias,
        # mean(boot) - observed (Efron & Tibshirani 1993, ch. 10), keeps the spread and removes the offset.
        bias = float(np.nanmean(boot)) - observed
        q_lo, q_hi = np.nanquantile(boot, [0.025, 0.975])
        lo, hi = q_lo - bias - ns["null_mean"], q_hi - bias - ns["null_mean"]
        results.append(
            TestResult(
                key=geometry_key("clustering", dataset, site, position, method, metric, control=control),
                claim=claim,
                statistic_name=metric,
                statistic=observed,
                effect_size_name=f"{metric}_minus_null_mean",
                effect_size=observed - ns["null_mean"],
                ci_low=float(lo),
                ci_high=float(hi),
                p_value=float(permutation_p_value(observed, null)),
                n=X.shape[0],
                n_groups=int(gcodes.max()) + 1,
                extra={**base_extra, **ns, **more},
            )
        )

    for method in methods:
        pred = cluster(X, K, method, seed=seed)
        observed_table = contingency(codes, pred)
        null_tables = contingency(permuted, pred)
        boot_tables = contingency(codes, pred, weights)
        for metric in AGREEMENT_METRICS:
            fn = _METRIC_FUNCTIONS[metric]
            add(method, metric, float(fn(observed_table)[0]), fn(null_tables), fn(boot_tables),
                {"n_clusters": int(pred.max()) + 1})

    distances = np.clip(1.0 - cosine_matrix(X), 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    values = silhouette_values(distances, codes)
    null_sil = silhouette_values(distances, permuted).mean(axis=1)
    boot_sil = (weights @ values) / weights.sum(axis=1)
    add("true_labels", "silhouette_cosine", float(values.mean()), null_sil, boot_sil, {})
    return ResultSet(results)

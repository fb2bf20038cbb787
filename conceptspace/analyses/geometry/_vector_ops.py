"""Small vector and rank helpers shared by the geometry analyses (clustering, analogies, relations, RSA, lens).

Why a module of its own: every geometry analysis normalises rows, compares them by cosine, ranks values and
checks its inputs the same way; one copy keeps them consistent and keeps each analysis module short.
The causal inner product (Park, Choe & Veitch 2023) lives here too because relations and analogies both use it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import group_counts
from conceptspace.utils.deprecation import renamed_keywords
from conceptspace.utils.validation import check_features, check_groups

_EPS = 1e-12


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; a zero row is an error (its cosine with anything is undefined)."""
    norms = np.linalg.norm(X, axis=-1, keepdims=True)
    if np.any(norms <= _EPS):
        bad = int(np.count_nonzero(norms <= _EPS))
        raise InvalidInputError(f"{bad} vector(s) have zero length; cosine similarity is undefined for them")
    return X / norms


def cosine_matrix(X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
    """Pairwise cosine similarities between the rows of X and of Y (X with itself when Y is None)."""
    Xn = unit_rows(X)
    return Xn @ (Xn if Y is None else unit_rows(Y)).T


def check_vectors(X: Any, name: str = "X", *, min_rows: int = 2) -> np.ndarray:
    """Finite float64 (n, d) array with at least ``min_rows`` rows, or an :class:`InvalidInputError`."""
    arr = check_features(X, name=name)
    if arr.shape[0] < min_rows:
        raise InvalidInputError(f"{name} has {arr.shape[0]} row(s); this analysis needs at least {min_rows}")
    return arr


def check_class_labels(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    """Integer codes 0..K-1 of ``n`` labels with at least two classes (one class gives no structure to find)."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidInputError(f"{name} must be 1-D with one entry per row ({n}); got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name} contains NaN; drop the unlabelled rows")
    if arr.dtype.kind == "O" and any(v is None for v in arr):
        raise InvalidInputError(f"{name} contains None; drop the unlabelled rows")
    _, codes = np.unique(arr, return_inverse=True)
    if codes.max(initial=0) < 1:
        raise InvalidInputError(f"{name} has a single class; clustering agreement needs at least two classes")
    return codes.astype(np.int64)


def group_codes(groups: Sequence[Hashable] | np.ndarray | None, n: int) -> np.ndarray:
    """Integer group codes; None means each row is its own group (the probes' :func:`check_groups`)."""
    return check_groups(groups, n)


@renamed_keywords(n_boot="n_bootstrap")
def bootstrap_group_rows(codes: np.ndarray, n_bootstrap: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``n_bootstrap`` grouped bootstrap samples: :func:`group_counts`'s draws as index lists."""
    counts = group_counts(codes, codes.shape[0], n_bootstrap, seed).astype(np.int64)
    rows = np.arange(codes.shape[0])
    return [np.repeat(rows, c) for c in counts]


def standardized_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks along the last axis (average ties), centred and scaled to unit norm.

    The dot product of two such vectors is their Spearman correlation, so a matrix of correlations between many
    rankings is one matrix product.
    """
    r = rankdata(values, axis=-1)
    r = r - r.mean(axis=-1, keepdims=True)
    norms = np.linalg.norm(r, axis=-1, keepdims=True)
    return np.divide(r, norms, out=np.zeros_like(r), where=norms > _EPS)


def residualize(Z: np.ndarray, covariate: np.ndarray) -> np.ndarray:
    """Rows of Z (standardized ranks) with the standardized covariate ranks projected out, renormalised.

    Dot products of the results are partial Spearman correlations controlling for the covariate.
    """
    c = covariate / max(float(np.linalg.norm(covariate)), _EPS)
    R = Z - np.outer(Z @ c, c) if Z.ndim == 2 else Z - (Z @ c) * c
    norms = np.linalg.norm(R, axis=-1, keepdims=True)
    return np.divide(R, norms, out=np.zeros_like(R), where=norms > _EPS)


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """P(x > y) - P(x < y) over all cross pairs: a rank effect size in [-1, 1]."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise InvalidInputError("Cliff's delta needs two non-empty samples")
    diff = x[:, None] - y[None, :]
    return float((np.count_nonzero(diff > 0) - np.count_nonzero(diff < 0)) / diff.size)


@dataclass(frozen=True)
class CausalInnerProduct:
    """The causal inner product <x, y>_C = x' Cov(U)^{-1} y of Park, Choe & Veitch (2023).

    Stored as the whitening map W = Cov(U)^{-1/2} (centred rows of the unembedding U), so that the ordinary
    Euclidean inner product of ``whiten(x)`` and ``whiten(y)`` is the causal one. Why: under this inner product
    causally separable concepts are predicted to be orthogonal, which the Euclidean one does not promise.
    """

    whitener: np.ndarray  # (d, d), symmetric
    ridge: float
    #: which side of the logit the map is for: "unembedding" (token vectors: Cov(U)^{-1/2}) or "context" (context
    #: vectors, Park et al.'s dual: Cov(U)^{+1/2}, so that the logit l(x)' g(y) = lambda(x)' gamma(y) is kept)
    side: str = "unembedding"
    #: Cov(U)^{+1/2}, the context side's map (None when built by hand)
    dual_whitener: np.ndarray | None = None

    def for_context(self) -> CausalInnerProduct:
        """The same inner product for context vectors (hidden states): Park, Choe & Veitch map unembeddings by
        A = Cov(gamma)^{-1/2} and context vectors by A^{-T} = Cov(gamma)^{+1/2}, the pair that leaves every logit
        unchanged. Why it matters: whitening a hidden state with the token side's map (as C2 did) is not their
        transform. Their guarantee is for the last layer's context vector; at earlier layers it is a heuristic."""
        if self.dual_whitener is None:
            raise InvalidInputError("this causal inner product has no context-side map; build it with "
                                    "causal_inner_product(unembedding)")
        other = "context" if self.side == "unembedding" else "unembedding"
        return CausalInnerProduct(whitener=self.dual_whitener, ridge=self.ridge, side=other,
                                  dual_whitener=self.whitener)

    def whiten(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[-1] != self.whitener.shape[0]:
            raise InvalidInputError(
                f"vectors have dimension {X.shape[-1]} but the causal inner product was fitted in dimension "
                f"{self.whitener.shape[0]}"
            )
        return X @ self.whitener

    def inner(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.whiten(x) @ self.whiten(y).T


def causal_inner_product(unembedding: Any, *, ridge: float = 1e-6) -> CausalInnerProduct:
    """Fit the causal inner product from unembedding rows (vocab, d); for tied models pass the embedding matrix.

    ``ridge`` (relative to the mean eigenvalue) keeps the inverse square root finite when Cov(U) is near
    singular (it is for vocabularies with many unused, collapsed rows).
    """
    U = check_vectors(unembedding, "unembedding", min_rows=3)
    if U.shape[0] <= U.shape[1]:
        raise InvalidInputError(
            f"unembedding has {U.shape[0]} rows for dimension {U.shape[1]}; its covariance would be singular"
        )
    centred = U - U.mean(axis=0)
    cov = centred.T @ centred / (U.shape[0] - 1)
    evals, evecs = np.linalg.eigh(cov)
    floor = ridge * float(np.mean(evals))
    inv_sqrt = (evecs / np.sqrt(np.maximum(evals, 0.0) + floor)) @ evecs.T
    sqrt = (evecs * np.sqrt(np.maximum(evals, 0.0) + floor)) @ evecs.T
    return CausalInnerProduct(whitener=inv_sqrt, ridge=ridge, dual_whitener=sqrt)


def one_sided_tail(observed: float, null: np.ndarray, *, lower: bool = False) -> float:
    """(1 + #{null at least as extreme}) / (B + 1); ``lower=True`` counts null <= observed."""
    null = np.asarray(null, dtype=np.float64)
    tol = 1e-10 * max(1.0, abs(observed))
    hits = np.count_nonzero(null <= observed + tol) if lower else np.count_nonzero(null >= observed - tol)
    return float((1 + hits) / (null.size + 1))

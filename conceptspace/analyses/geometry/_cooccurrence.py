"""Token-embedding proximity against corpus co-occurrence (PMI), frequency and norm partialled out (claim P5).

Why this test. P5 says a vector's proximity to token vectors reflects co-occurrence. The logit-lens test of P5
(``kind = "proximity"``) is circular: the final norm of a state against the logits *is* the logit lens, and
untrained twins pass it. This test asks a question the architecture cannot answer by construction: do the
cosines of two words' token vectors (the tied embedding / unembedding rows) follow how often the words occur
near each other in a corpus the model was never fitted to by us, beyond what word frequency and token norm
explain?

Corpus statistics (declared here, before any run):

* **Words.** Each topic of the corpus is split into lower-case alphabetic runs (``[a-z]+`` after
  lower-casing). A candidate is a word of at least :data:`MIN_LETTERS` letters, not in :data:`STOP_WORDS`, that
  is ONE token of the model's tokenizer with a leading space (``" word"``, its mid-sentence form). The
  ``n_words`` most frequent candidates are kept (ties broken alphabetically).
* **Co-occurrence.** Counts ``C(a, b)`` of the kept words within a symmetric window of ``window`` word positions
  (every word of the text counts as a position, kept or not), never across a topic boundary; a word is never
  paired with itself.
* **PMI.** With ``C(a) = sum_b C(a,b)``, ``T = sum_a C(a)``, ``P(a,b) = C(a,b)/T``, ``P(a) = C(a)/T`` and
  the context distribution smoothed as in Levy, Goldberg & Dagan (2015),
  ``P_alpha(b) = C(b)^alpha / sum_c C(c)^alpha`` with ``alpha =`` :data:`CONTEXT_ALPHA`,
  ``PMI_alpha(a, b) = log P(a,b) - log P(a) - log P_alpha(b)``, symmetrised by averaging both orders. The
  smoothing damps the rare-context inflation of plain PMI. Only pairs with ``C(a,b) >= min_count`` are scored;
  the others are left out, not set to 0, because a zero or a PPMI floor would mostly encode sparsity
  (frequency), which the test partials out anyway.

Statistic: the **partial Spearman** correlation across scored pairs of ``cos(e_a, e_b)`` with ``PMI(a, b)``:
both are ranked, each rank vector is regressed (OLS) on :func:`covariate_basis` of two order-free pairs of
covariates, ``min`` and ``max`` of the two words' log corpus frequency and ``min`` and ``max`` of their two
token norms (a cubic polynomial surface in each pair plus indicators of its 8 x 8 equal-count cells), and the
residuals are correlated (Pearson). Two exploratory rows share the same draws: the raw Spearman
(no partialling; shows how much frequency and norm explain) and the **frequency-matched** partial correlation
(only pairs whose two words fall in the same of :data:`FREQUENCY_BINS` equal-count log-frequency bins, so
frequency cannot pair a common with a rare word).

Null: pairs share words, so pairs are not exchangeable. The corpus side (the PMI matrix, its scored-pair mask,
and the words' frequencies) is permuted over words, rows and columns together (a Mantel permutation), against
the fixed model side (cosines and norms). Interval: a bootstrap over words (pairs among the resampled words; a
word is never paired with its own copy), matched to the null as in ``_nulls``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import cho_solve, lapack
from scipy.stats import rankdata

from conceptspace.analyses.geometry._naming import geometry_key
from conceptspace.analyses.geometry._nulls import NullRows, batch_rng, numbered, outcomes
from conceptspace.analyses.geometry._similarity import N_EXCESS_SETS
from conceptspace.analyses.geometry._vector_ops import check_vectors
from conceptspace.errors import DatasetError, InvalidInputError
from conceptspace.resources import datasets_dir
from conceptspace.stats._results import TestResult
from conceptspace.stats._sequential import SequentialNull

#: context-distribution smoothing exponent of the PMI (Levy, Goldberg & Dagan 2015)
CONTEXT_ALPHA = 0.75
#: a candidate word has at least this many letters (drops fragments such as "s", "x", "py")
MIN_LETTERS = 3
#: equal-count bins of log frequency for the frequency-matched row
FREQUENCY_BINS = 5
#: total degree of the polynomial surface in each (min, max) covariate pair that is partialled out
DEGREE = 3
#: equal-count bins per covariate for the (min, max) cell indicators partialled out beside the polynomial
CELL_BINS = 8
#: how many (min, max) covariate pairs (frequency, then norm) also get cell indicators
CELL_PAIRS = 2
#: fewest residual degrees of freedom a partialling keeps (else a leaner basis; see covariate_basis)
MIN_RESIDUAL_DF = 20
#: the least-squares fit drops the Gram matrix's eigenvalues at or under this fraction of its largest
EIGEN_FLOOR = 1e-10
#: the Cholesky route is taken only when every eigenvalue provably exceeds the floor this many times over
CERTIFIED_MARGIN = 10.0
#: fewest scored pairs a correlation is computed on (fewer: NaN for a resample, an error for the data)
MIN_PAIRS = 10
#: fewest words the test runs on
MIN_WORDS = 8
#: the rows of one model's test, in order: the primary first
METRICS = ("partial_spearman", "spearman", "partial_spearman_freq_matched")

#: English function words (a fixed list, declared before any run): they co-occur with everything
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can cannot could did do does doing down during each either else etc even ever every few for from
further had has have having he her here hers herself him himself his how however i if in into is it its itself
just least less let like may me might more most much must my myself neither no nor not now of off on once one
only or other others otherwise our ours ourselves out over own per rather same shall she should since so some
still such than that the their theirs them themselves then there these they this those though through thus to
too under until up upon us very via was we were what whatever when where whether which while who whom whose why
will with within without would yet you your yours yourself yourselves
""".split())

_WORD = re.compile(r"[a-z]+")


# ------------------------------------------------------------------------------------------------- the corpus
def read_corpus(name: str) -> list[str]:
    """The texts (one per topic) of a bundled corpus folder ``datasets/<name>/topics.tsv`` (``topic<TAB>text``)."""
    path = datasets_dir() / name / "topics.tsv"
    if not path.is_file():
        raise DatasetError(f"no bundled corpus {name!r}: {path} does not exist (the bundled corpus is "
                           "'python_docs_corpus')")
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        _topic, sep, text = line.partition("\t")
        if not sep:
            raise DatasetError(f"{name}/topics.tsv: line {number} has no TAB between topic and text")
        texts.append(text)
    if not any(t.strip() for t in texts):
        raise DatasetError(f"{name}/topics.tsv holds no text: the corpus is empty")
    return texts


def corpus_words(texts: Sequence[str]) -> list[list[str]]:
    """Each text as its lower-case alphabetic words."""
    return [_WORD.findall(t.lower()) for t in texts]


@dataclass(frozen=True)
class CorpusStats:
    """The corpus side of the test over ``words``: unigram ``counts``, pair ``cooccurrence`` counts, ``pmi``
    (NaN where not scored) and ``scored`` (pairs with at least ``min_count`` co-occurrences, upper and lower)."""

    words: list[str]
    counts: np.ndarray
    cooccurrence: np.ndarray
    pmi: np.ndarray
    scored: np.ndarray
    window: int
    min_count: int

    @property
    def n_pairs(self) -> int:
        return int(np.triu(self.scored, 1).sum())

    def permuted(self, perm: np.ndarray) -> CorpusStats:
        """The same statistics with word ``i`` given the corpus row of word ``perm[i]`` (rows and columns
        together, so every matrix stays symmetric); the word list is unchanged (it names the model's rows)."""
        ix = np.ix_(perm, perm)
        return CorpusStats(list(self.words), self.counts[perm], self.cooccurrence[ix], self.pmi[ix],
                           self.scored[ix], self.window, self.min_count)


def select_words(tokenized: Sequence[Sequence[str]], is_single_token: Callable[[list[str]], list[bool]],
                 n_words: int) -> list[str]:
    """The ``n_words`` most frequent candidates (see the module docstring), most frequent first."""
    freq = Counter(w for words in tokenized for w in words)
    candidates = sorted((w for w in freq if len(w) >= MIN_LETTERS and w not in STOP_WORDS),
                        key=lambda w: (-freq[w], w))
    single = is_single_token(candidates)
    kept = [w for w, ok in zip(candidates, single, strict=True) if ok][:n_words]
    if len(kept) < MIN_WORDS:
        raise InvalidInputError(f"the corpus has {len(kept)} usable words (one token with a leading space, not a "
                                f"stop word, >= {MIN_LETTERS} letters); the test needs at least {MIN_WORDS}: "
                                "use a larger corpus")
    return kept


def corpus_stats(texts: Sequence[str], words: Sequence[str], *, window: int = 5, min_count: int = 5) -> CorpusStats:
    """Counts, co-occurrence within ``window`` positions (within a text) and smoothed PMI of ``words``."""
    if window < 1 or min_count < 1:
        raise InvalidInputError(f"window and min_count must be >= 1; got window={window}, min_count={min_count}")
    words = list(words)
    if len(words) < MIN_WORDS or len(set(words)) != len(words):
        raise InvalidInputError(f"need at least {MIN_WORDS} distinct words; got {len(words)} "
                                f"({len(set(words))} distinct)")
    index = {w: i for i, w in enumerate(words)}
    n = len(words)
    counts = np.zeros(n)
    cooc = np.zeros((n, n))
    for tokens in corpus_words(texts):
        ids = np.array([index.get(t, -1) for t in tokens], dtype=np.int64)
        counts += np.bincount(ids[ids >= 0], minlength=n)
        for d in range(1, window + 1):
            a, b = ids[:-d], ids[d:]
            keep = (a >= 0) & (b >= 0) & (a != b)
            np.add.at(cooc, (a[keep], b[keep]), 1.0)
    cooc = cooc + cooc.T
    if not np.any(counts > 0):
        raise InvalidInputError("none of the words occurs in the corpus (is the corpus empty?)")
    return CorpusStats(words, counts, cooc, smoothed_pmi(cooc, min_count), cooc >= min_count, window, min_count)


def smoothed_pmi(cooc: np.ndarray, min_count: int) -> np.ndarray:
    """Symmetrised PMI with context-distribution smoothing (module docstring); NaN below ``min_count``."""
    marginal = cooc.sum(axis=1)
    total = marginal.sum()
    if total <= 0:
        raise InvalidInputError("no pair of the words co-occurs in the corpus: there is nothing to correlate")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.log(marginal / total)
        smooth = marginal ** CONTEXT_ALPHA
        log_p_alpha = np.log(smooth / smooth.sum())
        log_joint = np.log(cooc / total)
        pmi = log_joint - 0.5 * (log_p[:, None] + log_p[None, :]) - 0.5 * (log_p_alpha[:, None] + log_p_alpha[None, :])
    return np.where(cooc >= min_count, pmi, np.nan)


# ------------------------------------------------------------------------------------------------- the statistic
def partial_spearman(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> float:
    """Correlation of the ranks of ``x`` and ``y`` after regressing both (OLS) on :func:`covariate_basis` of the
    covariate columns; NaN when there are too few pairs or a residual is constant."""
    if x.size < MIN_PAIRS:
        return float("nan")
    return _partial_of_ranks(_average_ranks(x), _average_ranks(y), covariates)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(x)`` (ties share their average rank), the same values, for finite ``x`` without
    scipy's per-call overhead, which at ~1,000 pairs cost more than the sort (four rankings per draw)."""
    if not np.all(np.isfinite(x)):
        ranked: np.ndarray = rankdata(x)
        return ranked
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))  # first of each tie group
    ends = np.append(starts[1:], x.size)
    ranks = np.empty(x.size)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)  # ranks start+1..end: their mean
    return ranks


def _partial_of_ranks(rx: np.ndarray, ry: np.ndarray, covariates: np.ndarray) -> float:
    """:func:`partial_spearman` from ranks already taken (at least :data:`MIN_PAIRS` of them). Why split off:
    :func:`pair_statistics` ranks its pairs once and partials the same ranks twice (the primary and the raw
    Spearman, whose basis is the intercept alone)."""
    m = rx.size
    # few pairs (a small run's frequency-matched row): a leaner surface, the last one whatever its width
    for leaner in _LEANER:
        basis = _basis(covariates, **leaner)
        if m >= basis.width + MIN_RESIDUAL_DF:
            break
    values = np.column_stack([rx, ry])
    fitted = basis.certified_residuals(values)
    if fitted is None:  # rank-deficient or nearly: the eigenvector route on the exact design, as it always was
        fitted = residuals(covariate_basis(covariates, **leaner), values)
    ex, ey = fitted.T
    den = np.linalg.norm(ex) * np.linalg.norm(ey)
    return float(ex @ ey / den) if den > 1e-9 * m else float("nan")


def residuals(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` minus their least-squares fit on ``design``'s columns, through the Gram matrix's eigenvectors
    (collinear columns, e.g. a cell indicator a polynomial already spans, are dropped by their eigenvalue, at or
    under :data:`EIGEN_FLOOR` times the largest). Why not QR: the null and the bootstrap refit thousands of
    times, and the Gram route is ~5x faster at the sizes here (2,000 pairs x 90 columns) with one thread.
    :meth:`_Basis.certified_residuals` is a cheaper exact route where no eigenvalue can be dropped; this one else."""
    gram = design.T @ design
    w, V = np.linalg.eigh(gram)
    keep = w > EIGEN_FLOOR * max(float(w[-1]), 1e-300)
    coef = V[:, keep] @ ((V[:, keep].T @ (design.T @ values)) / w[keep][:, None])
    out: np.ndarray = values - design @ coef
    return out


def covariate_basis(covariates: np.ndarray, *, cells: bool = True, degree: int | None = None) -> np.ndarray:
    """Intercept and, per (min, max) covariate pair of columns, every monomial of total degree <= :data:`DEGREE`
    of the two standardized columns plus the indicators of their (bin of min, bin of max) cells.

    Why so flexible: a model whose cosines are a smooth but non-linear function of the two words' frequencies
    (e.g. the angle between two tokens grows with their frequency difference) kept a partial correlation of
    0.13 with PMI (p = 0.005) after a linear partialling on the ranks, and ~0.05 (p ~ 0.1) after a polynomial
    surface of degree 3 to 5, on the synthetic corpus of ``tests/unit/test_cooccurrence_pmi.py``; with the cell
    indicators added it is 0.01 (p = 0.33) while a planted PMI geometry keeps 0.82. The price is degrees of
    freedom (~90 columns), negligible against the thousands of scored pairs. Where a correlation has fewer
    than ``columns + MIN_RESIDUAL_DF`` pairs (the frequency-matched row of a small run), :func:`partial_spearman`
    drops the cells, then the surface to degree 1, rather than fit a design as wide as the data.

    Columns, in order: the intercept, the non-constant monomials of each pair, then each cell pair's indicators
    (a constant monomial, e.g. of a covariate that never varies, is left out). The statistic never forms this
    matrix: it fits the factored :class:`_Basis`, which spans the same columns."""
    return _basis(covariates, cells=cells, degree=degree, exact=True).dense()


#: the bases :func:`partial_spearman` tries in turn, each leaner than the last (see :func:`covariate_basis`)
_LEANER: tuple[dict[str, Any], ...] = ({}, {"cells": False}, {"cells": False, "degree": 1})


@dataclass(frozen=True)
class _Basis:
    """:func:`covariate_basis` in factored form: the dense columns ``poly`` (intercept and monomials), and per
    cell pair each row's cell number among its occupied cells with how many are occupied (cell 0 has no
    indicator). Why factored: the indicators are ~70 of ~90 columns, yet their blocks of the Gram matrix are
    cell counts and per-cell sums, so the fit costs ~20 dense columns instead of ~90."""

    poly: np.ndarray
    cells: tuple[tuple[np.ndarray, int], ...]

    @property
    def width(self) -> int:
        """Columns of the design."""
        return int(self.poly.shape[1]) + sum(count - 1 for _, count in self.cells)

    def dense(self) -> np.ndarray:
        """The design itself: the ``poly`` columns, then one indicator per cell (but cell 0) of each pair."""
        m, p = self.poly.shape
        design = np.zeros((m, self.width))
        design[:, :p] = self.poly
        start, rows = p, np.arange(m)
        for number, count in self.cells:
            hit = number > 0
            design[rows[hit], start + number[hit] - 1] = 1.0
            start += count - 1
        return design

    def certified_residuals(self, values: np.ndarray) -> np.ndarray | None:
        """:func:`residuals` of ``values`` on the design when every eigenvalue of the Gram matrix provably clears
        the floor, else None. Then none is dropped, so the fit is the full-rank least squares, solved from
        normal equations built without the design and a Cholesky factor (0.05 ms against the
        eigendecomposition's 0.7 ms at 90 columns, one thread). None (a rank-deficient design, or nearly: a
        bootstrap resample's few distinct words): the caller takes :func:`residuals` on the exact design, the
        computation it always had, because there the result hangs on eigenvalues near the floor: a one-ulp
        change of the design, or another exact route, moved the statistic by up to 2e-8 on the 40-word test
        corpus."""
        if self.width == 1:  # the intercept alone (the raw Spearman): the fit is the mean
            centred: np.ndarray = values - values.mean(axis=0)
            return centred
        gram, cross = self._normal_equations(values)
        factor = _certified_cholesky(gram)
        if factor is None:
            return None
        coef: np.ndarray = cho_solve((factor, True), cross, check_finite=False)
        p = self.poly.shape[1]
        fit = self.poly @ coef[:p]
        start = p
        for number, count in self.cells:  # an indicator's fitted value is its coefficient, on its cell's rows
            fit += np.vstack([np.zeros((1, coef.shape[1])), coef[start:start + count - 1]])[number]
            start += count - 1
        out: np.ndarray = values - fit
        return out

    def _normal_equations(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``design.T @ design`` and ``design.T @ values`` without forming the design: an indicator's products
        are its cell's count, the count shared with another pair's cell, and its cell's sums of the columns."""
        p, k = self.poly.shape[1], self.width
        both = np.column_stack([self.poly, values])
        gram, cross = np.empty((k, k)), np.empty((k, values.shape[1]))
        products = self.poly.T @ both
        gram[:p, :p], cross[:p] = products[:, :p], products[:, p:]
        spans: list[slice] = []
        start = p
        for number, count in self.cells:
            span = slice(start, start + count - 1)
            sums = _cell_sums(number, count, both)[1:]
            gram[span, :p], gram[:p, span], cross[span] = sums[:, :p], sums[:, :p].T, sums[:, p:]
            gram[span, span] = np.diag(np.bincount(number, minlength=count)[1:].astype(np.float64))
            for (other, other_count), other_span in zip(self.cells, spans, strict=False):
                shared = np.bincount(other * count + number, minlength=other_count * count)
                block = shared.reshape(other_count, count)[1:, 1:].astype(np.float64)
                gram[other_span, span], gram[span, other_span] = block, block.T
            spans.append(span)
            start += count - 1
        return gram, cross


def _cell_sums(number: np.ndarray, count: int, columns: np.ndarray) -> np.ndarray:
    """(count, q): the sums of the (m, q) ``columns`` over the rows of each cell."""
    q = columns.shape[1]
    flat = (number[:, None] * q + np.arange(q)).ravel()
    return np.bincount(flat, weights=np.ascontiguousarray(columns).ravel(), minlength=count * q).reshape(count, q)


def _certified_cholesky(gram: np.ndarray) -> np.ndarray | None:
    """The lower Cholesky factor ``L`` of ``gram`` when its smallest eigenvalue is certainly over
    :data:`CERTIFIED_MARGIN` x :data:`EIGEN_FLOOR` x its largest, else None. The bounds are rigorous (up to
    rounding far under the margin): ``lambda_min = 1 / ||L^-1||_2^2 >= 1 / ||L^-1||_F^2`` and ``lambda_max`` is at
    most the trace and the largest absolute row sum. Loose by at most ~90x each in theory, tight in practice: on
    synthetic and bundled-corpus designs, Grams with eigenvalue ratios down to 1.8e-9 were certified against
    the 1e-9 bar, and 88-99% of the designs of 120-word runs took this route. A NaN fails the test too."""
    factor, info = lapack.dpotrf(gram, lower=1, clean=1)
    if info != 0:
        return None
    inverse, info = lapack.dtrtri(factor, lower=1)
    if info != 0:
        return None
    lambda_min = 1.0 / float(np.sum(inverse * inverse))
    lambda_max = min(float(np.trace(gram)), float(np.abs(gram).sum(axis=1).max()))
    if not lambda_min > CERTIFIED_MARGIN * EIGEN_FLOOR * lambda_max:
        return None
    out: np.ndarray = factor
    return out


def _basis(covariates: np.ndarray, *, cells: bool = True, degree: int | None = None, exact: bool = False) -> _Basis:
    """The factored :func:`covariate_basis` (same arguments; ``exact``: see :func:`_monomials`)."""
    top = DEGREE if degree is None else degree
    poly = [np.ones((covariates.shape[0], 1))]
    for j in range(0, covariates.shape[1], 2):
        poly.append(_monomials(covariates[:, j], covariates[:, j + 1], top, exact=exact))
    pairs = min(covariates.shape[1], 2 * CELL_PAIRS) if cells else 0
    return _Basis(np.hstack(poly), _cell_codes(covariates[:, :pairs]))


def _monomials(low: np.ndarray, high: np.ndarray, degree: int, *, exact: bool) -> np.ndarray:
    """The non-constant monomials ``u**a * v**b``, ``0 < a + b <= degree``, of the two standardized columns, as
    columns, each power taken once. ``exact``: the powers by ``**``, the design's values bit for bit as they
    always were; else by repeated products (``u**3`` by ``pow`` is ~50x the cost of ``u*u*u`` and differs from it
    in the last bit for ~30% of values, which only the eigenvector route of a near-singular design feels)."""
    u, v = _standardize(low), _standardize(high)
    u_pow, v_pow = _powers(u, degree, exact), _powers(v, degree, exact)
    columns = np.column_stack([u_pow[a] * v_pow[b] for a in range(degree + 1) for b in range(degree + 1 - a)
                               if a + b > 0])
    out: np.ndarray = columns[:, np.ptp(columns, axis=0) > 0]
    return out


#: the quantile levels of the interior edges of :data:`CELL_BINS` equal-count bins
_CELL_LEVELS = np.linspace(0, 1, CELL_BINS + 1)[1:-1]


def _powers(c: np.ndarray, degree: int, exact: bool) -> list[np.ndarray]:
    """``[c**0, ..., c**degree]``, by ``**`` when ``exact``, else by repeated products (c**0, c**1 and c**2 are
    the same values either way)."""
    if exact:
        return [c ** a for a in range(degree + 1)]
    out = [np.ones_like(c)]
    for _ in range(degree):
        out.append(out[-1] * c)
    return out


def _cell_codes(pairs: np.ndarray) -> tuple[tuple[np.ndarray, int], ...]:
    """Per (min, max) pair of columns of ``pairs``: each row's (bin of min, bin of max) cell among the occupied
    ones, numbered 0.. in cell order, and how many cells are occupied; :data:`CELL_BINS` equal-count bins of
    the pair's pooled values (one quantile call for all pairs). Cell 0 gets no indicator (the intercept
    carries it)."""
    if pairs.shape[1] == 0:
        return ()
    low, high = pairs[:, 0::2], pairs[:, 1::2]
    edges = np.quantile(np.concatenate([low, high]), _CELL_LEVELS, axis=0)
    out = []
    for j in range(low.shape[1]):
        a = np.searchsorted(edges[:, j], low[:, j], side="right")
        b = np.searchsorted(edges[:, j], high[:, j], side="right")
        cell = a * CELL_BINS + b
        occupied = np.bincount(cell, minlength=CELL_BINS * CELL_BINS) > 0
        number = np.cumsum(occupied) - 1
        out.append((number[cell], int(occupied.sum())))
    return tuple(out)


def _standardize(c: np.ndarray) -> np.ndarray:
    sd = float(np.std(c))
    return (c - c.mean()) / sd if sd > 0 else np.zeros_like(c)


@dataclass(frozen=True)
class _ModelSide:
    cos: np.ndarray
    norms: np.ndarray


def _model_side(X: np.ndarray) -> _ModelSide:
    norms = np.linalg.norm(X, axis=1)
    if np.any(norms <= 0):
        raise InvalidInputError("a token vector has norm 0: its cosine is undefined")
    unit = X / norms[:, None]
    return _ModelSide(unit @ unit.T, norms)


def _frequency_bins(counts: np.ndarray) -> np.ndarray:
    """Equal-count bins of the words' log frequency (bin of each word), ties kept together by rank."""
    ranks = rankdata(counts, method="average")
    return np.minimum(((ranks - 1) * FREQUENCY_BINS // counts.size).astype(np.int64), FREQUENCY_BINS - 1)


def pair_statistics(model: _ModelSide, corpus: CorpusStats, model_idx: np.ndarray,
                    corpus_idx: np.ndarray) -> np.ndarray:
    """The three :data:`METRICS` over the scored pairs among positions ``k < l`` of the index arrays: model
    word ``model_idx[k]`` is matched with corpus word ``corpus_idx[k]`` (identity: the data; a permutation:
    the null; a resample: the bootstrap). Pairs of a word with its own copy are left out."""
    return _PairStatistics(model, corpus)(model_idx, corpus_idx)


class _PairStatistics:
    """:func:`pair_statistics` for one model and corpus, with what every draw shares (the pair indices, the
    log frequencies and their bins) computed once: the null and the bootstrap call it thousands of times."""

    def __init__(self, model: _ModelSide, corpus: CorpusStats) -> None:
        self.model, self.corpus = model, corpus
        self.n = corpus.counts.size
        self.upper = np.triu_indices(self.n, 1)
        self.log_counts = np.log(corpus.counts)
        self.bins = _frequency_bins(corpus.counts)

    def __call__(self, model_idx: np.ndarray, corpus_idx: np.ndarray) -> np.ndarray:
        first, second = self.upper if model_idx.size == self.n else np.triu_indices(model_idx.size, 1)
        ma, mb, ca, cb = model_idx[first], model_idx[second], corpus_idx[first], corpus_idx[second]
        keep = (ma != mb) & self.corpus.scored[ca, cb]
        ma, mb, ca, cb = ma[keep], mb[keep], ca[keep], cb[keep]
        x, y = self.model.cos[ma, mb], self.corpus.pmi[ca, cb]
        na, nb = self.model.norms[ma], self.model.norms[mb]
        fa, fb = self.log_counts[ca], self.log_counts[cb]
        cov = np.column_stack([np.minimum(fa, fb), np.maximum(fa, fb), np.minimum(na, nb), np.maximum(na, nb)])
        same = self.bins[ca] == self.bins[cb]
        if x.size < MIN_PAIRS:
            both = [float("nan"), float("nan")]
        else:  # one ranking serves the partial and the raw correlation
            rx, ry = _average_ranks(x), _average_ranks(y)
            both = [_partial_of_ranks(rx, ry, cov), _partial_of_ranks(rx, ry, cov[:, :0])]
        return np.array([*both, partial_spearman(x[same], y[same], cov[same])])


def pmi_null_rows(X: Any, corpus: CorpusStats, *, n_bootstrap: int = 300, seed: int = 0) -> NullRows:
    """The :data:`METRICS` rows of ``X`` (one token vector per corpus word, in ``corpus.words`` order) with
    their Mantel stream (permutation ``i`` from ``(seed, i)``, so every model shares the draws) and the matched
    word bootstrap."""
    X = check_vectors(X, min_rows=MIN_WORDS)
    n = len(corpus.words)
    if X.shape[0] != n:
        raise InvalidInputError(f"X has {X.shape[0]} rows but the corpus statistics cover {n} words")
    if corpus.n_pairs < MIN_PAIRS:
        raise InvalidInputError(f"only {corpus.n_pairs} word pairs co-occur at least {corpus.min_count} times "
                                f"(need {MIN_PAIRS}): use more words, a larger window or a lower min_count")
    if n_bootstrap < 2:
        raise InvalidInputError(f"n_bootstrap must be >= 2; got {n_bootstrap}")
    statistics = _PairStatistics(_model_side(X), corpus)
    ident = np.arange(n)
    observed = statistics(ident, ident)
    if not np.isfinite(observed[0]):
        raise InvalidInputError("the partial correlation is undefined on these data (constant cosines or PMI)")

    def one(rng: np.random.Generator) -> np.ndarray:
        return statistics(ident, rng.permutation(n))

    rng = np.random.default_rng([int(seed), 1])
    resamples = [rng.integers(0, n, n) for _ in range(n_bootstrap)]
    boot = np.array([statistics(r, r) for r in resamples]).T
    boot_null = []
    for k in range(N_EXCESS_SETS):
        p = batch_rng(seed, k, 2).permutation(n)
        boot_null.append(np.array([statistics(r, p[r]) for r in resamples]).T)
    labels = [{"metric": m, "n": n, "n_pairs": corpus.n_pairs} for m in METRICS]
    return NullRows(labels, observed, numbered(one, seed, 0), boot, np.stack(boot_null, axis=1))


_EFFECT_NAMES = {
    "partial_spearman": "partial Spearman rho (frequency, norm) - Mantel null mean",
    "spearman": "Spearman rho - Mantel null mean",
    "partial_spearman_freq_matched": "partial Spearman rho within frequency bins - Mantel null mean",
}


def pmi_results(rows: NullRows, out: SequentialNull, *, dataset: str, site: str, control: str | None = None,
                claim: str | None = "P5", extra: dict[str, Any] | None = None
                ) -> tuple[list[TestResult], list[np.ndarray]]:
    """One test per metric (the partial correlation first), with its effect replicates."""
    results, reps = [], []
    for lab, row in zip(rows.labels, outcomes(rows, out), strict=True):
        results.append(TestResult(
            key=geometry_key("cooccurrence", dataset, site, None, lab["metric"], "pmi", control=control),
            claim=claim,
            statistic_name=lab["metric"],
            statistic=row.statistic,
            effect_size_name=_EFFECT_NAMES[lab["metric"]],
            effect_size=row.effect,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            p_value=row.p_value,
            n=lab["n_pairs"],
            n_groups=lab["n"],
            extra={"site": site, "n_words": lab["n"], "n_pairs": lab["n_pairs"],
                   "n_bootstrap": int(rows.boot.shape[1]),
                   "null": "corpus words permuted against the token vectors (Mantel: PMI rows and columns, "
                           "scored-pair mask and frequencies together)",
                   "ci": "matched bootstrap over words (pairs among resampled words)",
                   "partialled": "cubic surface and 8x8 cells of min/max log corpus frequency and min/max token norm"
                   if lab["metric"] != "spearman" else "nothing",
                   **row.extra, **(extra or {})},
        ))
        reps.append(row.replicates)
    return results, reps

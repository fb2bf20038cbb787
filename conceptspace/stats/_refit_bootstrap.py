"""Grouped bootstrap of a cross-validated probe score that refits the whole CV on every replicate.

Why refit. A CV score varies for two reasons: the test items (evaluation noise) and the training items (the
fitted probe itself changes with the sample). Bootstrapping the out-of-fold outputs with the fits held fixed
(:func:`conceptspace.stats.bootstrap_cv_scores`) measures only the first, and its 95% interval covered the
expected CV score of planted Gaussian data sets in only 0.85-0.87 of them (40 and 100 groups). Here every
replicate reweights whole groups, deals the groups into new folds (a group's rows always share a fold) and
refits the probe on each training part, so a replicate varies the way a new sample would.

Which weights. The default is Rubin's Bayesian bootstrap: every group stays in with a mean-one exponential
weight. The classical (multinomial) bootstrap drops ~37% of the groups from each replicate, and a probe refitted
on fewer distinct groups is noisier than the real one (its spread was 10% too wide at 40 groups); exponential
weights have the same variance as multinomial counts but keep every group's information. Probes without the
weighted fast path use multinomial counts (refitted on duplicated rows).

Why the replicates are re-centred. A refitted replicate scores lower on average than the observed CV (its fit
carries its own noise on top of the data's: the classical bias of bootstrapping a learning curve), so the
interval reads the replicates' *deviations* from their mean, added to the observed score: ``replicate_b =
observed + c (raw_b - mean(raw))``, with ``c`` the small-sample factor of :func:`small_sample_scale`. Coverage
measured (``tests/unit/test_probe_intervals.py``, 300 data sets each): 0.947 at 40 groups; conservative at 100
groups (0.97-0.99: replicate SD 0.048-0.055 against the Monte Carlo SD 0.044 of the CV score over data sets).
Measured by role (docs/STATISTICS.md): as the sample grows the real variance converges on the test role's, while
the refit keeps a first-order training-role term (0.3-0.6 of the real variance at 40-400 groups), so the SD is
1.1-1.25x too large from 100 groups on. Not the quadratic loss near the optimum (a refit counting its own
fit noise twice): with weights 1 + tau (w - 1) on the same draws and folds, the replicates' variance at 100
groups is linear in tau^2 (0.0004 at tau = 0, the fold re-dealing alone; 0.0009, 0.0015, 0.0026 at tau^2 =
1/4, 1/2, 1; six data sets), so no tau^4 term is there to remove. No correction fitted to these sizes is made:
for accuracy-type scores a probe family reports the nested-CV interval instead
(:mod:`conceptspace.analyses.probes._ncv_interval`, calibrated at both sizes) and keeps these replicates for
what only replicates give, the paired differences with its controls; R^2 keeps this interval (it errs wide).

Fast path. For ridge probes (the default) a replicate's fit is a weighted ridge (a drawn group's
multiplicity is its rows' weight, exactly equal to fitting on the duplicated rows), solved for every layer at
once in feature space or, when there are fewer distinct training rows than features, in kernel space. Other
probes are cloned and refitted on the duplicated rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import numpy as np
import scipy.stats
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import group_counts
from conceptspace.stats._linear import DTYPE
from conceptspace.utils.validation import check_groups

_BLOCK_ELEMENTS = 4_000_000
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _one_torch_thread(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``func`` with one torch thread, restoring the caller's count after.

    Why: the refit bootstrap is thousands of small batched factorisations (systems of ~100-300 rows), which
    torch runs one matrix after another; a second intra-op thread has nothing to share but spins. On the 2-core
    machine, busy with other work, c4_truth's first replicate set (45 replicates) took 151 s wall and 40 CPU s
    with torch's default 2 threads against 11 s wall and 2.5 CPU s with one. One thread also makes the replicates
    independent of the machine's thread count.
    """

    @functools.wraps(func)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return func(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


@dataclass(frozen=True)
class RefitBootstrap:
    """Refit-CV bootstrap replicates of one probe on one label set.

    ``raw`` (L, B): the CV score of each replicate as refitted (NaN where a replicate could not be scored, e.g.
    a class drawn in only one group). ``centred`` (L, B): ``observed + raw - mean(raw)``, the replicates an
    interval and a paired difference read (see module doc).
    """

    raw: np.ndarray
    centred: np.ndarray
    #: (L,) which rows were refitted (a caller may mix in fixed-output replicates for the others)
    refitted: np.ndarray | None = None


def deal_folds(group_codes: np.ndarray, strata: np.ndarray, drawn: np.ndarray, n_splits: int,
               rng: np.random.Generator) -> np.ndarray:
    """Fold of each drawn group (-1 for groups not drawn): shuffled within each stratum and dealt round-robin.

    ``strata`` (G,) is each group's class code (or zeros for regression); dealing the concatenated strata
    round-robin is a stratified grouped k-fold, as the observed CV uses, without scikit-learn's cost per call.
    """
    n_groups = strata.shape[0]
    fold = np.full(n_groups, -1, dtype=np.int64)
    order = [rng.permutation(np.flatnonzero(drawn & (strata == s))) for s in np.unique(strata[drawn])]
    sequence = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    start = int(rng.integers(n_splits))
    fold[sequence] = (start + np.arange(sequence.size)) % n_splits
    return fold


def group_strata(group_codes: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
    """Each group's stratum: the class of its first row (classification), else 0."""
    n_groups = int(group_codes.max()) + 1
    if codes is None:
        return np.zeros(n_groups, dtype=np.int64)
    first = np.full(n_groups, group_codes.shape[0], dtype=np.int64)
    np.minimum.at(first, group_codes, np.arange(group_codes.shape[0]))
    return codes[first]


def weighted_ridge_predict(X: torch.Tensor, W: torch.Tensor, T: torch.Tensor, penalty: float,
                           gram: torch.Tensor | None = None) -> torch.Tensor:
    """Predictions (b, L, n, k) for every row of a weighted ridge fitted on every layer and weighting at once.

    X (L, n, d); W (b, n) non-negative row weights (0 = not in the training part); T (n, k) targets. The
    penalty is relative, as in :func:`conceptspace.stats._linear.centered_scatter`: ``penalty * trace(C_w) / d``
    with C_w the weighted centred scatter, so weight 2 is exactly a duplicated row and weight 0 a left-out one.
    With ``gram`` (L, n, n) = X X^T the solve runs in row space (cheaper when n < d), else in feature space.
    """
    return weighted_ridge_grid(X, W, T, (penalty,), gram)[0]


def weighted_ridge_grid(X: torch.Tensor, W: torch.Tensor, T: torch.Tensor, penalties: Sequence[float],
                        gram: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`weighted_ridge_predict` for several penalties, (P, b, L, n, k): the weighted scatter (or kernel)
    is built once and only the factorisation is repeated per penalty, which is what makes re-selecting the
    penalty inside every bootstrap replicate affordable (building the kernel costs more than factorising it)."""
    return _weighted_ridge(X, W, T, torch.tensor(penalties, dtype=DTYPE)[:, None, None], gram)


def weighted_ridge_chosen(X: torch.Tensor, W: torch.Tensor, T: torch.Tensor, penalties: Sequence[float],
                          chosen: np.ndarray, gram: torch.Tensor | None = None) -> torch.Tensor:
    """Predictions (b, L, n, k) of the weighted ridge with the penalty ``penalties[chosen[b, l]]`` for weighting
    b and layer l: what :func:`weighted_ridge_grid` followed by picking each replicate's chosen penalty gives,
    with one factorisation per (b, l) instead of one per penalty (the refit on a whole outer training part is
    the largest system of the selection, so factorising it for every penalty cost more than the inner CV)."""
    grid = torch.tensor(penalties, dtype=DTYPE)
    return _weighted_ridge(X, W, T, grid[torch.from_numpy(np.asarray(chosen, dtype=np.int64))][None], gram)[0]


def _weighted_ridge(X: torch.Tensor, W: torch.Tensor, T: torch.Tensor, penalty: torch.Tensor,
                    gram: torch.Tensor | None) -> torch.Tensor:
    """The weighted ridge fits behind :func:`weighted_ridge_grid` (see there), (P, b, L, n, k) for the relative
    penalties ``penalty`` (P, 1, 1) (a grid) or (1, b, L) (one per weighting and layer). In feature space
    every penalty's systems are factorised in one batched Cholesky call; in row space one penalty at a time, on
    the kernel itself."""
    d = X.shape[2]
    total = W.sum(dim=1)  # (b,)
    Wn = W / total[:, None]
    y_bar = Wn @ T  # (b, k)
    Tc = (T[None] - y_bar[:, None, :]) * W.sqrt()[:, :, None]  # (b, n, k)
    floor = torch.finfo(DTYPE).tiny ** 0.5
    if gram is None:
        n_layers, n = X.shape[0], X.shape[1]
        by_row = X.permute(1, 0, 2).reshape(n, n_layers * d)
        mu = (Wn @ by_row).reshape(-1, n_layers, d)  # (b, L, d)
        # Weighted scatter from per-row outer products: one (b x n) @ (n x L d^2) product, no (b, L, n, d) copy.
        outer = (by_row.reshape(n, n_layers, d, 1) * by_row.reshape(n, n_layers, 1, d)).reshape(n, -1)
        raw = (W @ outer).reshape(-1, n_layers, d, d)
        scatter = raw - total[:, None, None, None] * mu[..., :, None] * mu[..., None, :]
        trace = torch.diagonal(scatter, dim1=2, dim2=3).sum(dim=2) / d
        flat = _no_spread(trace, torch.diagonal(raw, dim1=2, dim2=3).sum(dim=2) / d)  # (b, L)
        any_flat = bool(flat.any())
        weighted_t = (W[:, :, None] * T[None])[:, None]  # (b, 1, n, k)
        rhs = X.transpose(1, 2)[None] @ weighted_t - total[:, None, None, None] * mu[..., None] * y_bar[:, None,
                                                                                                    None, :]
        ridge = torch.clamp(penalty * trace, min=floor)  # (P, b, L)
        lhs = scatter + ridge[..., None, None] * torch.eye(d, dtype=DTYPE)
        if any_flat:  # solved on the identity and zeroed below (no copy of the systems otherwise)
            lhs = torch.where(flat[..., None, None], torch.eye(d, dtype=DTYPE), lhs)
        beta = _cholesky_solve(rhs, torch.linalg.cholesky(lhs))
        if any_flat:  # a ridge on features without spread: beta = 0
            beta = torch.where(flat[..., None, None], 0.0, beta)
        return torch.stack([X[None] @ beta_p - (mu[..., None, :] @ beta_p) + y_bar[:, None, None, :]
                            for beta_p in beta])
    # Row space, on the rows with weight only: a row of weight 0 adds a zero row and column to the kernel, so the
    # factorisation runs on m = the most weighted rows of any weighting in the batch (those with fewer are
    # padded with zero-weight rows, which solve to alpha = 0), and predictions reach every row through the
    # (n x m) block. Weighted centring: centred_ij = G_ij - a_i - a_j + c with a = G w / sum(w), c = w' G w /
    # sum(w)^2, built in place (fresh temporaries cost more than the Cholesky factorisation itself).
    idx = _weighted_rows(W)  # (b, m)
    a = torch.einsum("lij,bj->bli", gram, Wn)  # (b, L, n): x_i . mu
    c = (a * Wn[:, None, :]).sum(dim=2)  # (b, L): mu . mu
    u = 0.5 * c[..., None] - a
    cols = idx[:, None, None, :].expand(-1, X.shape[0], X.shape[1], -1)
    centred = torch.gather(gram.expand(W.shape[0], -1, -1, -1), 3, cols)  # (b, L, n, m)
    centred += u[..., :, None]
    centred += torch.gather(u, 2, idx[:, None, :].expand(-1, X.shape[0], -1))[..., None, :]
    s = torch.gather(W, 1, idx).sqrt()[:, None, :]  # (b, 1, m)
    K = torch.gather(centred, 2, idx[:, None, :, None].expand(-1, X.shape[0], -1, idx.shape[1]))
    K *= s[..., :, None]
    K *= s[..., None, :]
    trace = torch.diagonal(K, dim1=2, dim2=3).sum(dim=2) / d
    flat = _no_spread(trace, torch.einsum("lii,bi->bl", gram, W) / d)  # (b, L)
    any_flat = bool(flat.any())
    if any_flat:  # solved on the identity and zeroed below: a ridge on features without spread has alpha = 0
        K[flat] = torch.eye(K.shape[-1], dtype=DTYPE)
    rhs = torch.gather(Tc, 1, idx[:, :, None].expand(-1, -1, Tc.shape[2]))[:, None].expand(-1, X.shape[0], -1, -1)
    ridge = torch.clamp(penalty * trace, min=floor)  # (P, b, L)
    # One penalty at a time on K itself (its diagonal rewritten from a saved copy: the same sums as adding the
    # ridge to a fresh copy), not a P-fold copy of K; then every penalty's predictions from one product with
    # the (n x m) block, which reads that block once instead of P times (the two were ~20% of C4's probe time).
    diagonal = K.diagonal(dim1=2, dim2=3)
    kernel_diagonal = diagonal.clone()
    weighted_alphas = []
    for ridge_p in ridge:
        diagonal.copy_(kernel_diagonal + ridge_p[..., None])
        alpha_p = _cholesky_solve(rhs, torch.linalg.cholesky(K)[None])[0]
        alpha_p = alpha_p * s[..., :, None]
        weighted_alphas.append(torch.where(flat[..., None, None], 0.0, alpha_p) if any_flat else alpha_p)
    k = T.shape[1]
    pred = centred @ torch.cat(weighted_alphas, dim=3)  # (b, L, n, P k)
    pred = pred.reshape(*pred.shape[:3], len(weighted_alphas), k).permute(3, 0, 1, 2, 4)
    return pred + y_bar[None, :, None, None, :]


#: weighted feature spread (the centred scatter's trace) at or below this share of the features' uncentred second
#: moment is rounding, not spread: the subtraction that centres them leaves noise of either sign, which the
#: relative ridge cannot make positive definite (constant features, e.g. one template token's embedding, failed
#: the Cholesky factorisation); a ridge on such features predicts the weighted mean
_SPREAD_TOLERANCE = 1e-12


def _no_spread(trace: torch.Tensor, second_moment: torch.Tensor) -> torch.Tensor:
    """(b, L) whether a weighting's features have no spread beyond rounding (see :data:`_SPREAD_TOLERANCE`)."""
    return trace <= _SPREAD_TOLERANCE * second_moment


def _cholesky_solve(rhs: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """``torch.cholesky_solve(rhs, chol)`` for lower factors chol (P, b, L, m, m) and one right-hand side (b, L,
    m, k) shared by the P systems, as two triangular solves: the same substitutions (equal to the last bit on
    these sizes), 1.1-4x faster than cholesky_solve's batched path for m ~ 100-300."""
    half = torch.linalg.solve_triangular(chol, rhs.expand(chol.shape[0], *rhs.shape), upper=False)
    return torch.linalg.solve_triangular(chol.mT, half, upper=True)


def _weighted_rows(W: torch.Tensor) -> torch.Tensor:
    """(b, m) indices of each weighting's rows with weight, padded with its zero-weight rows to the batch's
    largest count m (a stable sort puts weighted rows first, in row order)."""
    has = W > 0
    m = int(has.sum(dim=1).max())
    order = torch.argsort((~has).to(torch.int8), dim=1, stable=True)
    return order[:, :m]


def weighted_scores(scoring: str, truth: np.ndarray, output: np.ndarray, W: np.ndarray,
                    n_classes: int | None) -> np.ndarray:
    """Scores (b, L) of test rows weighted by W (b, n) (0 = not in the test part); output (b, L, n[, k])."""
    if scoring in ("accuracy", "balanced_accuracy"):
        correct = output == truth[None, None]
        if scoring == "accuracy":
            return _ratio((correct * W[:, None]).sum(axis=2), W.sum(axis=1)[:, None])
        assert n_classes is not None
        recalls = []
        for k in range(n_classes):
            Wk = W * (truth == k)
            recalls.append(_ratio((correct * Wk[:, None]).sum(axis=2), Wk.sum(axis=1)[:, None]))
        rec = np.stack(recalls)
        present = ~np.isnan(rec)
        return _ratio(np.where(present, rec, 0.0).sum(axis=0), present.sum(axis=0))
    if scoring == "r2":
        y = truth.reshape(truth.shape[0], -1)
        pred = output.reshape(*output.shape[:3], -1)
        Wn = W / W.sum(axis=1, keepdims=True)
        total = (W[:, :, None] * (y[None] - (Wn @ y)[:, None, :]) ** 2).sum(axis=1)  # (b, k)
        resid = (W[:, None, :, None] * (pred - y[None, None]) ** 2).sum(axis=2)  # (b, L, k)
        r2 = np.where(total[:, None] > 0, 1.0 - _ratio(resid, total[:, None]), (resid == 0).astype(np.float64))
        return np.asarray(r2.mean(axis=2))
    out = np.full(output.shape[:2], np.nan)
    for b in range(W.shape[0]):
        rows = np.flatnonzero(W[b] > 0)
        if scoring == "roc_auc" and np.unique(truth[rows]).size < 2:
            continue
        for layer in range(output.shape[1]):
            out[b, layer] = _weighted_score(scoring, truth[rows], output[b, layer][rows], W[b, rows])
    return out


def _weighted_score(scoring: str, y_true: np.ndarray, output: np.ndarray, w: np.ndarray) -> float:
    """AUROC (scikit-learn, with sample weights) or Spearman (weighted correlation of the ranks)."""
    if scoring == "roc_auc":
        return float(roc_auc_score(y_true, output, sample_weight=w))
    yt, yp = y_true.reshape(len(y_true), -1), output.reshape(len(output), -1)
    values = []
    for j in range(yt.shape[1]):
        ry, rp = scipy.stats.rankdata(yt[:, j]), scipy.stats.rankdata(yp[:, j])
        ry, rp = ry - np.average(ry, weights=w), rp - np.average(rp, weights=w)
        values.append(float(np.sum(w * ry * rp) / np.sqrt(np.sum(w * ry**2) * np.sum(w * rp**2))))
    return float(np.mean(values))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _read_out(pred: np.ndarray, task: str, width: int, decision: bool) -> np.ndarray:
    """Ridge fitted values (..., n, k) -> the probe's outputs: codes, decision values or predictions."""
    if task == "regression":
        return pred if width > 1 else pred[..., 0]
    if width == 1:
        return pred[..., 0] - 0.5 if decision else (pred[..., 0] > 0.5).astype(np.int64)
    return pred.argmax(axis=-1)


def _refit_outputs(probe: Any, X: np.ndarray, y: np.ndarray, W: np.ndarray, task: str, decision: bool,
                   classes: np.ndarray | None) -> np.ndarray:
    """Outputs (b, L, n) of a cloned probe fitted on the duplicated training rows (integer weights W (b, n))."""
    out = np.zeros((W.shape[0], X.shape[0], X.shape[1]))
    for b in range(W.shape[0]):
        rows = np.repeat(np.arange(X.shape[1]), W[b].astype(np.int64))
        for layer in range(X.shape[0]):
            est = clone(probe).fit(X[layer][rows], y[rows])
            if decision:
                out[b, layer] = est.decision_function(X[layer])
            elif task == "classification":
                assert classes is not None
                out[b, layer] = np.searchsorted(classes, est.predict(X[layer]))
            else:
                out[b, layer] = est.predict(X[layer])
    return out


def bootstrap_weights(group_codes: np.ndarray, n_bootstrap: int, seed: int, scheme: str) -> np.ndarray:
    """(B, n) row weights, one draw per group: multinomial counts (``"multinomial"``, the classical bootstrap,
    the same draws as :func:`~conceptspace.stats.group_counts`) or mean-one exponential weights
    (``"bayesian"``, Rubin's Bayesian bootstrap: every group stays in, see module doc)."""
    if scheme == "multinomial":
        return group_counts(group_codes, group_codes.shape[0], n_bootstrap, seed)
    if scheme != "bayesian":
        raise InvalidInputError(f"unknown bootstrap weights {scheme!r}; use 'bayesian' or 'multinomial'")
    g = np.random.default_rng([seed, 2]).exponential(1.0, size=(n_bootstrap, int(group_codes.max()) + 1))
    return (g / g.mean(axis=1, keepdims=True))[:, group_codes]


@_one_torch_thread
def refit_bootstrap(
    probe: Any,
    X: np.ndarray,
    y: np.ndarray,
    groups: Sequence[Hashable] | np.ndarray | None,
    *,
    observed: np.ndarray,
    scoring: str,
    task: str,
    n_splits: int,
    n_bootstrap: int,
    seed: int,
    weights: str = "bayesian",
    penalties: Sequence[float] | None = None,
    inner_splits: int = 3,
) -> RefitBootstrap:
    """Refit-CV bootstrap replicates (L, B) of ``probe``'s grouped-CV score on X (L, n, d) and labels ``y``.

    ``observed`` (L,) is the score on the data itself (the centre of the re-centred replicates). Replicates
    with the same ``seed`` and ``groups`` draw the same group weights and, for the same stratification, deal
    the same folds, so two label sets or two feature sets (task and control) form paired replicates.
    ``weights``: ``"bayesian"`` (ridge probes) or ``"multinomial"``; probes without a weighted fast path
    always use multinomial counts (refitted on duplicated rows). ``penalties``: a grid to choose the ridge
    penalty from inside every replicate's outer training part by weighted inner grouped CV over
    ``inner_splits`` folds (:func:`_selected_predict`; ridge probes only), so the interval carries the
    selection's variance as the nested-CV score does.
    """
    n_layers, n, d = X.shape
    group_codes = check_groups(groups, n)
    codes, classes, n_classes = None, None, None
    if task == "classification":
        classes, codes = np.unique(y, return_inverse=True)
        n_classes = int(classes.size)
    spec = getattr(probe, "label_linear_spec", lambda k: None)(n_classes)
    fast = has_weighted_path(probe, n_classes)
    if penalties is not None and not fast:
        raise InvalidInputError(f"penalty selection in the bootstrap needs a ridge probe; got {type(probe).__name__}")
    W_all = bootstrap_weights(group_codes, n_bootstrap, seed, weights if fast else "multinomial")
    strata = group_strata(group_codes, codes)
    decision = scoring == "roc_auc"
    if task == "classification":
        assert codes is not None and n_classes is not None
        targets = codes[:, None].astype(np.float64) if n_classes == 2 else np.eye(n_classes)[codes]
        truth: np.ndarray = codes
    else:
        targets = np.asarray(y, dtype=np.float64).reshape(n, -1)
        truth = np.asarray(y, dtype=np.float64)
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
    # Ridge with an intercept is translation invariant; centring first keeps the weighted scatter (a difference
    # of two large terms when activations sit far from the origin) accurate in float64.
    Xt = Xt - Xt.mean(dim=1, keepdim=True)
    gram = Xt @ Xt.transpose(1, 2) if fast and (n < d or n_layers * n * d * d > _BLOCK_ELEMENTS) else None
    T = torch.from_numpy(targets)
    per_replicate = n_layers * (n * n if gram is not None else n + d * d) * 4
    chunk = max(1, min(n_bootstrap, _BLOCK_ELEMENTS // per_replicate))
    rng = np.random.default_rng([seed, 1])
    inner_rng = np.random.default_rng([seed, 3])  # its own stream: the outer folds stay those of a fixed penalty
    raw = np.full((n_layers, n_bootstrap), np.nan)
    for b0 in range(0, n_bootstrap, chunk):
        W = W_all[b0:b0 + chunk]
        fold = np.stack([deal_folds(group_codes, strata, _drawn(group_codes, w, strata.shape[0]), n_splits, rng)
                         [group_codes] for w in W])
        total = np.zeros((W.shape[0], n_layers))
        usable = np.ones(W.shape[0], dtype=bool)
        for f in range(n_splits):
            W_tr, W_te = W * (fold != f) * (fold >= 0), W * (fold == f)
            if codes is not None:
                usable &= np.all([(W_tr * (codes == k)).sum(axis=1) > 0 for k in range(n_classes or 0)], axis=0)
            usable &= W_te.sum(axis=1) > 0
            if fast:
                assert spec is not None and spec.penalty is not None
                W_fit = np.where(usable[:, None], W_tr, W)
                if penalties is not None:
                    pred = _selected_predict(Xt, W_fit, T, tuple(penalties), inner_splits, group_codes, strata,
                                             inner_rng, gram, regression=task == "regression")
                else:
                    pred = weighted_ridge_predict(Xt, torch.from_numpy(W_fit), T, spec.penalty, gram).numpy()
                out = _read_out(pred, task, targets.shape[1], decision)
            else:
                out = _refit_outputs(probe, X, y, np.where(usable[:, None], W_tr, W), task, decision, classes)
            total += weighted_scores(scoring, truth, out, W_te, n_classes)
        raw[:, b0:b0 + chunk] = np.where(usable[:, None], total / n_splits, np.nan).T
    if np.all(np.isnan(raw)):
        raise InvalidInputError(
            "no bootstrap replicate could be refitted (a class was drawn in a single group every time): add groups "
            "of the rare class or lower n_splits"
        )
    with np.errstate(invalid="ignore"):
        centre = np.nanmean(raw, axis=1, keepdims=True)
    scale = small_sample_scale(int(group_codes.max()) + 1, weights if fast else "multinomial")
    return RefitBootstrap(raw=raw, centred=np.asarray(observed, dtype=np.float64)[:, None] + scale * (raw - centre),
                          refitted=np.ones(n_layers, dtype=bool))


def _selected_predict(X: torch.Tensor, W: np.ndarray, T: torch.Tensor, penalties: tuple[float, ...],
                      inner_splits: int, group_codes: np.ndarray, strata: np.ndarray, rng: np.random.Generator,
                      gram: torch.Tensor | None, *, regression: bool) -> np.ndarray:
    """Predictions (b, L, n, k) of the weighted ridge whose penalty each replicate and layer chose by inner CV.

    The groups with weight in W (b, n) are dealt into ``inner_splits`` folds (as the outer folds are dealt);
    each penalty's weighted inner loss (``1 - R^2`` for regression, squared error of the coded targets for
    classification, as :mod:`conceptspace.analyses.probes._nested`) is summed over the inner folds, and the
    penalty with the smallest (the first of ties) is refitted on all of W. An inner fold left without weight
    on either side is skipped.
    """
    n_groups = strata.shape[0]
    inner = np.stack([deal_folds(group_codes, strata, _drawn(group_codes, w, n_groups), inner_splits, rng)
                      [group_codes] for w in W])
    targets = T.numpy()
    loss = np.zeros((len(penalties), W.shape[0], X.shape[0]))
    for j in range(inner_splits):
        W_fit, W_eval = W * ((inner != j) & (inner >= 0)), W * (inner == j)
        ok = (W_fit.sum(axis=1) > 0) & (W_eval.sum(axis=1) > 0)
        fit = torch.from_numpy(np.where(ok[:, None], W_fit, W))
        for k, pred in enumerate(weighted_ridge_grid(X, fit, T, penalties, gram).numpy()):
            loss[k] += np.where(ok[:, None], _weighted_loss(targets, pred, W_eval, regression=regression), 0.0)
    chosen = loss.argmin(axis=0)  # (b, L)
    return weighted_ridge_chosen(X, torch.from_numpy(W), T, penalties, chosen, gram).numpy()


def _weighted_loss(T: np.ndarray, pred: np.ndarray, W: np.ndarray, *, regression: bool) -> np.ndarray:
    """(b, L) inner loss of predictions (b, L, n, k) against targets T (n, k) on rows weighted by W (b, n)."""
    total_w = np.maximum(W.sum(axis=1), 1e-300)
    sse = (W[:, None, :, None] * (pred - T[None, None]) ** 2).sum(axis=2)  # (b, L, k)
    if not regression:
        return np.asarray(sse.sum(axis=2) / total_w[:, None])
    mean = (W @ T) / total_w[:, None]  # (b, k)
    sst = (W[:, :, None] * (T[None] - mean[:, None, :]) ** 2).sum(axis=1)[:, None, :]  # (b, 1, k)
    r2 = np.where(sst > 0, 1 - sse / np.where(sst > 0, sst, 1.0), (sse == 0).astype(np.float64))
    return np.asarray(1 - r2.mean(axis=2))


def has_weighted_path(probe: Any, n_classes: int | None) -> bool:
    """Whether the probe's refits run on the weighted ridge fast path (ridge probes) rather than by refitting
    clones on duplicated rows (B x folds x layers fits)."""
    spec = getattr(probe, "label_linear_spec", lambda k: None)(n_classes)
    return spec is not None and spec.kind == "ridge" and spec.penalty is not None


def small_sample_scale(n_groups: int, weights: str) -> float:
    """Factor that makes the bootstrap variance of a mean over ``n_groups`` groups unbiased.

    Over G groups with values x_g the unbiased variance of their mean is S / (G (G - 1)), S = sum (x_g - mean)^2.
    The multinomial bootstrap gives S / G^2 and the Bayesian bootstrap S / (G (G + 1)) (a Dirichlet(1) weighted
    mean), too small by (G - 1) / G and (G - 1) / (G + 1): 5% in variance at 40 groups for the Bayesian
    bootstrap, which measurably lowered coverage. The deviations are scaled by the square root of the ratio.
    """
    if n_groups < 2:
        return 1.0
    ratio = (n_groups + 1) / (n_groups - 1) if weights == "bayesian" else n_groups / (n_groups - 1)
    return float(np.sqrt(ratio))


def _drawn(group_codes: np.ndarray, w: np.ndarray, n_groups: int) -> np.ndarray:
    drawn = np.zeros(n_groups, dtype=bool)
    drawn[group_codes[w > 0]] = True
    return drawn

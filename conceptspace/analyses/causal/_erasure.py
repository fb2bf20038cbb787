"""Concept erasure with LEACE: is a concept linearly readable after erasure, and does erasing it change predictions?

Why it is built this way:

* LEACE (EleutherAI ``concept-erasure``) is the least-squares edit after which *no* linear classifier beats a
  constant predictor on the fitting data. That guarantee is checked, not assumed: a fresh probe is fitted and
  scored with grouped cross-validation on erased activations, with the eraser itself fitted inside each
  training fold (:class:`LeaceTransformer` in a scikit-learn ``Pipeline``), so the after-erasure score is
  honest held-out accuracy and its permutation test refits eraser and probe on every permutation.
* The eraser is fitted in float64. Residual-stream covariances are ill-conditioned (a few massive dimensions),
  and a float32 fit leaves real signal behind: on SmolLM2-135M layer 15 (truth_is_universal
  animal_class_polarity, n=328) the float32 fit left a class-mean gap of 1.1e-2 (max |x| = 109) and an
  in-sample logistic regression at 0.66; the float64 fit leaves 1e-13 and 0.50. The fitted eraser is *applied*
  in the activations' own dtype: applying the float64 fit in float32 leaves a gap of 6e-8 there.
* The permutation test refits LEACE for every permutation and fold, but only the cross-covariance with the
  labels changes between permutations. The label-free part (mean, shrunk covariance and its
  eigendecomposition: the O(d^3) work) is computed once per training fold and reused
  (:class:`_WhiteningCache`, keyed by the exact bytes of X); a refit then costs O(n d k + d^2 k).
* The behavioural question is optional and separate: given concept-relevant ``prompts`` and their next-token
  ``targets``, the eraser fitted on all items is applied inside the model at the site (every token by default)
  and the change of a target score is measured. Any edit moves predictions somewhat, so the comparison is
  erasing random subspaces of the same rank through the same mean (orthogonal projections
  ``x - U U^T (x - mean)``). p = (1 + #random >= LEACE) / (B + 1). Without prompts the test is probe-only.
* The edit sizes (mean ``||x - x'||`` on the concept items) of LEACE and of the random erasures are reported,
  because LEACE's oblique projection can move activations more than an orthogonal one of the same rank.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

with warnings.catch_warnings():  # concept_erasure decorates with torch.jit.script, deprecated in torch 2.13
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
    from concept_erasure import LeaceEraser, LeaceFitter
    from concept_erasure.shrinkage import optimal_linear_shrinkage
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from conceptspace.analyses.causal._inputs import (
    PreparedPrompts,
    TargetTokens,
    Where,
    as_targets,
    check_count,
    check_level,
    check_site,
    model_kind,
    prepare_prompts,
    require_causal,
)
from conceptspace.analyses.causal._placebo import index_seed, placebo_interval, rank_p_value
from conceptspace.analyses.causal._steering import HELD_OUT_PLACEBO
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.analyses.probes._evaluation import probe_layers
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.models._sites import layer_index
from conceptspace.stats._results import TRAINED, ResultSet, TestKey, TestResult
from conceptspace.stats._sequential import SequentialPlan, null_extra, sequential_null
from conceptspace.utils.deprecation import renamed_keywords
from conceptspace.utils.validation import check_features, check_labels, infer_task

SVD_TOL = 0.01  # concept-erasure's default: whitened cross-covariance directions below this are not erased


def _concept_matrix(y: np.ndarray) -> torch.Tensor:
    """Labels as LEACE's z: a 0/1 column for two classes, one-hot columns for more (float64)."""
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise InvalidInputError("erasure needs at least two classes in y")
    if classes.size == 2:
        return torch.as_tensor(codes, dtype=torch.float64)[:, None]
    return torch.nn.functional.one_hot(torch.as_tensor(codes), classes.size).double()


@dataclass(frozen=True)
class _Whitening:
    """The label-free part of a LEACE fit on one X, exactly as ``LeaceFitter`` computes it (float64).

    ``sigma`` (shrunk covariance) = ``vecs @ diag(vals) @ vecs.T``; the whitening ``W = sigma^{-1/2}`` and its
    inverse are ``vecs @ diag(w) @ vecs.T`` and ``vecs @ diag(w_inv) @ vecs.T`` (pseudo-inverse threshold of
    ``torch.linalg.pinv``), never formed: every use multiplies them with a d x k matrix.
    """

    mean: torch.Tensor  # (d,)
    vecs: torch.Tensor  # (d, d)
    vals: torch.Tensor  # (d,)
    w: torch.Tensor  # (d,)
    w_inv: torch.Tensor  # (d,)

    @classmethod
    def of(cls, x: torch.Tensor) -> _Whitening:
        n, d = x.shape
        mean = x.mean(dim=0)
        centred = x - mean
        scatter = centred.T @ centred
        sigma = optimal_linear_shrinkage((scatter + scatter.T) / 2 / n, n)
        vals, vecs = torch.linalg.eigh(sigma)
        keep = vals > vals[-1] * d * torch.finfo(vals.dtype).eps
        clamped = vals.clamp_min(0.0)
        w = torch.where(keep, clamped.rsqrt(), 0.0)
        w_inv = torch.where(keep, clamped.sqrt(), 0.0)
        return cls(mean=mean, vecs=vecs, vals=vals, w=w, w_inv=w_inv)

    def times(self, diagonal: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``vecs @ diag(diagonal) @ vecs.T @ a`` for a (d, k) matrix ``a``."""
        return self.vecs @ (diagonal[:, None] * (self.vecs.T @ a))

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.mean, self.vecs, self.vals, self.w, self.w_inv))


class _WhiteningCache:
    """Recently used :class:`_Whitening` values, keyed by the shape and a BLAKE2 digest of X's float64 bytes.

    A permutation test refits LEACE on the same few training folds hundreds of times with permuted labels; the
    key is the exact content, so a hit is the same computation, never an approximation. Bounded by
    ``max_bytes`` (least recently used out first); :meth:`clear` frees it.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[tuple[int, ...], bytes], _Whitening] = OrderedDict()

    def get(self, features: np.ndarray) -> _Whitening:
        contiguous = np.ascontiguousarray(features, dtype=np.float64)
        key = (contiguous.shape, hashlib.blake2b(contiguous.data, digest_size=20).digest())
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return found
        self.misses += 1
        value = _Whitening.of(torch.as_tensor(contiguous))
        self._entries[key] = value
        while len(self._entries) > 1 and sum(v.nbytes for v in self._entries.values()) > self.max_bytes:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0


WHITENING_CACHE = _WhiteningCache(max_bytes=512 * 2**20)


def _trace_grows(whitening: _Whitening, left: torch.Tensor, right: torch.Tensor) -> bool:
    """Whether ``P = I - left @ right`` increases the covariance trace: ``tr(P S P^T) > tr(S)``.

    Expanded so that only d x k products are needed:
    ``tr(P S P^T) = tr(S) - 2 tr(right S left) + tr(left^T left  right S right^T)``.
    """
    sigma_left = whitening.times(whitening.vals, left)  # (d, k)
    sigma_right_t = whitening.times(whitening.vals, right.T)  # (d, k)
    cross = torch.trace(right @ sigma_left)
    quad = torch.trace((left.T @ left) @ (right @ sigma_right_t))
    return bool(quad - 2 * cross > 0)


def fit_leace(X: Any, y: Any) -> LeaceEraser:
    """A float64 LEACE eraser for class labels ``y`` (X is (n, d)), equal to ``LeaceEraser.fit`` in float64.

    Same estimator as concept-erasure's defaults (shrunk covariance, affine, trace constraint, ``svd_tol``
    0.01); the label-free eigendecomposition comes from :data:`WHITENING_CACHE`. With the shrunk (full-rank)
    covariance S the LEACE projection P never increases the trace (``tr(P S P^T) = tr(S) - ||W^+ u||^2``), so
    concept-erasure's trace constraint is inactive; should roundoff say otherwise, concept-erasure's own fit is
    returned instead. Apply the eraser with :func:`apply_eraser`.
    """
    features = check_features(X)
    z = _concept_matrix(np.asarray(y))
    if z.shape[0] != features.shape[0]:
        raise InvalidInputError(f"y has {z.shape[0]} labels but X has {features.shape[0]} items")
    whitening = WHITENING_CACHE.get(features)
    x = torch.as_tensor(features)
    n = x.shape[0]
    sigma_xz = (x - whitening.mean).T @ (z - z.mean(dim=0)) / (n - 1)  # (d, k)
    u, s, _ = torch.linalg.svd(whitening.times(whitening.w, sigma_xz), full_matrices=False)
    u = u * (s > SVD_TOL)
    left = whitening.times(whitening.w_inv, u)  # W^+ u        (d, k)
    right = whitening.times(whitening.w, u).T  # u^T W         (k, d), W is symmetric
    if _trace_grows(whitening, left, right):
        return LeaceFitter.fit(x, z).eraser
    return LeaceEraser(proj_left=left, proj_right=right, bias=whitening.mean)


def apply_eraser(eraser: LeaceEraser, X: Any) -> np.ndarray:
    """``eraser`` applied to X (n, d) in X's own precision: float32 stays float32, anything else is float64."""
    dtype = torch.float32 if np.asarray(X).dtype == np.float32 else torch.float64
    x = torch.as_tensor(check_features(X), dtype=dtype)
    bias = eraser.bias.to(dtype) if eraser.bias is not None else None
    cast = LeaceEraser(eraser.proj_left.to(dtype), eraser.proj_right.to(dtype), bias)
    return cast(x).numpy()


class LeaceTransformer(TransformerMixin, BaseEstimator):
    """LEACE as a scikit-learn transformer, so erasure can sit inside a cross-validated ``Pipeline``."""

    def fit(self, X: Any, y: Any) -> LeaceTransformer:
        self.eraser_ = fit_leace(X, y)
        self.n_features_in_ = int(self.eraser_.proj_left.shape[0])
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "eraser_")
        return apply_eraser(self.eraser_, X)


def random_subspaces(d_model: int, rank: int, n: int, seed: int) -> torch.Tensor:
    """(n, d, rank) orthonormal bases of random subspaces (QR of Gaussian matrices, private generator)."""
    generator = torch.Generator().manual_seed(int(seed))
    draws = torch.randn(n, d_model, rank, generator=generator, dtype=torch.float64)
    return torch.linalg.qr(draws).Q.to(torch.float32)


@dataclass(frozen=True)
class ErasureResult:
    """Probe accuracy before/after LEACE, the eraser and erased activations, and (optionally) the prediction change.

    ``eraser`` is fitted on all items in float64; ``erased`` is X after it, in X's dtype. The behavioural fields
    (``change_*``, ``kl_*``) are None when the test ran probe-only (no prompts).
    """

    name: str
    site: str
    rank: int
    probe_before: float
    probe_after: float
    eraser: LeaceEraser
    erased: np.ndarray  # (n, d)
    edit_norm_leace: float
    edit_norm_random: np.ndarray  # (B,)
    results: ResultSet
    change_leace: np.ndarray | None = None  # (n_prompts,) signed target-score change
    change_random: np.ndarray | None = None  # (B, n_prompts)
    kl_leace: float | None = None
    kl_random: np.ndarray | None = None
    replicates: dict[TestKey, np.ndarray] = field(default_factory=dict)  # effect replicates of the behaviour rows
    placebo_null: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (B,) relabelled-eraser null draws

    def summary(self) -> str:
        lines = [
            f"Erasure of {self.name} at {self.site} (rank {self.rank})",
            f"  fresh probe: {self.probe_before:.3f} before, {self.probe_after:.3f} after LEACE",
        ]
        if self.change_leace is not None and self.change_random is not None:
            lines.append(
                f"  mean |score change|: LEACE {np.abs(self.change_leace).mean():.4g}, random subspaces median "
                f"{np.median(np.abs(self.change_random).mean(axis=1)):.4g}"
            )
        lines.append(
            f"  mean edit norm on concept items: LEACE {self.edit_norm_leace:.4g}, random median "
            f"{np.median(self.edit_norm_random):.4g}"
        )
        return "\n".join(lines) + "\n\n" + str(self.results)


def _probe_rows(
    probe: Any,
    X: np.ndarray,
    y: np.ndarray,
    groups: Sequence[Hashable] | np.ndarray | None,
    *,
    name: str,
    site: str,
    layer: int | None,
    claim: str | None,
    n_splits: int,
    n_permutations: int,
    n_bootstrap: int,
    seed: int,
    level: float,
) -> tuple[TestResult, TestResult]:
    """Grouped-CV score of a fresh probe on raw activations and on LEACE-erased ones (eraser fit per fold)."""
    method = type(probe).__name__
    kwargs: dict[str, Any] = {
        "dataset": name,
        "layers": [layer],
        "claim": claim,
        "n_splits": n_splits,
        "n_permutations": n_permutations,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "level": level,
        # Exploratory rows ("falls to chance"), read by no verdict: the nested-CV interval would refit LEACE and
        # the probe R x (K + K(K-1)) times per row, the dearest part of the analysis; they keep the bootstrap's
        # interval (the fixed-output one for these probes, flagged in extra["bootstrap"]).
        "score_interval": "bootstrap",
    }
    before, cv = probe_layers(clone(probe), X[None], y, groups, **kwargs)
    erased = Pipeline([("leace", LeaceTransformer()), ("probe", clone(probe))])
    after, _ = probe_layers(erased, X[None], y, groups, folds=list(cv.folds), **kwargs)
    row_before = before[0].replace(
        test="erasure", method=method, detail=("probe_before",), extra={**before[0].extra, "site": site}
    )
    row_after = after[0].replace(
        test="erasure",
        method=f"LEACE+{method}",
        detail=("probe_after",),
        extra={**after[0].extra, "site": site, "expected": "chance: LEACE leaves no linear signal"},
    )
    return row_before, row_after


def _edits(eraser: LeaceEraser, d_model: int, n_random: int, seed: int) -> Edits:
    """LEACE (edit 0) and ``n_random`` random orthogonal erasures of the same rank through the same mean."""
    left = eraser.proj_left.float()  # (d, k)
    right = eraser.proj_right.float()  # (k, d)
    bias = eraser.bias.float() if eraser.bias is not None else torch.zeros(d_model)
    bases = random_subspaces(d_model, int(left.shape[1]), n_random, seed)  # (B, d, k)
    return Edits.projections(
        left=torch.cat([left[None], bases]),
        right=torch.cat([right[None], bases.transpose(1, 2)]),
        bias=bias[None].expand(n_random + 1, -1).contiguous(),
    )


def _edit_norms(eraser: LeaceEraser, features: np.ndarray, n_random: int, seed: int) -> np.ndarray:
    """Mean ``||x - x'||`` on the concept items for LEACE (entry 0) and each random erasure, in float64."""
    x = torch.as_tensor(features)
    centred = x - (eraser.bias if eraser.bias is not None else 0.0)
    leace = ((centred @ eraser.proj_right.T) @ eraser.proj_left.T).norm(dim=1).mean()
    bases = random_subspaces(x.shape[1], int(eraser.proj_left.shape[1]), n_random, seed).double()
    random = torch.stack([((centred @ basis) @ basis.T).norm(dim=1).mean() for basis in bases])
    return torch.cat([leace[None], random]).numpy()


def _site_name(model: ConceptModel | None, site: str | int) -> str:
    if model is not None:
        return check_site(model, site)
    if isinstance(site, str) and site.strip():
        return site.strip()
    raise InvalidInputError(
        f"without a model, site must be the name of the site X was read at (e.g. 'layer.15'); got {site!r}"
    )


def _check_mode(
    model: ConceptModel | None, prompts: Sequence[str] | None, targets: Any, off_target_prompts: Any
) -> bool:
    """True for the behavioural test (prompts and targets given), False for probe-only; else say what is missing."""
    if (prompts is None) != (targets is None):
        raise InvalidInputError(
            "pass both prompts and targets for the behavioural part of the erasure test, or neither for a "
            "probe-only erasure"
        )
    if prompts is None and off_target_prompts is not None:
        raise InvalidInputError("off_target_prompts needs prompts and targets (the behavioural test)")
    if prompts is not None and model is None:
        raise InvalidInputError("the behavioural erasure test (prompts, targets) needs the model")
    return prompts is not None


@dataclass(frozen=True)
class _Behaviour:
    """Target-score changes (E, n_prompts) of LEACE (row 0) and the random erasures, and the off-target KL."""

    change: np.ndarray
    kl: np.ndarray | None  # (E,)
    prepared: PreparedPrompts
    target: TargetTokens


def _run_behaviour(
    model: ConceptModel,
    site: str,
    edits: Edits,
    prepared: PreparedPrompts,
    target: TargetTokens,
    off: PreparedPrompts | None,
    max_rows: int,
) -> _Behaviour:
    """Apply every edit inside the model at ``site`` and read the target score (and off-target KL)."""
    zero = Edits.additive(torch.zeros(1, model.d_model))
    base = run_edits(model, prepared, site, zero, target.ids, max_rows=max_rows)
    base_score = target.score(base.target_logp[0])
    out = run_edits(model, prepared, site, edits, target.ids, max_rows=max_rows)
    change = (torch.stack([target.score(lp) for lp in out.target_logp]) - base_score[None]).double().numpy()
    kl = None
    if off is not None:
        reference = run_edits(model, off, site, zero, target.ids, keep_full=True, max_rows=max_rows)
        assert reference.full_logp is not None
        off_out = run_edits(model, off, site, edits, target.ids, reference=reference.full_logp[0], max_rows=max_rows)
        assert off_out.kl is not None
        kl = off_out.kl.double().clamp(min=0).mean(dim=1).numpy()  # (E,)
    return _Behaviour(change=change, kl=kl, prepared=prepared, target=target)


def _behaviour_rows(
    behaviour: _Behaviour,
    edit_norms: np.ndarray,
    *,
    name: str,
    site: str,
    model_label: str,
    rank: int,
    claim: str | None,
    n_bootstrap: int,
    seed: int,
    level: float,
    replicates: dict[TestKey, np.ndarray],
    as_reference: bool = False,
) -> list[TestResult]:
    """LEACE's |score change| vs the random erasures, and one random erasure as a placebo 'concept' (their
    effect replicates go into ``replicates``). ``as_reference``: the data-drawn placebos are the primary null,
    so LEACE vs random subspaces is a control (``LEACE_vs_random_subspaces``, control ``random_subspace``)."""
    prepared = behaviour.prepared
    magnitude = np.abs(behaviour.change)  # (E, n)
    common: dict[str, Any] = {
        "claim": claim,
        "statistic_name": "mean_abs_score_change",
        "effect_size_name": "mean |change| - random-subspace mean",
        "n": prepared.n,
    }
    extra: dict[str, Any] = {
        "site": site,
        "rank": rank,
        "targets": behaviour.target.describe(),
        "edit_norm_leace": float(edit_norms[0]),
        "edit_norm_random_median": float(np.median(edit_norms[1:])),
        "mean_signed_change_leace": float(behaviour.change[0].mean()),
        "n_bootstrap": n_bootstrap,
        "ci_level": level,
        "seed": seed,
        "p_value_method": "placebo rank: (1 + #random-subspace >= observed) / (B + 1), one-sided",
    }
    if behaviour.kl is not None:
        extra["off_target_kl_leace"] = float(behaviour.kl[0])
        extra["off_target_kl_random_median"] = float(np.median(behaviour.kl[1:]))
    rows = []
    for control, obs_index, null_rows in ((None, 0, slice(1, None)), ("random_subspace", 1, slice(2, None))):
        # no +/-u pairs here: erasing a subspace does not depend on the sign of its basis
        fit = placebo_interval(magnitude[obs_index], magnitude[null_rows], n_bootstrap=n_bootstrap, seed=seed,
                               level=level, paired=False)
        null = magnitude[null_rows].mean(axis=1)
        method = "random_subspace_erasure" if control is not None else (
            "LEACE_vs_random_subspaces" if as_reference else "LEACE")
        key_control = "random_subspace" if control is not None or as_reference else None
        rows.append(
            TestResult(
                key=TestKey(test="erasure", dataset=name, method=method, site=site, position=prepared.where,
                            detail=("prediction_change",), control=key_control, model=model_label),
                statistic=fit.statistic,
                effect_size=fit.effect,
                ci_low=fit.ci_low,
                ci_high=fit.ci_high,
                p_value=rank_p_value(fit.statistic, null),
                **common,
                extra={
                    **extra,
                    "role": "primary" if key_control is None else "control",
                    "placebo": "random_subspace",
                    "n_placebo": int(null.shape[0]),
                    "n_permutations": int(null.shape[0]),
                    "null_mean": fit.null_mean,
                    "null_sd": fit.null_sd,
                    "z_vs_placebo": fit.z,
                    "placebo_quantiles": np.quantile(null, [0.025, 0.5, 0.975]).tolist(),
                    "ci_method": "inversion of the placebo rank test (subspace-level variance)",
                },
            )
        )
        replicates[rows[-1].key] = fit.replicates
    return rows


def _relabelled_rows(
    model: ConceptModel,
    site: str,
    features: np.ndarray,
    relabel: Callable[[int], np.ndarray],
    behaviour: _Behaviour,
    plan: SequentialPlan,
    *,
    name: str,
    model_label: str,
    rank: int,
    claim: str | None,
    n_bootstrap: int,
    seed: int,
    level: float,
    replicates: dict[TestKey, np.ndarray],
    max_rows: int,
) -> tuple[list[TestResult], np.ndarray]:
    """LEACE's |score change| against LEACE erasers of relabellings (sequential), and one more relabelled
    eraser tested as if it were the concept (``control="placebo_erasure"``); and the null draws (B,)."""
    prepared, target = behaviour.prepared, behaviour.target
    zero = Edits.additive(torch.zeros(1, model.d_model))
    base = run_edits(model, prepared, site, zero, target.ids, max_rows=max_rows)
    base_score = target.score(base.target_logp[0])

    def changes(indices: np.ndarray) -> np.ndarray:
        erasers = [fit_leace(features, relabel(index_seed(seed, int(j)))) for j in indices]
        d = model.d_model
        edits = Edits.projections(
            left=torch.stack([e.proj_left.float() for e in erasers]),
            right=torch.stack([e.proj_right.float() for e in erasers]),
            bias=torch.stack([e.bias.float() if e.bias is not None else torch.zeros(d) for e in erasers]),
        )
        out = run_edits(model, prepared, site, edits, target.ids, max_rows=max_rows)
        scores = torch.stack([target.score(lp) for lp in out.target_logp])
        return np.abs((scores - base_score[None]).double().numpy())  # (k, n)

    drawn: list[np.ndarray] = []

    def draw(offset: int, count: int) -> np.ndarray:
        drawn.append(changes(np.arange(offset, offset + count)))
        return np.repeat(drawn[-1].mean(axis=1)[None], 2, axis=0)

    concept = np.abs(behaviour.change[0])
    held = changes(np.array([HELD_OUT_PLACEBO]))[0]
    out = sequential_null(draw, np.array([concept.mean(), held.mean()]), plan, decide=(0,))
    null = np.concatenate(drawn)
    rows = []
    for row, (control, observed) in enumerate(((None, concept), ("placebo_erasure", held))):
        fit = placebo_interval(observed, null, n_bootstrap=n_bootstrap, seed=seed, level=level, paired=False)
        key = TestKey(test="erasure", dataset=name, method="LEACE" if control is None else "relabelled_leace",
                      site=site, position=prepared.where, detail=("prediction_change",), control=control,
                      model=model_label)
        rows.append(TestResult(
            key=key, statistic=fit.statistic, effect_size=fit.effect, ci_low=fit.ci_low, ci_high=fit.ci_high,
            p_value=float(out.p_value[row]), claim=claim, statistic_name="mean_abs_score_change",
            effect_size_name="mean |change| - placebo-erasure mean", n=prepared.n,
            extra={"site": site, "rank": rank, "targets": target.describe(), "n_bootstrap": n_bootstrap,
                   "ci_level": level, "seed": seed, **null_extra(out, row),
                   "role": "primary" if control is None else "control", "placebo": "relabelled_leace",
                   "z_vs_placebo": fit.z,
                   "p_value_method": "placebo rank against LEACE erasers of random relabellings, one-sided, "
                                     "drawn sequentially",
                   "ci_method": "inversion of the placebo rank test (placebo-level variance)"},
        ))
        replicates[key] = fit.replicates
    return rows, null.mean(axis=1)


@renamed_keywords(name="dataset")
def erasure_test(
    model: ConceptModel | None,
    X: Any,
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    *,
    site: str | int,
    prompts: Sequence[str] | None = None,
    targets: TargetTokens | tuple[Sequence[str | int], Sequence[str | int]] | None = None,
    off_target_prompts: Sequence[str] | None = None,
    where: Where = "all",
    probe: Any = None,
    n_random: int = 20,
    n_splits: int = 5,
    n_permutations: int = 200,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    dataset: str = "concept",
    claim: str | None = None,
    max_rows: int = 256,
    relabel: Callable[[int], np.ndarray] | None = None,
    plan: SequentialPlan | None = None,
) -> ErasureResult:
    """LEACE at ``site``: probe accuracy before/after, and optionally the effect on predictions vs random erasures.

    ``X`` (n, d) are the concept items' activations at ``site`` (e.g. ``extract(model, cs, sites=[site])``),
    ``y`` their class labels, ``groups`` what must not be split across folds. Without ``prompts`` and
    ``targets`` the test is probe-only (two rows: fresh probe before and after erasure) and ``model`` may be
    None (then ``site`` is just the name of X's site). With them, ``prompts`` are concept-relevant prompts whose
    next-token ``targets`` the concept should move; the eraser is applied inside the model at ``where``, and the
    change is compared with ``n_random`` random erasures of the same rank (two more rows).
    ``probe`` (any scikit-learn classifier) defaults to scikit-learn's L2 ``LogisticRegression`` (C=1), the
    estimator inside :class:`~conceptspace.analyses.probes.LogisticProbe`; the probe class itself refuses a zero
    coefficient vector, which is exactly what a perfect erasure can leave it. The result carries the float64
    eraser fitted on all items and the erased X. ``dataset`` names the concept in the results' keys.

    ``relabel`` (``seed -> labels``, e.g. of ``concepts.null_labels``) makes the primary null data-drawn: LEACE
    erasers fitted on random relabellings of the same items (placebo j: relabelling ``index_seed(seed, j)``),
    drawn sequentially under ``plan`` (default: ``n_permutations`` draws, fixed); the random subspaces are then
    a reference (``control="random_subspace"``). No +/-u pairs here: an erasure does not depend on the sign of
    the subspace's basis.
    """
    behavioural = _check_mode(model, prompts, targets, off_target_prompts)
    if behavioural:
        assert model is not None
        require_causal(model, "erasure")
    site_name = _site_name(model, site)
    features = check_features(X)
    if model is not None and features.shape[1] != model.d_model:
        raise InvalidInputError(
            f"X has {features.shape[1]} features but the model's residual stream has d={model.d_model}; "
            f"pass this model's activations at {site_name}"
        )
    if infer_task(y) != "classification":
        raise InvalidInputError("erasure needs class labels y (binary or categorical), not continuous values")
    labels = check_labels(y, features.shape[0], task="classification")
    n_random = check_count(n_random, "n_random", 2)
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap", 1)
    level = check_level(level)
    prepared = off = target = None
    if behavioural:
        assert model is not None and prompts is not None and targets is not None
        target = as_targets(model, targets)
        prepared = prepare_prompts(model, prompts, where)
        if off_target_prompts is not None:
            off = prepare_prompts(model, off_target_prompts, where if isinstance(where, str) else "last")
    layer = layer_index(site_name)
    probe = LogisticRegression(C=1.0, max_iter=2000) if probe is None else probe

    row_before, row_after = _probe_rows(
        probe,
        features,
        labels,
        groups,
        name=dataset,
        site=site_name,
        layer=layer,
        claim=claim,
        n_splits=n_splits,
        n_permutations=n_permutations,
        n_bootstrap=n_bootstrap,
        seed=seed,
        level=level,
    )
    eraser = fit_leace(features, labels)
    rank = int(eraser.proj_left.shape[1])
    edit_norms = _edit_norms(eraser, features, n_random, seed)
    model_label = TRAINED if model is None else model_kind(model)
    # the probe rows answer "is the concept linearly gone", not the causal question: exploratory
    rows = [row.replace(model=model_label, extra={**row.extra, "role": "exploratory"})
            for row in (row_before, row_after)]
    replicates: dict[TestKey, np.ndarray] = {}
    placebo_null = np.zeros(0)
    behaviour = None
    if behavioural:
        assert model is not None and prepared is not None and target is not None
        edits = _edits(eraser, model.d_model, n_random, seed)
        behaviour = _run_behaviour(model, site_name, edits, prepared, target, off, max_rows)
        if relabel is not None:
            relabelled, placebo_null = _relabelled_rows(
                model, site_name, features, relabel, behaviour, plan or SequentialPlan.fixed(n_permutations),
                name=dataset, model_label=model_label, rank=rank, claim=claim, n_bootstrap=n_bootstrap,
                seed=seed, level=level, replicates=replicates, max_rows=max_rows,
            )
            rows += relabelled
        rows += _behaviour_rows(
            behaviour,
            edit_norms,
            name=dataset,
            site=site_name,
            model_label=model_label,
            rank=rank,
            claim=claim,
            n_bootstrap=n_bootstrap,
            seed=seed,
            level=level,
            replicates=replicates,
            as_reference=relabel is not None,
        )
    kl = None if behaviour is None else behaviour.kl
    return ErasureResult(
        name=dataset,
        site=site_name,
        rank=rank,
        probe_before=row_before.statistic,
        probe_after=row_after.statistic,
        eraser=eraser,
        erased=apply_eraser(eraser, X),
        edit_norm_leace=float(edit_norms[0]),
        edit_norm_random=edit_norms[1:],
        results=ResultSet(rows),
        replicates=replicates,
        placebo_null=placebo_null,
        change_leace=None if behaviour is None else behaviour.change[0],
        change_random=None if behaviour is None else behaviour.change[1:],
        kl_leace=None if kl is None else float(kl[0]),
        kl_random=None if kl is None else kl[1:],
    )

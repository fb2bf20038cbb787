"""Concept erasure with LEACE: does removing what a probe reads change what the model predicts?

Why it is built this way:

* LEACE (EleutherAI ``concept-erasure``) is the least-squares edit after which *no* linear classifier beats a
  constant predictor on the fitting data. That guarantee is checked, not assumed: a fresh probe is fitted and
  scored with grouped cross-validation on erased activations, with the eraser itself fitted inside each
  training fold (:class:`LeaceTransformer` in a scikit-learn ``Pipeline``), so the after-erasure score is
  honest held-out accuracy and its permutation test refits eraser and probe on every permutation.
* The causal question is separate: the eraser fitted on all items is applied inside the model at the site
  (every token by default) and the change of a target score on concept-relevant prompts is measured. Any
  edit moves predictions somewhat, so the comparison is erasing random subspaces of the same rank through
  the same mean (orthogonal projections ``x - U U^T (x - mean)``). p = (1 + #random >= LEACE) / (B + 1).
* The edit sizes (mean ``||x - x'||`` on the concept items) of LEACE and of the random erasures are reported,
  because LEACE's oblique projection can move activations more than an orthogonal one of the same rank.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from concept_erasure import LeaceEraser
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from conceptspace.analyses.causal._inputs import (
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
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.analyses.probes._evaluation import probe_layers
from conceptspace.errors import InvalidInputError
from conceptspace.models._load import ConceptModel
from conceptspace.models._sites import layer_index
from conceptspace.stats._bootstrap import group_counts, percentile_interval
from conceptspace.stats._permutation import permutation_p_value
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.validation import check_features, check_labels, infer_task


def _concept_matrix(y: np.ndarray) -> torch.Tensor:
    """Labels as LEACE's z: a 0/1 column for two classes, one-hot columns for more."""
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise InvalidInputError("erasure needs at least two classes in y")
    if classes.size == 2:
        return torch.as_tensor(codes, dtype=torch.float64)[:, None]
    return torch.nn.functional.one_hot(torch.as_tensor(codes), classes.size).double()


def fit_leace(X: Any, y: Any) -> LeaceEraser:
    """A LEACE eraser for class labels ``y`` (X is (n, d)), fitted in float32.

    float32 because the fit is dominated by one symmetric eigendecomposition of the d x d covariance, which
    took 1.4 s in float64 and 0.2 s in float32 at d=576 on a 2-core CPU, and a permutation test refits it
    hundreds of times; the erased class means still agree to ~1e-6.
    """
    features = torch.as_tensor(check_features(X), dtype=torch.float32)
    return LeaceEraser.fit(features, _concept_matrix(np.asarray(y)).float())


class LeaceTransformer(TransformerMixin, BaseEstimator):
    """LEACE as a scikit-learn transformer, so erasure can sit inside a cross-validated ``Pipeline``."""

    def fit(self, X: Any, y: Any) -> LeaceTransformer:
        self.eraser_ = fit_leace(X, y)
        return self

    def transform(self, X: Any) -> np.ndarray:
        features = torch.as_tensor(check_features(X), dtype=torch.float32)
        return self.eraser_(features).numpy()


def random_subspaces(d_model: int, rank: int, n: int, seed: int) -> torch.Tensor:
    """(n, d, rank) orthonormal bases of random subspaces (QR of Gaussian matrices, private generator)."""
    generator = torch.Generator().manual_seed(int(seed))
    draws = torch.randn(n, d_model, rank, generator=generator, dtype=torch.float64)
    return torch.linalg.qr(draws).Q.to(torch.float32)


@dataclass(frozen=True)
class ErasureResult:
    """Probe accuracy before/after LEACE, the prediction change vs random erasures, and the tests."""

    name: str
    site: str
    rank: int
    probe_before: float
    probe_after: float
    change_leace: np.ndarray  # (n_prompts,) signed target-score change
    change_random: np.ndarray  # (B, n_prompts)
    kl_leace: float | None
    kl_random: np.ndarray | None
    edit_norm_leace: float
    edit_norm_random: np.ndarray
    results: ResultSet

    def summary(self) -> str:
        lines = [
            f"Erasure of {self.name} at {self.site} (rank {self.rank})",
            f"  fresh probe: {self.probe_before:.3f} before, {self.probe_after:.3f} after LEACE",
            f"  mean |score change|: LEACE {np.abs(self.change_leace).mean():.4g}, random subspaces median "
            f"{np.median(np.abs(self.change_random).mean(axis=1)):.4g}",
            f"  mean edit norm on concept items: LEACE {self.edit_norm_leace:.4g}, random median "
            f"{np.median(self.edit_norm_random):.4g}",
        ]
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


def erasure_test(
    model: ConceptModel,
    X: Any,
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    *,
    site: str | int,
    prompts: Sequence[str],
    targets: TargetTokens | tuple[Sequence[str | int], Sequence[str | int]],
    off_target_prompts: Sequence[str] | None = None,
    where: Where = "all",
    probe: Any = None,
    n_random: int = 20,
    n_splits: int = 5,
    n_permutations: int = 200,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    name: str = "concept",
    claim: str | None = None,
    max_rows: int = 256,
) -> ErasureResult:
    """LEACE at ``site``: probe accuracy before/after, and the effect on predictions vs random erasures.

    ``X`` (n, d) are the concept items' activations at ``site`` (e.g. ``extract(model, cs, sites=[site])``),
    ``y`` their class labels, ``groups`` what must not be split across folds. ``prompts`` are concept-relevant
    prompts whose next-token ``targets`` the concept should move; the eraser is applied at ``where``.
    ``probe`` (any scikit-learn classifier) defaults to scikit-learn's L2 ``LogisticRegression`` (C=1), the
    estimator inside :class:`~conceptspace.analyses.probes.LogisticProbe`; the probe class itself refuses a zero
    coefficient vector, which is exactly what a perfect erasure can leave it.
    """
    require_causal(model, "erasure")
    site_name = check_site(model, site)
    features = check_features(X)
    if features.shape[1] != model.d_model:
        raise InvalidInputError(
            f"X has {features.shape[1]} features but the model's residual stream has d={model.d_model}; "
            f"pass this model's activations at {site_name}"
        )
    if infer_task(y) != "classification":
        raise InvalidInputError("erasure needs class labels y (binary or categorical), not continuous values")
    labels = check_labels(y, features.shape[0], task="classification")
    target = as_targets(model, targets)
    n_random = check_count(n_random, "n_random", 2)
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap", 1)
    level = check_level(level)
    prepared = prepare_prompts(model, prompts, where)
    off = None
    if off_target_prompts is not None:
        off = prepare_prompts(model, off_target_prompts, where if isinstance(where, str) else "last")
    layer = layer_index(site_name)
    probe = LogisticRegression(C=1.0, max_iter=2000) if probe is None else probe

    row_before, row_after = _probe_rows(
        probe,
        features,
        labels,
        groups,
        name=name,
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
    left = eraser.proj_left.float()  # (d, k)
    right = eraser.proj_right.float()  # (k, d)
    bias = eraser.bias.float() if eraser.bias is not None else torch.zeros(model.d_model)
    rank = int(left.shape[1])
    bases = random_subspaces(model.d_model, rank, n_random, seed)  # (B, d, k)
    edits = Edits.projections(
        left=torch.cat([left[None], bases]),
        right=torch.cat([right[None], bases.transpose(1, 2)]),
        bias=bias[None].expand(n_random + 1, -1).contiguous(),
    )
    X_t = torch.as_tensor(features, dtype=torch.float32)
    centred = X_t - bias
    edit_norms = (
        torch.stack([(centred @ edits.right[e].T @ edits.left[e].T).norm(dim=1).mean() for e in range(edits.count)])
        .double()
        .numpy()
    )

    zero = Edits.additive(torch.zeros(1, model.d_model))
    base = run_edits(model, prepared, site_name, zero, target.ids, max_rows=max_rows)
    base_score = target.score(base.target_logp[0])
    out = run_edits(model, prepared, site_name, edits, target.ids, max_rows=max_rows)
    change = (torch.stack([target.score(lp) for lp in out.target_logp]) - base_score[None]).double().numpy()
    kl = None
    if off is not None:
        reference = run_edits(model, off, site_name, zero, target.ids, keep_full=True, max_rows=max_rows)
        assert reference.full_logp is not None
        off_out = run_edits(
            model, off, site_name, edits, target.ids, reference=reference.full_logp[0], max_rows=max_rows
        )
        assert off_out.kl is not None
        kl = off_out.kl.double().clamp(min=0).mean(dim=1).numpy()  # (E,)

    magnitude = np.abs(change)  # (E, n)
    counts = group_counts(None, prepared.n, n_bootstrap, seed)
    weights = counts / counts.sum(1, keepdims=True)
    common: dict[str, Any] = {
        "claim": claim,
        "statistic_name": "mean_abs_score_change",
        "effect_size_name": "minus_random_subspace_mean",
        "n": prepared.n,
    }
    extra = {
        "site": site_name,
        "rank": rank,
        "targets": target.describe(),
        "edit_norm_leace": float(edit_norms[0]),
        "edit_norm_random_median": float(np.median(edit_norms[1:])),
        "mean_signed_change_leace": float(change[0].mean()),
        "n_bootstrap": n_bootstrap,
        "ci_level": level,
        "seed": seed,
        "p_value_method": "placebo rank: (1 + #random-subspace >= observed) / (B + 1), one-sided",
    }
    if kl is not None:
        extra["off_target_kl_leace"] = float(kl[0])
        extra["off_target_kl_random_median"] = float(np.median(kl[1:]))
    rows = [row_before.replace(model=model_kind(model)), row_after.replace(model=model_kind(model))]
    for control, obs_index, null_rows in (
        (None, 0, slice(1, None)),
        ("random_subspace", 1, slice(2, None)),
    ):
        observed = float(magnitude[obs_index].mean())
        null = magnitude[null_rows].mean(axis=1)
        boot = weights @ magnitude[obs_index] - (weights @ magnitude[null_rows].T).mean(axis=1)
        low, high = percentile_interval(boot, level)
        rows.append(
            TestResult(
                key=TestKey(test="erasure", dataset=name,
                            method="LEACE" if control is None else "random_subspace_erasure", site=site_name,
                            position=prepared.where, detail=("prediction_change",), control=control,
                            model=model_kind(model)),
                statistic=observed,
                effect_size=observed - float(null.mean()),
                ci_low=low,
                ci_high=high,
                p_value=float(permutation_p_value(observed, null)),
                **common,
                extra={
                    **extra,
                    "n_placebo": int(null.shape[0]),
                    "placebo_quantiles": np.quantile(null, [0.025, 0.5, 0.975]).tolist(),
                },
            )
        )
    return ErasureResult(
        name=name,
        site=site_name,
        rank=rank,
        probe_before=row_before.statistic,
        probe_after=row_after.statistic,
        change_leace=change[0],
        change_random=change[1:],
        kl_leace=None if kl is None else float(kl[0]),
        kl_random=None if kl is None else kl[1:],
        edit_norm_leace=float(edit_norms[0]),
        edit_norm_random=edit_norms[1:],
        results=ResultSet(rows),
    )

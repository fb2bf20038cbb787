"""Cost of the paired nested-CV interval: the library's shared fits against fitting every inner CV on its own.

A run gives a probe's primary row the nested-CV interval of its difference with every control (the control task,
three untrained twins, the spectrum-matched twin, the lexical baseline), so the estimator's cost is paid once per
arm. The library (``nested_cv_errors``) fits, per repeat and arm, the K + K(K-1)/2 distinct training sets (the fit
without folds k and j serves the inner CVs of both folds) as K cross-validations over partitions of the folds, and
fits arms with the same labels as one stack of layers. The alternative written here is the estimator as the paper
states it: per repeat and arm, the outer CV and, for each fold, its own (K-1)-fold inner CV (K + K(K-1) fits). Both
run on the same planted data in the same process; the script checks that their estimates are identical.

    python benchmarks/ncv_paired_cost.py [--repeats R] [--sizes 48,328]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from conceptspace.analyses.probes._ncv_interval import (
    _fold_mean_variance,
    _strata,
    _unit_labels,
    nested_cv_errors,
    repeat_folds,
)
from conceptspace.analyses.probes._nested import NestedRidgeProbe, nested_cross_validate
from conceptspace.stats._folds import fold_ids

K = 5


def arms(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, list]]:
    """Two items per group (both classes), d = 576 as SmolLM2's; the task, a control task and four arms with the
    task's labels (three twin seeds and a lexical stand-in)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 2), 2)
    y = np.tile([0, 1], n // 2)
    X = rng.standard_normal((1, n, 576))
    X[0, :, 0] += y
    controls = {"control_task": [(X, rng.permutation(y))],
                "untrained": [(rng.standard_normal((1, n, 576)), y) for _ in range(3)],
                "lexical": [(rng.standard_normal((1, n, 576)), y)]}
    return X, y, groups, controls


def written_out(probe, X, y, groups, controls, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The paper's estimator, one inner CV per fold and arm: SE of each contrast (task alone under None)."""
    n = y.size
    n_units = int(groups.max()) + 1
    all_arms = [(X, y)] + [arm for arm_list in controls.values() for arm in arm_list]
    members, start = {}, 1
    for name, arm_list in controls.items():
        members[name] = list(range(start, start + len(arm_list)))
        start += len(arm_list)
    labelled = [_unit_labels(arm_y, n, "balanced_accuracy") for _, arm_y in all_arms]
    strata = _strata(np.unique(y, return_inverse=True)[1], groups, n_units)

    def units(a: int, items: np.ndarray, folds: list) -> np.ndarray:  # type: ignore[type-arg]
        out = nested_cross_validate(probe, all_arms[a][0][:, items], all_arms[a][1][items], groups[items],
                                    folds=folds, scoring="balanced_accuracy").outputs[0]
        codes, weight = labelled[a]
        per_group = np.full(n_units, np.nan)
        scores = np.bincount(groups[items], weights=(out == codes[items]) * weight[items] * n_units / n,
                             minlength=n_units)
        per_group[np.unique(groups[items])] = scores[np.unique(groups[items])]
        return per_group

    pivots: dict[str | None, list[tuple[float, float]]] = {name: [] for name in [None, *members]}
    pooled: dict[str | None, list[np.ndarray]] = {name: [] for name in [None, *members]}
    everything = np.arange(n)
    for folds in repeat_folds(y, groups, n_splits=K, repeats=repeats, seed=0):
        outer = [units(a, everything, folds) for a in range(len(all_arms))]
        unit_of_fold = np.zeros(n_units, dtype=np.int64)
        unit_of_fold[groups] = fold_ids(folds, n)
        for k, (_, test_k) in enumerate(folds):
            keep = np.setdiff1d(everything, test_k)
            position = np.full(n, -1)
            position[keep] = np.arange(keep.size)
            inner_folds = [(position[np.setdiff1d(keep, te)], position[te]) for j, (_, te) in enumerate(folds)
                           if j != k]
            inner = [units(a, keep, inner_folds) for a in range(len(all_arms))]
            in_k = unit_of_fold == k
            for name in pivots:
                idx = members.get(name, [])
                o = outer[0] - (np.mean([outer[a] for a in idx], axis=0) if idx else 0)
                i = inner[0] - (np.mean([inner[a] for a in idx], axis=0) if idx else 0)
                values = i[~in_k]
                pivots[name].append((values.mean() - o[in_k].mean(), float(_fold_mean_variance(o[None, in_k],
                                                                                        strata[in_k])[0])))
                pooled[name].append(values)
    out = {}
    for name, pv in pivots.items():
        a, b = np.array(pv).T
        sd = np.concatenate(pooled[name]).std(ddof=1)
        naive = sd / np.sqrt(n_units * (K - 1) / K)
        raw = np.sqrt(max(float(np.mean(a**2 - b)), 0.0)) / naive
        out[str(name)] = float(sd / np.sqrt(n_units) * np.clip(raw, 1 / np.sqrt(K), np.sqrt(K)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--sizes", default="48,328")
    args = parser.parse_args()
    probe = NestedRidgeProbe(penalties=[0.01, 0.1, 1, 10, 100], inner_splits=3)
    for n in (int(v) for v in args.sizes.split(",")):
        X, y, groups, controls = arms(n)
        start = time.perf_counter()
        library = nested_cv_errors(probe, X, y, groups, scoring="balanced_accuracy", repeats=args.repeats,
                                   controls=controls)
        shared = time.perf_counter() - start
        start = time.perf_counter()
        reference = written_out(probe, X, y, groups, controls, args.repeats)
        alone = time.perf_counter() - start
        ses = {"None": float(library.task.se[0]), **{k: float(v.se[0]) for k, v in library.paired.items()}}
        worst = max(abs(ses[k] - reference[k]) for k in reference)
        print(f"{n} items, 7 arms, {args.repeats} repeats: shared fits {shared:.1f} s, every inner CV on its own "
              f"{alone:.1f} s ({alone / shared:.2f}x); largest SE difference {worst:.1e}")


if __name__ == "__main__":
    main()

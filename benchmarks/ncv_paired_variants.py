"""The nested-CV standard error of a *paired* CV difference (task minus control), measured on many data sets.

"Beats the control" reads the difference of the task's and a control's CV scores on the same folds. The library's
interval for it is the refit bootstrap's paired replicates, which err wide from about 100 groups on
(docs/STATISTICS.md). This numpy re-implementation (the planted classes, fold dealing and ridge of
``ncv_interval_variants.py``) runs the nested-CV estimator on per-group *difference* units: in every repeat both
arms are fitted on the same outer and inner folds and each group's unit is its task accuracy minus its control
accuracy, so the estimator's pieces are unchanged (the library's ``nested_cv_standard_error(..., controls=...)``
computes the same on its probes; this version is fast enough for thousands of data sets). Three controls: ``task``
(the same features, labels drawn without signal: a control task), ``untrained`` (features without signal, the
task's labels: an untrained stand-in) and ``constant`` (a control probe that predicts one class throughout, as an
untrained twin at chance does under a nested penalty: its units are fixed by each group's class).

    python benchmarks/ncv_paired_variants.py GROUPS DATA_SETS REPEATS DELTA {task,untrained,constant} [--plain-b]

``--plain-b``: the paper's ``b_k`` (the fold's plain variance) instead of the library's (pooled within classes).

Prints the Monte Carlo truth (the mean single-CV difference over 2,000 independent data sets) and its SD, the SE
against that SD, the coverage of the truth by ``centre +/- z SE`` (centre: the repeats' mean difference), how often
the truth falls below the lower bound, and how often 0 is covered.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ncv_interval_variants import K, Z, deal, group_accuracy, nested_cv, planted

Arm = tuple[np.ndarray, np.ndarray]


def arms(seed: int, n_groups: int, delta: float, control: str) -> tuple[Arm, Arm | None]:
    """The task (planted classes ``delta`` SDs apart) and the control arm (None: the constant predictor)."""
    X, labels = planted(seed, n_groups, delta=delta)
    if control == "constant":
        return (X, labels), None
    if control == "task":
        return (X, labels), (X, np.random.default_rng([seed, 31]).permutation(np.arange(n_groups) % 2))
    return (X, labels), (planted(10**7 + seed, n_groups, delta=0.0)[0], labels)


def difference_units(pair: tuple[Arm, Arm | None], train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per test group: the task's accuracy minus the control's, both fitted on the same training groups."""
    control = pair[1]
    if control is None:
        return group_accuracy(*pair[0], train, test) - (pair[0][1][test] == 0)
    return group_accuracy(*pair[0], train, test) - group_accuracy(*control, train, test)


def cv_difference(pair: tuple[Arm, Arm | None], fold: np.ndarray) -> float:
    units = np.empty(fold.size)
    for k in range(K):
        units[fold == k] = difference_units(pair, fold != k, fold == k)
    return float(units.mean())


def paired_nested_cv(pair: tuple[Arm, Arm | None], rng: np.random.Generator, repeats: int,
                     stratified: bool = True) -> tuple[float, float]:
    """(centre, SE) of the paired difference: ``ncv_interval_variants.nested_cv`` on difference units."""
    pieces = nested_cv(*pair[0], rng, repeats, units=lambda train, test: difference_units(pair, train, test),
                       stratified=stratified)
    return pieces["centre"], pieces["naive"] * float(np.clip(pieces["raw"], 1 / np.sqrt(K), np.sqrt(K)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", type=int)
    parser.add_argument("data_sets", type=int)
    parser.add_argument("repeats", type=int)
    parser.add_argument("delta", type=float)
    parser.add_argument("control", choices=("task", "untrained", "constant"))
    parser.add_argument("--plain-b", action="store_true", help="the paper's b_k (plain variance of the fold)")
    args = parser.parse_args()
    start = time.time()
    truth_draws = []
    for i in range(2000):
        pair = arms(10**6 + i, args.groups, args.delta, args.control)
        truth_draws.append(cv_difference(pair, deal(pair[0][1], np.random.default_rng(i))))
    truth, truth_sd = float(np.mean(truth_draws)), float(np.std(truth_draws, ddof=1))
    runs = np.array([paired_nested_cv(arms(i, args.groups, args.delta, args.control),
                                      np.random.default_rng([i, 7]), args.repeats, not args.plain_b)
                     for i in range(args.data_sets)])
    centre, se = runs.T
    b_k = "plain" if args.plain_b else "stratified"
    print(f"{args.groups} groups, delta {args.delta}, control {args.control}, b_k {b_k}, {args.data_sets} data sets, "
          f"{args.repeats} repeats ({time.time() - start:.0f} s): truth {truth:.4f}, SD of a single CV difference "
          f"{truth_sd:.4f}, SE {se.mean():.4f} ({se.mean() / truth_sd:.2f}x); coverage "
          f"{np.mean(np.abs(centre - truth) <= Z * se):.3f}, truth below the lower bound "
          f"{np.mean(truth < centre - Z * se):.3f}, 0 covered {np.mean(np.abs(centre) <= Z * se):.3f}")


if __name__ == "__main__":
    main()

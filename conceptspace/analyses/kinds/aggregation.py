"""A6: does the context vector depend on which tokens are present more than on their order?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.analyses._aggregation import aggregation_tests
from conceptspace.analyses._base import (
    Analysis,
    AnalysisOutput,
    RunContext,
    is_int,
    is_number,
    is_str,
    list_of,
    mark_roles,
    optional,
    param,
    register,
)
from conceptspace.concepts import load_concepts
from conceptspace.site_names import FINAL_NORM
from conceptspace.stats import ResultSet, TestKey


@dataclass(frozen=True)
class AggregationParams:
    datasets: list[str] = param(check=list_of(is_str), type_name="list of dataset names")
    max_items: int | None = param(None, check=optional(is_int), type_name="integer")
    decay: float = param(0.7, check=is_number, type_name="number")
    penalty: float = param(1.0, check=is_number, type_name="number", doc="ridge strength")


#: fewer other sentences than twice this and the principal axes fall back to the tested ones (said in the result)
BASIS_MIN = 8

#: what the null battery (``--null``) replaces A6's signal by, and why it is the test's own null
NULL_BATTERY = ("each sentence's reordering and replacement changes swapped by a seeded coin (one draw of the "
                "order-vs-content null: order then matters as much as content); bag-of-embeddings targets shuffled")


@register
class AggregationAnalysis(Analysis):
    """A6: order (permuted non-final tokens) vs content (frequency-matched replacements).

    The primary test is the order-vs-content test on the model: statistic ``1 - ratio`` with ``ratio =
    mean(Delta_perm) / mean(Delta_sub)``, effect ``(1 - ratio) - null mean`` under the role-swap null (each
    sentence's two changes swapped; its mean is close to 0, a small negative bias of a ratio of means). **The
    claim's threshold (``min_effect = 0.5``) refers to this effect**: 0.5 is the pre-registered "reordering moves
    the context vector less than half as much as replacing as many tokens" (ratio < 0.5). The bag-of-embeddings
    ridge is exploratory: its effect is R^2 minus its shuffled-target null mean (about -0.2, not 0: a ridge fitted
    to noise predicts held-out noise worse than the mean), on a different scale, so no threshold of the claim
    applies to it. The untrained twin (seeds averaged) and the spectrum-matched twin are controls.
    """

    kind = "aggregation"
    claims = ("A6",)
    Params = AggregationParams
    description = ("order (permuted non-final tokens) vs content (frequency-matched replacements); "
                   "bag-of-embeddings R^2")
    smoke_params: ClassVar[dict[str, Any]] = {
        "datasets": ["truth_is_universal/animal_class"],
        "max_items": 24,
    }

    def run(self, context: RunContext, params: AggregationParams) -> AnalysisOutput:
        texts: list[str] = []
        groups: list[str] = []
        for name in params.datasets:
            cs = load_concepts(name)
            texts.extend(cs.texts)
            groups.extend(f"{name}:{g}" for g in cs.groups)
        order = np.random.default_rng(context.seed).permutation(len(texts))
        if params.max_items is not None:
            order = order[: params.max_items]
        tested = np.sort(order)
        tested_groups = {groups[i] for i in tested}
        # The bag models' principal axes come from other sentences of the same datasets, from groups not tested
        # (as many as are tested, at most): no held-out target shapes the target space.
        rest = np.random.default_rng(context.seed).permutation(len(texts))
        basis = [texts[i] for i in rest if groups[i] not in tested_groups][: len(tested)]
        order = tested
        label = "+".join(n.split("/")[-1] for n in params.datasets)
        out = aggregation_tests(
            context.model, [texts[i] for i in order], dataset=label, groups=[groups[i] for i in order],
            controls=[(c.name, c.seed, c.model) for c in context.control_models()], decay=params.decay,
            penalty=params.penalty, plan=context.sequential_plan(), n_bootstrap=context.n_bootstrap,
            seed=context.seed, claim=context.claim, null_seed=context.null_seed,
            basis_texts=basis if len(basis) >= 2 * BASIS_MIN else None,
        )
        results = out.results
        if context.null_seed is not None:
            results = ResultSet(r.replace(extra={**dict(r.extra), "null_battery": NULL_BATTERY}) for r in results)
        primary = TestKey(test="aggregation", dataset=label, method="permute_vs_substitute", site=FINAL_NORM,
                          position="last")
        return AnalysisOutput(mark_roles(results, lambda r: r.key == primary), {"aggregation": out.details},
                              replicates=out.replicates)

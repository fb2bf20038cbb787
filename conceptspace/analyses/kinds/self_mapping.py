"""N5: the self-mapping. Fed back as an input token, does a context's vector stand for its own next step?

The design, its statistic S and its controls are in :mod:`conceptspace.analyses._self_mapping`. Contexts are
prefixes of the bundled sentences (each cut after a seeded number of words, at least two, so that the next
token is a continuation rather than the end of a statement); the primary test is S at the declared site
(default: the last block read through the final norm, the paper's context vector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.analyses import _self_mapping as sm
from conceptspace.analyses._base import (
    LAYERS_TYPE,
    Analysis,
    AnalysisOutput,
    LayerCurveFigures,
    RunContext,
    block_indices,
    is_int,
    is_layers,
    is_str,
    list_of,
    mark_roles,
    param,
    register,
)
from conceptspace.analyses._mc_result import effect_replicates, mc_result
from conceptspace.concepts import load_concepts
from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.site_names import EMBED
from conceptspace.stats import ResultSet, SequentialPlan, TestKey, TestResult, sequential_null

STAT = "self_mapping_recovery"
EFFECT = "S - context-shuffle null mean"


@dataclass(frozen=True)
class SelfMappingParams:
    datasets: list[str] = param(check=list_of(is_str), type_name="list of dataset names",
                                doc="sentence sets; their prefixes are the contexts")
    layers: Any = param([1.0], check=is_layers, type_name=LAYERS_TYPE)
    vector: str = param("final_norm", check=is_str, type_name="string",
                        doc="'final_norm' (ln_f of the residual, the paper's context vector) or 'residual'")
    max_items: int = param(40, check=is_int, type_name="integer", doc="contexts (the cost grows as its square)")


def sentence_prefixes(texts: list[str], n: int, seed: int) -> list[str]:
    """``n`` seeded sentences, each cut after a seeded number of words (>= 2, < its length)."""
    rng = np.random.default_rng([seed, 3301])
    usable = [t for t in texts if len(t.split()) >= 3]
    if len(usable) < 3:
        raise InvalidInputError("the self-mapping test needs at least 3 sentences of 3 or more words")
    chosen = rng.permutation(len(usable))[:n]
    out = []
    for i in sorted(chosen):
        words = usable[i].split()
        cut = int(rng.integers(2, len(words)))
        out.append(" ".join(words[:cut]))
    return out


@register
class SelfMappingAnalysis(LayerCurveFigures, Analysis):
    kind = "self_mapping"
    claims = ("N5",)
    Params = SelfMappingParams
    description = ("context vector fed back as a soft input token vs another context's vector, the argmax token "
                   "and a random vector (KL to the model's next step)")
    smoke_params: ClassVar[dict[str, Any]] = {
        "datasets": ["truth_is_universal/animal_class"], "layers": [1, -1], "max_items": 8,
    }

    def run(self, context: RunContext, params: SelfMappingParams) -> AnalysisOutput:
        if context.model.remote or not context.model.weights_are_local:
            # Said before anything is read: the feeds need the weights here, and on NDIF the embedding matrix
            # the test would read first is a 2 GB download for a 70B model (the cost model caught this order).
            raise NotApplicableError("the self-mapping test feeds vectors through a key/value cache, which needs "
                                     f"the weights locally; {context.model.name} is remote")
        texts: list[str] = []
        for name in params.datasets:
            texts.extend(load_concepts(name).texts)
        contexts = sentence_prefixes(texts, params.max_items, context.seed)
        n = len(contexts)
        layers = block_indices(context.model, params.layers)
        sites = [f"layer.{i}" for i in layers]
        primary_site = context.primary_site or sites[-1]
        if primary_site not in sites:
            raise InvalidInputError(f"the primary site {primary_site} is not among the layers {sites}")
        shuffle = (None if context.null_seed is None
                   else np.random.default_rng([context.null_seed, 3307]).permutation(n))
        dataset = "+".join(d.split("/")[-1] for d in params.datasets)
        boot_rows = np.random.default_rng([context.seed, 3313]).integers(0, n, size=(context.n_bootstrap, n))
        perm_seed = context.seed if context.null_seed is None else context.null_seed

        def key(site: str, control: str | None = None) -> TestKey:
            return TestKey(test="self_mapping", dataset=dataset, method=params.vector, site=site, position="last",
                           control=control)

        trained = sm.measure_feeds(context.model, contexts, layers, vector=params.vector, seed=context.seed,
                                   shuffle=shuffle, progress=context.progress)
        matrices = [trained.K[i] for i in layers] + [trained.lexical]
        observed = [sm.statistic(K, trained.token) for K in matrices]
        decide = sites.index(primary_site)
        out = sequential_null(sm.permutation_draw(matrices, trained.token, perm_seed), observed,
                              context.sequential_plan(), decide=(decide,))
        results: list[TestResult] = []
        replicates: dict[TestKey, np.ndarray] = {}
        placebo_tok = {}
        for row, K in enumerate(matrices):
            is_lexical = row == len(layers)
            k = key(sites[decide], "lexical").replace(site=EMBED) if is_lexical else key(sites[row])
            reps = effect_replicates(sm.bootstrap_statistic(K, trained.token, boot_rows), out.null_mean[row])
            replicates[k] = reps
            placebo = float(sm.off_diagonal_row_means(K).mean())
            placebo_tok[row] = placebo
            extra = {
                "null": "contexts shuffled against the fed vectors (K[i, pi(i)] in place of K[i, i])",
                "kl_own": float(np.mean(np.diag(K))), "kl_other_context": placebo,
                "kl_argmax_token": float(trained.token.mean()), "kl_random_vector": float(trained.random.mean()),
                "recovery_random_vector": sm.recovery(float(trained.random.mean()), placebo,
                                                      float(trained.token.mean())),
                "median_embedding_norm": trained.median_norm, "vector": params.vector,
                "null_battery": context.null_seed is not None,
            }
            if is_lexical:
                extra.update(baseline=True, fed="embedding of the context's last input token (rescaled)")
            results.append(mc_result(k, context.claim, statistic_name=STAT, effect_name=EFFECT,
                                     observed=observed[row], null=out, row=row, replicates=reps, n=n,
                                     seed=context.seed, extra=extra))
        results.extend(self._controls(context, params, contexts, layers, sites, key, shuffle, boot_rows,
                                      perm_seed, replicates))
        marked = mark_roles(ResultSet(results), lambda r: r.control is None and r.site == primary_site)
        figure = {"layers": layers, "kl_own": {s: float(np.mean(np.diag(trained.K[i])))
                                               for s, i in zip(sites, layers, strict=True)},
                  "kl_argmax_token": float(trained.token.mean()), "kl_random_vector": float(trained.random.mean())}
        return AnalysisOutput(marked, {"self_mapping": figure}, replicates)

    def _controls(self, context: RunContext, params: SelfMappingParams, contexts: list[str], layers: list[int],
                  sites: list[str], key: Any, shuffle: np.ndarray | None, boot_rows: np.ndarray, perm_seed: int,
                  replicates: dict[TestKey, np.ndarray]) -> list[TestResult]:
        """S per layer on the untrained twins (one seed-mean result) and the spectrum twin, same contexts,
        same permutations, same resamples."""
        groups: dict[str, list[sm.FeedScores]] = {}
        for control in context.control_models():
            scores = sm.measure_feeds(control.model, contexts, layers, vector=params.vector, seed=context.seed,
                                      shuffle=shuffle, progress=context.progress)
            groups.setdefault(control.name, []).append(scores)
        results = []
        plan = SequentialPlan.fixed(context.n_permutations)
        for name, runs in groups.items():
            draws = [sm.permutation_draw([r.K[i] for i in layers], r.token, perm_seed) for r in runs]
            per_seed_obs = np.array([[sm.statistic(r.K[i], r.token) for i in layers] for r in runs])

            def mean_draw(offset: int, count: int, draws: list = draws) -> np.ndarray:  # type: ignore[type-arg]
                return np.mean([d(offset, count) for d in draws], axis=0)  # type: ignore[no-any-return]

            out = sequential_null(mean_draw, per_seed_obs.mean(axis=0), plan)
            for row, (layer, site) in enumerate(zip(layers, sites, strict=True)):
                boots = np.stack([sm.bootstrap_statistic(r.K[layer], r.token, boot_rows) for r in runs])
                reps = effect_replicates(boots, out.null_mean[row])
                k = key(site, name)
                replicates[k] = reps if len(runs) > 1 else reps[0]
                extra = {"per_seed": [float(v - out.null_mean[row]) for v in per_seed_obs[:, row]],
                         "kl_own": float(np.mean([np.mean(np.diag(r.K[layer])) for r in runs])),
                         "kl_argmax_token": float(np.mean([r.token.mean() for r in runs]))}
                results.append(mc_result(k, context.claim, statistic_name=STAT, effect_name=EFFECT,
                                         observed=float(per_seed_obs[:, row].mean()), null=out, row=row,
                                         replicates=reps if len(runs) > 1 else reps[0], n=len(contexts),
                                         seed=context.seed, extra=extra))
        return results

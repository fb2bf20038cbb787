"""N7: filtering vs aggregation. Is attention where the data-dependent computation is, and are the MLP and
norms close to fixed (input-independent) linear filters? Design: :mod:`conceptspace.analyses._filtering`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.analyses import _filtering as fl
from conceptspace.analyses._base import (
    LAYERS_TYPE,
    Analysis,
    AnalysisOutput,
    LayerCurveFigures,
    RunContext,
    block_indices,
    is_int,
    is_layers,
    is_number,
    is_str,
    list_of,
    mark_roles,
    param,
    register,
)
from conceptspace.analyses._mc_result import effect_replicates, mc_result
from conceptspace.concepts import load_concepts
from conceptspace.errors import InvalidInputError
from conceptspace.stats import ResultSet, SequentialPlan, TestKey, TestResult, sequential_null

STAT = "attention_minus_max_positionwise_index"
EFFECT = "index gap - sign-flip null mean"


@dataclass(frozen=True)
class FilteringParams:
    datasets: list[str] = param(check=list_of(is_str), type_name="list of dataset names",
                                doc="sentence sets the sequences are built from")
    layers: Any = param([0.25, 0.5, 0.75], check=is_layers, type_name=LAYERS_TYPE)
    n_sequences: int = param(64, check=is_int, type_name="integer")
    sequence_tokens: int = param(48, check=is_int, type_name="integer")
    lags: int = param(0, check=is_int, type_name="integer",
                      doc="previous positions the filter also reads (0: the position-wise affine map)")
    penalties: list[float] = param([0.001, 0.01, 0.1, 1.0], check=list_of(is_number), type_name="list of numbers",
                                   doc="ridge strengths (relative to the mean eigenvalue of the inputs' Gram "
                                       "matrix) the fit chooses from within its training sequences")


@register
class FilteringAnalysis(LayerCurveFigures, Analysis):
    kind = "filtering"
    claims = ("N7",)
    Params = FilteringParams
    description = ("per sublayer, held-out error of the best input-independent linear filter relative to "
                   "mean-ablation; attention minus the least filter-like position-wise sublayer")
    smoke_params: ClassVar[dict[str, Any]] = {
        "datasets": ["truth_is_universal/animal_class"], "layers": [1], "n_sequences": 12, "sequence_tokens": 16,
    }

    def run(self, context: RunContext, params: FilteringParams) -> AnalysisOutput:
        if params.n_sequences < 4 or params.lags < 0:
            raise InvalidInputError("filtering needs n_sequences >= 4 and lags >= 0")
        sentences: list[str] = []
        for name in params.datasets:
            sentences.extend(load_concepts(name).texts)
        model = context.model
        sequences = fl.build_sequences(model, sentences, params.n_sequences, params.sequence_tokens, context.seed)
        prefix = len(sequences[0]) - params.sequence_tokens
        n = len(sequences)
        blocks = block_indices(model, params.layers)
        sites = [f"layer.{b}" for b in blocks]
        primary_site = context.primary_site or sites[len(sites) // 2]
        if primary_site not in sites:
            raise InvalidInputError(f"the primary site {primary_site} is not among the layers {sites}")
        primary_block = blocks[sites.index(primary_site)]
        folds = np.random.default_rng([context.seed, 7027]).permutation(n) % 2
        boot_rows = np.random.default_rng([context.seed, 7031]).integers(0, n, size=(context.n_bootstrap, n))
        flip = np.ones(n) if context.null_seed is None else fl.null_signs(n, context.null_seed)
        flip_seed = context.seed if context.null_seed is None else context.null_seed
        dataset = "+".join(d.split("/")[-1] for d in params.datasets)

        def key(site: str, control: str | None = None) -> TestKey:
            return TestKey(test="filtering", dataset=dataset, method=f"ridge_filter_lags{params.lags}", site=site,
                           position="all", control=control)

        if not params.penalties or any(p <= 0 for p in params.penalties):
            raise InvalidInputError(f"penalties must be positive numbers; got {params.penalties}")
        measure: dict[str, Any] = {"lags": params.lags, "penalties": [float(p) for p in params.penalties]}
        trained = fl.measure_blocks(model, sequences, blocks, folds, **measure)
        shuffled = fl.measure_blocks(model, fl.shuffle_tokens(sequences, context.seed, prefix), [primary_block],
                                     folds, **measure)[primary_block]
        gaps = [trained[b].gap * flip for b in blocks] + [shuffled.gap * flip]
        observed = [float(g.mean()) for g in gaps]
        out = sequential_null(fl.sign_flip_draw(gaps, flip_seed), observed, context.sequential_plan(),
                              decide=(blocks.index(primary_block),))
        results: list[TestResult] = []
        replicates: dict[TestKey, np.ndarray] = {}
        for row, g in enumerate(gaps):
            is_baseline = row == len(blocks)
            index = shuffled if is_baseline else trained[blocks[row]]
            k = key(primary_site, "shuffled_input") if is_baseline else key(sites[row])
            reps = effect_replicates(g[boot_rows].mean(axis=1), out.null_mean[row])
            replicates[k] = reps
            extra: dict[str, Any] = {
                "null": "sign flips of the per-sequence gap (attention exchangeable with its rival sublayer)",
                **{f"index_{s}": float(np.mean(index.D[s])) for s in fl.SUBLAYERS},
                "lags": params.lags, "penalties_chosen": {s: index.penalties[s] for s in fl.SUBLAYERS},
                "massive_positions": index.massive_positions,
                "massive_rule": f"positions after the first with a residual norm > {fl.MASSIVE_FACTOR:g}x the "
                                "block's median left out (massive activations)",
                "sequence_tokens": params.sequence_tokens,
                "text": "bundled sentences joined into sequences (seeded); held out by two-fold cross-fitting",
                "null_battery": context.null_seed is not None,
            }
            if is_baseline:
                extra.update(baseline=True, input="each sequence's tokens shuffled (same tokens, no order)")
            results.append(mc_result(k, context.claim, statistic_name=STAT, effect_name=EFFECT,
                                     observed=observed[row], null=out, row=row, replicates=reps, n=n,
                                     seed=context.seed, extra=extra))
        results.extend(self._controls(context, sequences, blocks, sites, folds, boot_rows, flip, flip_seed, key,
                                      measure, replicates))
        marked = mark_roles(ResultSet(results), lambda r: r.control is None and r.site == primary_site)
        figure = {"index": {site: {s: float(np.mean(trained[b].D[s])) for s in fl.SUBLAYERS}
                            for site, b in zip(sites, blocks, strict=True)}}
        return AnalysisOutput(marked, {"filtering": figure}, replicates)

    def _controls(self, context: RunContext, sequences: list[list[int]], blocks: list[int], sites: list[str],
                  folds: np.ndarray, boot_rows: np.ndarray, flip: np.ndarray, flip_seed: int, key: Any,
                  measure: dict[str, Any], replicates: dict[TestKey, np.ndarray]) -> list[TestResult]:
        """The gap per block on the untrained twins (one seed-mean result) and the spectrum twin."""
        groups: dict[str, list[dict[int, fl.BlockIndex]]] = {}
        for control in context.control_models():
            groups.setdefault(control.name, []).append(
                fl.measure_blocks(control.model, sequences, blocks, folds, **measure))
        plan = SequentialPlan.fixed(context.n_permutations)
        results = []
        for name, runs in groups.items():
            gaps = np.stack([[r[b].gap * flip for b in blocks] for r in runs])  # (seeds, blocks, n)
            out = sequential_null(fl.sign_flip_draw(list(gaps.mean(axis=0)), flip_seed),
                                  gaps.mean(axis=(0, 2)), plan)
            for row, site in enumerate(sites):
                reps = effect_replicates(gaps[:, row][:, boot_rows].mean(axis=2), out.null_mean[row])
                k = key(site, name)
                replicates[k] = reps if len(runs) > 1 else reps[0]
                extra = {"per_seed": [float(v - out.null_mean[row]) for v in gaps[:, row].mean(axis=1)],
                         **{f"index_{s}": float(np.mean([r[blocks[row]].D[s] for r in runs])) for s in fl.SUBLAYERS}}
                results.append(mc_result(k, context.claim, statistic_name=STAT, effect_name=EFFECT,
                                         observed=float(gaps[:, row].mean()), null=out, row=row,
                                         replicates=reps if len(runs) > 1 else reps[0], n=len(sequences),
                                         seed=context.seed, extra=extra))
        return results

"""N6: is attention's association bias redundant? Each head's attention pattern replaced by its dataset mean
(values kept), against mean-ablation of the head's output and no change; recovered fraction of the loss.
Design: :mod:`conceptspace.analyses._attention_pattern`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.analyses import _attention_pattern as ap
from conceptspace.analyses import _filtering as fl
from conceptspace.analyses._base import (
    LAYERS_TYPE,
    Analysis,
    AnalysisOutput,
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
from conceptspace.errors import InvalidInputError
from conceptspace.stats import ResultSet, SequentialPlan, TestKey, TestResult, sequential_null

STAT = "recovered_fraction_mean_pattern"
EFFECT = "recovered fraction - sign-flip null mean"
ALL_BLOCKS = "unembed"  # the site of the every-block edit: the loss is read at the output, every block edited


@dataclass(frozen=True)
class AttentionPatternParams:
    datasets: list[str] = param(check=list_of(is_str), type_name="list of dataset names",
                                doc="sentence sets the prose-like sequences are built from")
    layers: Any = param([0.1, 0.5, 0.9], check=is_layers, type_name=LAYERS_TYPE,
                        doc="blocks also edited one at a time (exploratory; the primary edits every block)")
    n_sequences: int = param(16, check=is_int, type_name="integer")
    sequence_tokens: int = param(32, check=is_int, type_name="integer")
    min_period: int = param(0, check=is_int, type_name="integer",
                            doc="shortest repeated block of the induction probe (0: sequence_tokens // 4)")
    max_period: int = param(0, check=is_int, type_name="integer",
                            doc="longest repeated block of the induction probe (0: sequence_tokens // 2)")
    positive_control: str = param("all", check=is_str, type_name="'all' or 'after_primary'",
                                  doc="blocks whose patterns the induction control fixes at once: every block, or "
                                      "those after the primary block")
    every_block: bool = param(True, check=lambda v: isinstance(v, bool), type_name="boolean",
                              doc="also edit every block at once (site unembed: the loss read at the output)")


@dataclass(frozen=True)
class _Rows:
    """The rows of one sequential null: their (a, c) per sequence, keys and extras."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    keys: list[TestKey]
    extras: list[dict[str, Any]]
    boot: list[np.ndarray]


@register
class AttentionPatternAnalysis(Analysis):
    kind = "attention_pattern"
    claims = ("N6",)
    Params = AttentionPatternParams
    description = ("every head's attention pattern replaced by its dataset mean (values kept) vs mean-ablation of "
                   "its output: the fraction of the output change (KL) a fixed pattern avoids")
    smoke_params: ClassVar[dict[str, Any]] = {
        "datasets": ["truth_is_universal/animal_class"], "layers": [1], "n_sequences": 8, "sequence_tokens": 16,
        "every_block": False,
    }

    def run(self, context: RunContext, params: AttentionPatternParams) -> AnalysisOutput:
        model = context.model
        ap.require_local_causal(model)
        if params.n_sequences < 4 or params.n_sequences % 2:
            raise InvalidInputError(f"n_sequences must be an even number >= 4 (two folds); got {params.n_sequences}")
        periods = (params.min_period or params.sequence_tokens // 4, params.max_period or params.sequence_tokens // 2)
        sentences: list[str] = []
        for name in params.datasets:
            sentences.extend(load_concepts(name).texts)
        n = params.n_sequences
        prose = np.asarray(fl.build_sequences(model, sentences, n, params.sequence_tokens, context.seed))
        exact, permuted, mask = ap.induction_sequences(model, n, params.sequence_tokens, context.seed,
                                                       min_period=periods[0], max_period=periods[1])
        blocks = block_indices(model, params.layers)
        wheres: list[int | str] = [*blocks, "all"] if params.every_block else list(blocks)
        sites = [_site(w) for w in wheres]
        primary_site = context.primary_site or sites[len(blocks) // 2]
        if primary_site not in sites:
            raise InvalidInputError(f"the primary site {primary_site} is not among the edited sites {sites} "
                                    f"({ALL_BLOCKS}: every block at once, with every_block = true)")
        folds = np.random.default_rng([context.seed, 7111]).permutation(n) % 2
        boot_rows = np.random.default_rng([context.seed, 7113]).integers(0, n, size=(context.n_bootstrap, n))
        boot_induction = np.random.default_rng([context.seed, 7117]).integers(0, n, size=(context.n_bootstrap, n))
        flip = np.ones(n) if context.null_seed is None else ap.null_signs(n, context.null_seed)
        flip_seed = context.seed if context.null_seed is None else context.null_seed
        dataset = "+".join(d.split("/")[-1] for d in params.datasets)

        def key(site: str, control: str | None = None) -> TestKey:
            return TestKey(test="attention_pattern", dataset=dataset, method="mean_pattern_vs_mean_ablation",
                           site=site, position="all", control=control)

        n_layers = model.n_layers
        every = ("mean_pattern", "ablate") if params.every_block else ()
        runs = ap.plans(blocks, n_layers, every_block=every)
        prose_runs = ap.run_conditions(model, prose, folds, runs)
        keep = mask.shape[1] - int(np.flatnonzero(mask.any(axis=0))[0])  # the scored tail (second copies)
        control = ap.control_plan(self._control_blocks(params.positive_control, primary_site, wheres, n_layers))
        exact_runs = ap.run_conditions(model, exact, folds, [*ap.plans(blocks, n_layers, every_block=every), control],
                                       keep_last=keep)
        varied = ap.advantage(exact_runs.loss, self._control_runs(model, permuted, folds, mask, control).loss, mask)
        check = ap.CopyCheck(varied, self._fixed_offset(model, n, params.sequence_tokens, context.seed, folds,
                                                        (periods[0] + periods[1]) // 2, control))
        untestable = check.not_testable()
        common: dict[str, Any] = {
            "null": "sign flips of a_j = KL_ablate - KL_mean_pattern (the fixed pattern exchangeable with ablation)",
            "copy_check": {**check.describe(), "blocks": sorted(control[2])},
            "sequence_tokens": params.sequence_tokens,
            "text": "bundled sentences joined into sequences (seeded); means fitted on the other of two folds",
            "null_battery": context.null_seed is not None,
        }
        if untestable:
            common["not_testable"] = untestable
        rows = _Rows([], [], [], [])
        for site, where in zip(sites, wheres, strict=True):
            self._add(rows, prose_runs, where, None, flip, key(site), {**common, "edited_blocks": where}, boot_rows)
        for site, where in zip(sites, wheres, strict=True):
            self._add(rows, exact_runs, where, mask, flip, key(site, "induction"),
                      {**common, "edited_blocks": where, "baseline": True,
                       "input": "repeated random tokens, second copy (copying needs data-dependent attention)"},
                      boot_induction)
        observed = [ap.ratio(a, c) for a, c in rows.pairs]
        out = sequential_null(ap.sign_flip_draw(rows.pairs, flip_seed), observed, context.sequential_plan(),
                              decide=(sites.index(primary_site),))
        results, replicates = self._results(context, rows, observed, out, n)
        twin_wheres = [wheres[sites.index(primary_site)]]
        twin_runs = ap.plans([int(w) for w in twin_wheres if w != "all"], n_layers,
                             every_block=every if twin_wheres == ["all"] else ())
        results.extend(self._controls(context, prose, folds, twin_runs, [_site(w) for w in twin_wheres], twin_wheres,
                                      boot_rows, flip, flip_seed, key, replicates))
        marked = mark_roles(ResultSet(results), lambda r: r.control is None and r.site == primary_site)
        figure = {"recovered_fraction": {f"{k.site}@{k.control}" if k.control else str(k.site): v
                                         for k, v in zip(rows.keys, observed, strict=True)}}
        return AnalysisOutput(marked, {"attention_pattern": figure}, replicates)

    @staticmethod
    def _add(rows: _Rows, runs: ap.Runs, where: int | str, mask: np.ndarray | None, flip: np.ndarray, key: TestKey,
             extra: dict[str, Any], boot: np.ndarray) -> None:
        """One row: R on KL (the statistic), with the loss-based R and the losses beside."""
        rec = ap.recovery(runs.kl, where, mask)
        by_loss = ap.recovery(runs.loss, where, mask)
        rows.pairs.append((rec.a * flip, rec.c))
        rows.keys.append(key)
        rows.extras.append({**extra, "kl_mean_pattern": float(rec.mean_pattern.mean()),
                            "kl_ablate": float(rec.ablate.mean()), "recovered_fraction_loss": by_loss.R,
                            **by_loss.summary()})
        rows.boot.append(boot)

    @staticmethod
    def _control_blocks(rule: str, primary_site: str, wheres: list[int | str], n_layers: int) -> list[int]:
        """The blocks the positive control edits at once: every block, or those after the primary block."""
        if rule == "all":
            return list(range(n_layers))
        if rule == "after_primary":
            where = wheres[[_site(w) for w in wheres].index(primary_site)]
            return list(range(int(where) + 1, n_layers)) if where != "all" else list(range(n_layers))
        raise InvalidInputError(f"positive_control must be 'all' or 'after_primary'; got {rule!r}")

    @staticmethod
    def _control_runs(model: Any, ids: np.ndarray, folds: np.ndarray, mask: np.ndarray, control: ap.Plan) -> ap.Runs:
        keep = mask.shape[1] - int(np.flatnonzero(mask.any(axis=0))[0])
        return ap.run_conditions(model, ids, folds, [control], keep_last=keep)

    def _fixed_offset(self, model: Any, n: int, tokens: int, seed: int, folds: np.ndarray, period: int,
                      control: ap.Plan) -> ap.Advantage:
        """The specificity arm of the positive control: one copy offset for every sequence."""
        exact, permuted, mask = ap.induction_sequences(model, n, tokens, seed + 1, min_period=period,
                                                       max_period=period)
        return ap.advantage(self._control_runs(model, exact, folds, mask, control).loss,
                            self._control_runs(model, permuted, folds, mask, control).loss, mask)

    def _results(self, context: RunContext, rows: _Rows, observed: list[float], out: Any, n: int) -> (
        tuple[list[TestResult], dict[TestKey, np.ndarray]]
    ):
        results, replicates = [], {}
        for row, ((a, c), k, extra, boot) in enumerate(zip(rows.pairs, rows.keys, rows.extras, rows.boot,
                                                           strict=True)):
            reps = effect_replicates(ap.bootstrap_ratio(a, c, boot), out.null_mean[row])
            replicates[k] = reps
            results.append(mc_result(k, context.claim, statistic_name=STAT, effect_name=EFFECT,
                                     observed=observed[row], null=out, row=row, replicates=reps, n=n,
                                     seed=context.seed, extra=extra))
        return results, replicates

    def _controls(self, context: RunContext, prose: np.ndarray, folds: np.ndarray, runs: list[ap.Plan],
                  sites: list[str], wheres: list[int | str], boot_rows: np.ndarray, flip: np.ndarray, flip_seed: int,
                  key: Any, replicates: dict[TestKey, np.ndarray]) -> list[TestResult]:
        """The primary edit on the untrained twins (one seed-mean result) and the spectrum twin: shown beside (a
        random network's attention is near uniform, so its pattern is data-independent by construction). The
        exploratory edits are not repeated on the twins: four control models times two forwards per edit would
        double the kind's time."""
        groups: dict[str, list[ap.Runs]] = {}
        for control in context.control_models():
            groups.setdefault(control.name, []).append(ap.run_conditions(control.model, prose, folds, runs))
        plan = SequentialPlan.fixed(context.n_permutations)
        results = []
        for name, seeds in groups.items():
            recs = [[ap.recovery(r.kl, where) for where in wheres] for r in seeds]  # (seeds, sites)
            pairs = [(np.mean([s[i].a * flip for s in recs], axis=0), np.mean([s[i].c for s in recs], axis=0))
                     for i in range(len(wheres))]
            observed = [ap.ratio(a, c) for a, c in pairs]
            out = sequential_null(ap.sign_flip_draw(pairs, flip_seed), observed, plan)
            for row, site in enumerate(sites):
                per_seed = np.stack([ap.bootstrap_ratio(s[row].a * flip, s[row].c, boot_rows) for s in recs])
                reps = effect_replicates(per_seed, out.null_mean[row])
                k = key(site, name)
                replicates[k] = reps if len(recs) > 1 else reps[0]
                extra = {"per_seed": [ap.ratio(s[row].a * flip, s[row].c) for s in recs],
                         "edited_blocks": wheres[row], "kl_ablate": float(pairs[row][1].mean()),
                         "kl_mean_pattern": float(np.mean([s[row].mean_pattern.mean() for s in recs]))}
                results.append(mc_result(k, context.claim, statistic_name=STAT, effect_name=EFFECT,
                                         observed=observed[row], null=out, row=row, replicates=replicates[k],
                                         n=len(prose), seed=context.seed, extra=extra))
        return results


def _site(where: int | str) -> str:
    return ALL_BLOCKS if where == "all" else f"layer.{where}"

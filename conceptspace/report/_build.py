"""Write a run's report: ``results.json`` (versioned schema), ``report.md``, self-contained ``report.html``, figures.

Why three forms: JSON is what other tools and the determinism test read; Markdown renders on GitHub next to the
committed reference report; HTML is the single file a reviewer opens offline (figures inlined as PNG data URIs,
no external URL). All three are built from the same :class:`ReportData`, so they cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from conceptspace.analyses import Figure, registry
from conceptspace.stats._results import UNTRAINED, ResultSet, attainable_floor
from conceptspace.suite._document import results_document
from conceptspace.suite._runner import RunOutcome
from conceptspace.theory._family import SECONDARY
from conceptspace.theory._verdicts import CLAIMS, is_sanity_check
from conceptspace.utils.html_table import html_table


@dataclass
class ClaimSection:
    """What the report says about one claim."""

    claim: str
    title: str
    statement: str
    tests: str
    controls: str
    verdict: dict[str, Any]
    analyses: list[dict[str, Any]]
    summary: str
    figures: list[Figure] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    #: the main tests of the claim's secondary analyses (:func:`secondary_rows`), shown apart from the verdict
    secondary: list[dict[str, str]] = field(default_factory=list)


#: the heading of a claim's secondary evidence: it must not read as (part of) the verdict
SECONDARY_HEADING = ("Secondary evidence (does NOT decide the verdict above; outside the multiple-testing family; "
                     "p uncorrected)")


@dataclass(repr=False)
class ReportData:
    """Everything rendered: header facts, the verdict table rows, one section per claim, the JSON document."""

    document: dict[str, Any]
    verdict_rows: list[dict[str, str]]
    sections: list[ClaimSection]

    def _headline(self) -> str:
        model = self.document.get("model") or {}
        n_figures = sum(len(s.figures) for s in self.sections)
        return (f"ReportData(model={model.get('name', '?')!r}, {len(self.document.get('tests', []))} tests, "
                f"{len(self.verdict_rows)} claims, {n_figures} figures)")

    def __repr__(self) -> str:
        """The verdicts, one line per claim, never the document or the figures' bytes."""
        lines = [f"  {r['claim']}: {r['verdict']} (best {r['best']}, effect {r['effect']})" for r in self.verdict_rows]
        return "\n".join([self._headline(), *lines])

    def _repr_html_(self) -> str:
        columns = ["claim", "title", "verdict", "best", "effect", "ci", "p_adj", "twin", "n_tests"]
        return html_table(columns, [[r.get(c, "-") for c in columns] for r in self.verdict_rows], self._headline())


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table: fixed digits, scientific for tiny p-values, '-' for missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if x != 0 and abs(x) < 10 ** (-digits):
            return f"{x:.1e}"
        return f"{x:.{digits}f}"
    return str(x)


def _verdict_row(verdict: dict[str, Any], results: ResultSet) -> dict[str, str]:
    by_id = {r.test_id: r for r in results}
    by_key = {r.key: r for r in results}
    best = by_id.get(verdict.get("best_test_id") or "")
    twin = by_key.get(best.key.counterpart(UNTRAINED)) if best is not None and best.control is None else None
    row = {"claim": verdict["claim"], "title": verdict["title"], "verdict": verdict["verdict"],
           "best": "-", "effect": "-", "ci": "-", "p_adj": "-", "twin": "-", "n_tests": str(len(verdict["test_ids"])),
           "reason": verdict["reason"], "draws": "-", "paired": "-"}
    if best is not None:
        row.update(best=best.test_id, effect=f"{fmt(best.effect_size)} ({best.effect_size_name})",
                   ci=f"[{fmt(best.ci_low)}, {fmt(best.ci_high)}]", p_adj=fmt(best.p_adjusted, 4),
                   draws=draws_note(best.extra), paired=paired_note(best.extra))
    if twin is not None:
        row["twin"] = f"{fmt(twin.effect_size)} [{fmt(twin.ci_low)}, {fmt(twin.ci_high)}]"
        if row["paired"] == "-":
            row["paired"] = f"untrained twin's own effect {row['twin']} (no paired replicates)"
    return row


def draws_note(extra: Any) -> str:
    """"B (p in [lo, hi])": Monte Carlo draws of a test and the 99% interval of its p ('-' for analytic tests)."""
    drawn = extra.get("n_permutations") or extra.get("n_placebo")
    if not drawn:
        return "-"
    low, high = extra.get("p_mc_low"), extra.get("p_mc_high")
    interval = f" (p in [{fmt(low, 4)}, {fmt(high, 4)}])" if low is not None and high is not None else ""
    unsettled = "; unsettled" if extra.get("settled") is False else ""
    return f"{drawn}{interval}{unsettled}"


def secondary_rows(claim: str, results: ResultSet) -> list[dict[str, str]]:
    """One row per main test of the claim's secondary analyses (role ``secondary``): its effect, interval, raw p
    with the smallest p its draws allow (1/(B+1)), and its paired differences with the controls."""
    rows = []
    for r in results:
        if r.claim != claim or r.extra.get("role") != SECONDARY:
            continue
        floor = attainable_floor(r)
        rows.append({"analysis": r.key.analysis or "-", "kind": str(r.extra.get("kind", "-")), "test": r.test_id,
                     "effect": f"{fmt(r.effect_size)} ({r.effect_size_name})",
                     "ci": f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]", "p": fmt(r.p_value, 4),
                     "floor": fmt(floor, 4) if floor is not None else "-", "draws": draws_note(r.extra),
                     "paired": paired_note(r.extra)})
    return rows


_PAIRED_METHOD_NOTE = {"nested_cv": " (nested CV)", "signal_world": " (signal world)"}


def paired_note(extra: Any) -> str:
    """Each control's paired difference with its interval, as the verdict judged it."""
    paired = extra.get("paired") or {}
    parts = [f"{name} {fmt(v.get('difference'))} [{fmt(v.get('ci_low'))}, {fmt(v.get('ci_high'))}]"
             + _PAIRED_METHOD_NOTE.get(str(v.get("method")), "") for name, v in paired.items()]
    return "; ".join(parts) if parts else "-"


def family_rows(document: dict[str, Any]) -> list[list[str]]:
    """One row per claim of the corrected family: primary tests, Bonferroni p, adjusted p across claims."""
    return [[c["claim"], str(c["n_primary"]), fmt(c["p_value"], 4), fmt(c["p_adjusted"], 4)]
            for c in document.get("family", {}).get("claims", [])]


def family_note(document: dict[str, Any]) -> str:
    """The family in one paragraph: what was corrected, what was not, how the p-values were drawn."""
    family = document.get("family") or {}
    roles = family.get("tests_by_role", {})
    sequential = family.get("sequential", {})
    counts = ", ".join(f"{n} {role}" for role, n in sorted(roles.items()))
    return (f"Family: {family.get('procedure', '-')}. Tests by role: {counts or '-'}. Monte Carlo p-values are "
            f"sequential: {sequential.get('start', '-')} draws first, doubling up to {sequential.get('maximum', '-')} "
            f"until the {sequential.get('stopping', '-')}; each test shows the draws taken and the 99% interval of "
            "its p. Controls are judged by paired differences (test minus control on shared resamples; for a probe "
            "score, marked \"nested CV\", on the same repeated nested-CV folds; for an R^2 score, marked \"signal "
            "world\", in both sides' signal worlds drawn with the same permutations), not by their own p-values.")


def _figures_for(claim: str, outcome: RunOutcome) -> list[Figure]:
    """Each analysis of the claim draws its own figures (its kind decides which); sanity checks are left out."""
    kinds = registry()
    out: list[Figure] = []
    for record in outcome.records:
        if record.spec.claim != claim or record.status != "ok":
            continue
        rows = [r for r in outcome.results if r.key.analysis == record.spec.id and not is_sanity_check(r)]
        out.extend(kinds[record.spec.kind].figures(record.spec.id, f"{claim} {record.spec.id}", rows,
                                                   record.figure_data))
    return out


def build_report(outcome: RunOutcome, *, with_figures: bool = True) -> ReportData:
    """Assemble the report's content from a finished run."""
    document = results_document(outcome)
    verdicts = {v["claim"]: v for v in document["verdicts"]}
    rows = [_verdict_row(v, outcome.results) for v in document["verdicts"]]
    sections = []
    for claim_id, verdict in verdicts.items():
        claim = CLAIMS[claim_id]
        mine = ResultSet(r for r in outcome.results if r.claim == claim_id)
        analyses = [a for a in document["analyses"] if a["claim"] == claim_id]
        caveats = [c for c in outcome.caveats if any(c.startswith(a["id"]) for a in analyses)]
        sections.append(ClaimSection(
            claim=claim_id, title=claim.title, statement=claim.statement, tests=claim.tests,
            controls=claim.controls, verdict=verdict, analyses=analyses,
            summary=mine.summary(f"{claim_id}: {claim.title}") if len(mine) else "",
            figures=_figures_for(claim_id, outcome) if with_figures else [], caveats=caveats,
            secondary=secondary_rows(claim_id, outcome.results),
        ))
    return ReportData(document, rows, sections)


def execution_note(doc: dict[str, Any]) -> str:
    """Where the traces ran (empty for a local run)."""
    remote = doc["model"].get("remote")
    if remote is True:
        return ", traced on NDIF (remote)"
    if remote == "local":
        return ", traced through the remote dry run (nnsight's in-process round trip)"
    return ""


def twin_note(doc: dict[str, Any]) -> str:
    """Which untrained controls ran (its own architecture over seeds, the spectrum-matched twin, a stand-in
    model, or none)."""
    twin = doc.get("twin")
    seed = doc["suite"]["twin_seed"]
    if twin is None:
        return "no untrained twin in this run"
    source = twin.get("twin_source", "config")
    controls = doc.get("controls") or []
    seeds = [c["seed"] for c in controls if c.get("control") == "untrained"] or [seed]
    spectrum = any(c.get("control") == "spectrum_matched" for c in controls)
    if source == "config":
        plural = "s" if len(seeds) > 1 else ""
        extra = "; spectrum-matched twin (singular values kept, singular vectors random)" if spectrum else ""
        return f"untrained twin seed{plural} {', '.join(str(s) for s in seeds)}{extra}"
    return f"untrained control: an untrained {twin['name']} (seed {seed}) standing in for the twin"


def layers_note(doc: dict[str, Any]) -> str:
    """A sentence when ``--layers`` replaced the suite's own layers ("" otherwise): the report says what ran.
    Callers put it after the header's last sentence (``with_space``)."""
    layers = doc["suite"].get("layers")
    if layers is None:
        return ""
    shown = layers if layers == "all" else ", ".join(str(x) for x in layers)
    return (f"Layers set on the command line (--layers {shown}): every analysis's layers replaced, single-layer "
            "kinds at the middle value; ints are block indices, floats fractions of depth (block floor(f * "
            f"{doc['model']['n_layers']}), 1.0 the last).")


def with_space(sentence: str) -> str:
    """``" " + sentence``, or "" for no sentence: appends an optional sentence to a paragraph."""
    return f" {sentence}" if sentence else ""


def role_note(analysis: dict[str, Any]) -> str:
    """", secondary evidence, not in the verdict" for a secondary analysis's line in a claim section ("" else)."""
    return ", secondary evidence, not in the verdict" if analysis.get("role") == SECONDARY else ""

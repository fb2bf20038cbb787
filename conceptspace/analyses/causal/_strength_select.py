"""Choose a steering strength grid on held-out prompts, inside the regime where off-target KL stays under a cap.

Why it is built this way:

* A steering slope bought by breaking the model is no evidence that the direction carries the concept: at
  strength +1 (the old fixed grid) the sentiment direction moved unrelated factual prompts by 3.25 nats and the
  response was non-monotone. The grid is therefore chosen where the edit leaves unrelated prompts nearly
  alone: the mean KL(unedited || edited) of the next-token distribution on the off-target prompts, at the
  concept direction, must stay under a cap declared before the run (``kl_cap``, nats).
* The choice must not look at the prompts the test is evaluated on, or the grid would be tuned to the result.
  It uses only the held-out prompts (they set the activation scale, the unit of every strength, and show the
  response at each candidate) and the off-target prompts (the KL). The evaluation then runs at the chosen
  absolute strengths (chosen multiples x the held-out scale) for the concept and every placebo alike.
* Candidates are a fixed list of maxima c (multiples of the activation scale); candidate c's grid is
  (-c, -c/2, +c/2, +c): symmetric, so each placebo's -u is free, with two magnitudes so that the response can
  be seen to be monotone. The chosen grid is the largest candidate whose every strength keeps the mean KL
  under the cap. None under the cap is not an error of the caller but an outcome: the test is then not
  testable as run, and the caller says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from conceptspace.analyses.causal._inputs import PreparedPrompts, TargetTokens, prepare_prompts
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel

#: candidate maxima (multiples of the activation scale): each gives the grid (-c, -c/2, +c/2, +c)
DEFAULT_CANDIDATES = (0.25, 0.5, 1.0, 2.0)
#: mean off-target KL (nats) a strength may cost; docs/RESULTS.md (C5) says why 0.5
DEFAULT_KL_CAP = 0.5


def candidate_grid(c: float) -> list[float]:
    """The symmetric grid of candidate maximum ``c``: (-c, -c/2, +c/2, +c)."""
    return [-c, -c / 2, c / 2, c]


@dataclass(frozen=True)
class StrengthSelection:
    """What the selection measured and chose (all strengths relative to ``scale``, the held-out prompts' median
    activation norm at the site).

    ``kl[i]``: the largest mean off-target KL over candidate i's grid at the concept direction;
    ``response[i]``: the held-out prompts' mean target-score change at each strength of candidate i's grid;
    ``chosen``: index of the chosen candidate, None when no candidate stays under the cap."""

    candidates: tuple[float, ...]
    kl_cap: float
    scale: float
    kl: tuple[float, ...]
    response: tuple[tuple[float, ...], ...]
    chosen: int | None
    n_held_out: int
    n_off_target: int

    @property
    def grid(self) -> list[float]:
        """The chosen grid; raises when nothing was under the cap (check :attr:`not_testable` first)."""
        if self.chosen is None:
            raise InvalidInputError(f"no candidate strength kept the off-target KL under the cap: {self.reason()}")
        return candidate_grid(self.candidates[self.chosen])

    def not_testable(self) -> str | None:
        """The reason the test cannot be run as declared, or None."""
        return self.reason() if self.chosen is None else None

    def reason(self) -> str:
        kls = ", ".join(f"{c:g}: {k:.3g}" for c, k in zip(self.candidates, self.kl, strict=True))
        return (f"even the smallest steering strength moved unrelated prompts by more than the declared cap "
                f"(kl_cap {self.kl_cap:g} nats; mean off-target KL per candidate maximum: {kls}); raise kl_cap "
                f"only with a reason declared before the run, or add smaller candidate_strengths")

    def extra(self) -> dict[str, Any]:
        """The record every result of the test carries."""
        chosen = None if self.chosen is None else self.candidates[self.chosen]
        return {
            "strength_selection": {
                "rule": "largest candidate c whose grid (-c, -c/2, +c/2, +c) keeps the mean off-target KL at the "
                        "concept direction under kl_cap at every strength; chosen on the held-out prompts "
                        "(activation scale, response) and the off-target prompts (KL) only",
                "candidates": list(self.candidates),
                "kl_cap": self.kl_cap,
                "off_target_kl_per_candidate": list(self.kl),
                "held_out_response_per_candidate": [list(r) for r in self.response],
                "held_out_monotone_per_candidate": [is_monotone(r) for r in self.response],
                "chosen_max": chosen,
                "chosen_grid": None if chosen is None else candidate_grid(chosen),
                "held_out_scale": self.scale,
                "n_held_out": self.n_held_out,
                "n_off_target": self.n_off_target,
            }
        }


def is_monotone(response: Sequence[float]) -> bool:
    """Strictly increasing over a grid given in increasing order (the direction points to the positive words)."""
    values = np.asarray(response, dtype=np.float64)
    return bool(np.all(np.diff(values) > 0))


def check_candidates(candidates: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(c) for c in candidates)
    if not values:
        raise InvalidInputError("candidate_strengths must list at least one positive multiple of the activation "
                                "scale, e.g. [0.25, 0.5, 1.0]")
    if any(not np.isfinite(c) or c <= 0 for c in values) or len(set(values)) != len(values):
        raise InvalidInputError(f"candidate_strengths must be distinct, finite and > 0 (each c gives the grid "
                                f"-c, -c/2, +c/2, +c); got {list(candidates)}")
    return tuple(sorted(values))


def check_kl_cap(kl_cap: float) -> float:
    if not np.isfinite(kl_cap) or kl_cap <= 0:
        raise InvalidInputError(f"kl_cap is the mean off-target KL (nats) a steering strength may cost and must be "
                                f"> 0, e.g. 0.5; got {kl_cap}")
    return float(kl_cap)


def _prepared(model: ConceptModel, prompts: Sequence[str] | None, name: str) -> PreparedPrompts:
    if prompts is None or isinstance(prompts, str) or len(prompts) == 0:
        raise InvalidInputError(f"{name} must be a non-empty list of prompts (the strength selection needs them); "
                                f"got {prompts!r}")
    return prepare_prompts(model, list(prompts), "last")


def select_strengths(
    model: ConceptModel,
    unit: torch.Tensor,
    held_out_prompts: Sequence[str] | None,
    off_target_prompts: Sequence[str] | None,
    target: TargetTokens,
    *,
    site: str,
    candidates: Sequence[float] = DEFAULT_CANDIDATES,
    kl_cap: float = DEFAULT_KL_CAP,
    max_rows: int = 1024,
) -> StrengthSelection:
    """Measure every candidate on the held-out and off-target prompts and choose one (see the module doc).

    ``unit``: the concept direction, unit norm, shape (d,). Evaluation prompts are not an input: the selection
    cannot see them."""
    values = check_candidates(candidates)
    cap = check_kl_cap(kl_cap)
    held = _prepared(model, held_out_prompts, "held_out_prompts")
    off = _prepared(model, off_target_prompts, "off_target_prompts")
    magnitudes = np.unique(np.concatenate([[c, c / 2] for c in values]))
    strengths = np.concatenate([-magnitudes[::-1], magnitudes])  # increasing
    d = model.d_model
    zero = Edits.additive(torch.zeros(1, d))
    base = run_edits(model, held, site, zero, target.ids, max_rows=max_rows)
    scale = float(base.norms[held.edit_mask.cpu()].median())
    edits = Edits.additive(torch.as_tensor(strengths * scale, dtype=torch.float32)[:, None] * unit[None].float())
    moved = run_edits(model, held, site, edits, target.ids, max_rows=max_rows)
    base_score = target.score(base.target_logp[0])
    change = [float((target.score(lp) - base_score).mean()) for lp in moved.target_logp]
    reference = run_edits(model, off, site, zero, target.ids, keep_full=True, max_rows=max_rows)
    assert reference.full_logp is not None
    out = run_edits(model, off, site, edits, target.ids, reference=reference.full_logp[0], max_rows=max_rows)
    assert out.kl is not None
    kl_at = out.kl.reshape(strengths.size, off.n).double().clamp(min=0).mean(dim=1).numpy()
    kl, response = [], []
    for c in values:
        columns = [int(np.argmin(np.abs(strengths - s))) for s in candidate_grid(c)]
        kl.append(float(kl_at[columns].max()))
        response.append(tuple(change[i] for i in columns))
    under = [i for i, k in enumerate(kl) if k <= cap]
    return StrengthSelection(values, cap, scale, tuple(kl), tuple(response), max(under) if under else None,
                             held.n, off.n)

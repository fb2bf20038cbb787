"""Causal tests along concept directions, in one import: steering, erasure, directional derivatives.

A direction a probe can read is not yet a concept the model uses. These tests intervene on the model through
nnsight and measure what it then predicts, always against placebo directions or subspaces, and return
:class:`~conceptspace.results.TestResult` rows so that one correction covers them and every other test of a run.

* :mod:`conceptspace.steering` - dose-response of adding ``alpha * v`` vs norm-matched random/orthogonal directions
* :mod:`conceptspace.erasure` - LEACE: fresh-probe accuracy before/after, prediction change vs random subspaces
* :mod:`conceptspace.derivatives` - TCAV-style directional derivatives vs random directions
* :mod:`conceptspace.intervention_inputs` / :mod:`conceptspace.intervention_trace` - shared checks and traces

Example (bundled model)::

    from conceptspace.interventions import steering_test, erasure_test, directional_derivative_test
    from conceptspace.interventions import resolve_targets
    targets = resolve_targets(model, [" good", " great"], [" bad", " terrible"])
    steer = steering_test(model, probe.direction_, prompts, targets, site=10, off_target_prompts=other)
    print(steer.summary()); family = (steer.results + erase.results + tcav.results).correct("holm")
"""

from __future__ import annotations

from conceptspace.derivatives import DerivativeResult, directional_derivative_test, tcav_p_value
from conceptspace.erasure import ErasureResult, LeaceTransformer, erasure_test, fit_leace, random_subspaces
from conceptspace.intervention_inputs import (
    PreparedPrompts,
    TargetTokens,
    prepare_prompts,
    random_directions,
    resolve_targets,
    unit_direction,
)
from conceptspace.intervention_trace import Edits, run_edits, run_gradients
from conceptspace.steering import SteeringResult, steering_test

__all__ = [
    "DerivativeResult",
    "Edits",
    "ErasureResult",
    "LeaceTransformer",
    "PreparedPrompts",
    "SteeringResult",
    "TargetTokens",
    "directional_derivative_test",
    "erasure_test",
    "fit_leace",
    "prepare_prompts",
    "random_directions",
    "random_subspaces",
    "resolve_targets",
    "run_edits",
    "run_gradients",
    "steering_test",
    "tcav_p_value",
    "unit_direction",
]

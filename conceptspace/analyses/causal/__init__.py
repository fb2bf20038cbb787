"""Causal tests along concept directions: steering, erasure, directional derivatives.

Why a subpackage of its own: these are the only analyses that *edit* the model (through nnsight), so they share
the validated inputs (directions, placebos, target tokens) and the edit/gradient traces kept in ``_trace``.

A direction a probe can read is not yet a concept the model uses. These tests intervene on the model through
nnsight and measure what it then predicts, always against placebo directions or subspaces, and return
:class:`~conceptspace.stats.TestResult` rows so that one correction covers them and every other test of a run.

* ``_steering`` - dose-response of adding ``alpha * v`` vs norm-matched random/orthogonal directions
* ``_erasure`` - LEACE: fresh-probe accuracy before/after, prediction change vs random subspaces
* ``_derivatives`` - TCAV-style directional derivatives vs random directions
* ``_generate`` - ``steer(model, direction, strength, site).generate(prompt)``: read a steering as text
* ``_inputs`` / ``_trace`` - shared checks and traces

Example (bundled model)::

    from conceptspace.analyses.causal import steering_test, erasure_test, directional_derivative_test
    from conceptspace.analyses.causal import resolve_targets
    targets = resolve_targets(model, [" good", " great"], [" bad", " terrible"])
    steer = steering_test(model, probe.direction_, prompts, targets, site=10, off_target_prompts=other)
    print(steer.summary()); family = (steer.results + erase.results + tcav.results).correct("holm")
"""

from __future__ import annotations

from conceptspace.analyses.causal._derivatives import DerivativeResult, directional_derivative_test, tcav_p_value
from conceptspace.analyses.causal._erasure import (
    ErasureResult,
    LeaceTransformer,
    erasure_test,
    fit_leace,
    random_subspaces,
)
from conceptspace.analyses.causal._generate import SteeredModel, steer
from conceptspace.analyses.causal._inputs import (
    PreparedPrompts,
    TargetTokens,
    prepare_prompts,
    random_directions,
    resolve_targets,
    unit_direction,
)
from conceptspace.analyses.causal._steering import SteeringResult, steering_test
from conceptspace.analyses.causal._trace import Edits, run_edits, run_gradients

__all__ = [
    "DerivativeResult",
    "Edits",
    "ErasureResult",
    "LeaceTransformer",
    "PreparedPrompts",
    "SteeredModel",
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
    "steer",
    "steering_test",
    "tcav_p_value",
    "unit_direction",
]

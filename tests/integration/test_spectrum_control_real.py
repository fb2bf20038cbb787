"""The spectrum-matched control on the bundled SmolLM2: spectra kept, ties kept, and a residual stream of the
trained model's size, where the untrained twin's (std-0.02 initialisation, near-identity blocks) stays small.

That last point is why the control exists: a control whose activations are an order of magnitude smaller than
the model's can hardly show anything, so "the model beats it" means little.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conceptspace.activations._extract import extract
from conceptspace.models import load_model

TEXTS = [
    "The capital of France is Paris, and the capital of Spain is Madrid.",
    "A queen and a king walked into the old castle by the sea.",
    "Dogs bark, cats meow, and birds sing in the morning.",
    "Thallium has the symbol Tl and the atomic number 81.",
]


@pytest.fixture(scope="module")
def smollm() -> object:
    return load_model("smollm2-135m")


@pytest.fixture(scope="module")
def control(smollm) -> object:  # type: ignore[no-untyped-def]
    return smollm.spectrum_matched(0)


def _token_norms(model, site: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The residual stream's norm at every token of TEXTS (the first token of each text included)."""
    acts = extract(model, TEXTS, sites=[site], position="all", cache=False, progress=False)
    return np.concatenate([np.linalg.norm(acts.tokens(i, site), axis=1) for i in range(len(TEXTS))])


def test_smollm2_spectrum_control_keeps_spectra_norms_and_ties(smollm, control):
    hf, trained = control.hf_model, dict(smollm.hf_model.named_parameters())
    assert hf.lm_head.weight is hf.model.embed_tokens.weight  # tied in SmolLM2, tied in the control
    for name, after in hf.named_parameters():
        before = trained[name].detach()
        if before.dim() == 2:  # every matrix: Frobenius norm
            torch.testing.assert_close(after.detach().double().norm(), before.double().norm(), rtol=1e-5, atol=0,
                                       msg=name)
    layer = smollm.n_layers // 2
    for name in ["model.embed_tokens.weight", f"model.layers.{layer}.self_attn.k_proj.weight",
                 f"model.layers.{layer}.self_attn.o_proj.weight", f"model.layers.{layer}.mlp.down_proj.weight"]:
        before, after = trained[name].detach().double(), dict(hf.named_parameters())[name].detach().double()
        s_before = torch.linalg.svdvals(before)
        torch.testing.assert_close(torch.linalg.svdvals(after), s_before, rtol=1e-4, atol=1e-6 * float(s_before[0]),
                                   msg=name)
        if name.endswith("embed_tokens.weight"):  # the token directions are new: |<v1, v1'>| ~ 1/sqrt(576)
            v_before = torch.linalg.svd(before, full_matrices=False).Vh[0]
            v_after = torch.linalg.svd(after, full_matrices=False).Vh[0]
            assert abs(float(v_before @ v_after)) < 0.2


def test_smollm2_spectrum_control_has_a_residual_stream_of_the_trained_size(smollm, control):
    site = f"layer.{smollm.n_layers // 2}"
    norms = {
        "trained": _token_norms(smollm, site),
        "untrained twin (seed 0)": _token_norms(smollm.untrained(0), site),
        "spectrum-matched (seed 0)": _token_norms(control, site),
    }
    summary = {label: (float(np.median(v)), float(np.mean(v))) for label, v in norms.items()}
    print(f"\nresidual-stream norm at {site}, {len(norms['trained'])} tokens (median, mean):")
    for label, (median, mean) in summary.items():
        print(f"  {label:28s} {median:8.1f} {mean:8.1f}")
    trained = summary["trained"][0]
    spectrum = summary["spectrum-matched (seed 0)"][0]
    twin = summary["untrained twin (seed 0)"][0]
    # Same order of magnitude as the trained model (measured: median 564 against 172 at layer.15, the twin 22),
    # and closer to it than the twin is. The mean differs more: the trained model's first token carries a
    # massive activation (norm ~23,000), a learned alignment the control does not have and should not have.
    assert trained / 5 < spectrum < trained * 5, summary
    assert abs(math.log(spectrum / trained)) < abs(math.log(twin / trained)), summary

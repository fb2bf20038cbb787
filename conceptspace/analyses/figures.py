"""Public figure functions: a ResultSet (or its frame, or a SteeringResult) in, a matplotlib Figure out.

    from conceptspace.analyses.figures import layer_curves
    fig = layer_curves(results, title="sentiment")        # or layer_curves(results, ax=my_axes)
    fig.savefig("sentiment.pdf", bbox_inches="tight")
"""

from __future__ import annotations

from conceptspace.analyses._figures import NothingToDraw, dose_response, layer_curves, paired_bars, to_png

__all__ = ["NothingToDraw", "dose_response", "layer_curves", "paired_bars", "to_png"]

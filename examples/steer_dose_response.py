"""Steer along a concept direction and plot the dose-response against random directions.

    python examples/steer_dose_response.py [--items 80] [--random 4] [--out steering.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from conceptspace import extract, load_model
from conceptspace.analyses.causal import steering_test
from conceptspace.analyses.figures import dose_response
from conceptspace.analyses.probes._estimators import MassMeanProbe
from conceptspace.concepts import load_concepts


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=80)
    parser.add_argument("--random", type=int, default=4)
    parser.add_argument("--out", default="steering.png")
    args = parser.parse_args(argv)

    model = load_model("smollm2-135m")
    words = load_concepts("vader_lexicon/polarity")
    words = words.replace(data=words.data.shuffle(seed=0).select(range(args.items)))
    X = np.asarray(extract(model, words.texts, sites=["layer.15"], position="last")["layer.15"])
    direction = MassMeanProbe().fit(X, words.labels).direction_  # negative -> positive sentiment

    steer = steering_test(model, direction, ["The movie was", "Today I feel"],
                          ([" good", " great", " happy"], [" bad", " terrible", " sad"]), site="layer.15",
                          strengths=(-1.0, 1.0), n_random=args.random, n_orthogonal=args.random,
                          n_bootstrap=200, seed=0)
    print(steer.results.summary("Steering along the sentiment direction"))
    print(steer.dose_response())
    out = Path(args.out)
    dose_response(steer, title="sentiment steering at layer 15").savefig(out, dpi=120, bbox_inches="tight")
    print(f"figure: {out}")
    return out


if __name__ == "__main__":
    main()

"""Steer the bundled model along a sentiment direction and read what it writes at three strengths.

    python examples/steer_and_read.py [--items 200] [--strength 0.4] [--tokens 16]

The direction is a mass-mean probe's (negative -> positive words) at layer 15; strength is in multiples of the
layer's typical activation norm (past ~1 the text degrades into repetition). Generation is greedy, so the
same command prints the same text.
"""

from __future__ import annotations

import argparse

import numpy as np

from conceptspace import extract, load_model
from conceptspace.analyses.causal import steer
from conceptspace.analyses.probes import MassMeanProbe
from conceptspace.concepts import load_concepts

PROMPTS = ["The movie was", "Today I feel"]


def main(argv: list[str] | None = None) -> dict[float, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--strength", type=float, default=0.4)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args(argv)

    model = load_model("smollm2-135m")
    words = load_concepts("vader_lexicon/polarity")
    words = words.replace(data=words.data.shuffle(seed=0).select(range(args.items)))
    X = np.asarray(extract(model, words.texts, sites=["layer.15"], position="last")["layer.15"])
    direction = MassMeanProbe().fit(X, words.labels).direction_

    texts: dict[float, list[str]] = {}
    for strength in (-args.strength, 0.0, args.strength):
        steered = steer(model, direction, strength, "layer.15")
        texts[strength] = [steered.generate(p, max_new_tokens=args.tokens) for p in PROMPTS]
        print(f"\nstrength {strength:+g}")
        for prompt, text in zip(PROMPTS, texts[strength], strict=True):
            print(f"  {prompt}|{' '.join(text.split())}")
    return texts


if __name__ == "__main__":
    main()

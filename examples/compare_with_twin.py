"""Compare the model with its untrained twin on one dataset and save a per-layer figure.

    python examples/compare_with_twin.py [--items 120] [--out twin.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from conceptspace import extract, load_model
from conceptspace.analyses.figures import layer_curves
from conceptspace.analyses.probes._estimators import RidgeProbe
from conceptspace.analyses.probes._evaluation import probe_with_controls, side_by_side
from conceptspace.concepts import load_concepts


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--permutations", type=int, default=299)
    parser.add_argument("--out", default="twin_vs_model.png")
    args = parser.parse_args(argv)

    model = load_model("smollm2-135m")
    twin = model.untrained(seed=0)
    words = load_concepts("vader_lexicon/polarity")
    words = words.replace(data=words.data.shuffle(seed=0).select(range(args.items)))
    layers = [2, 8, 14, 20, 26]
    sites = [f"layer.{i}" for i in layers]
    X = extract(model, words.texts, sites=sites, position="last").stack(sites)
    X_twin = extract(twin, words.texts, sites=sites, position="last").stack(sites)

    results = probe_with_controls(RidgeProbe(), X, words.labels, words.groups, dataset=words.name,
                                  X_untrained=X_twin, layers=layers, n_permutations=args.permutations,
                                  n_bootstrap=300, seed=0).correct("holm")
    print(side_by_side(results))
    fig = layer_curves(results, title="word sentiment: model vs untrained twin", ylabel="balanced accuracy - chance")
    out = Path(args.out)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    print(f"figure: {out}")
    return out


if __name__ == "__main__":
    main()

"""Probe one concept across layers and print the statsmodels-style summary table.

    python examples/probe_one_concept.py [--items 120] [--permutations 499]
"""

from __future__ import annotations

import argparse

from conceptspace import extract, load_model
from conceptspace.analyses.probes import RidgeProbe, probe_layers
from conceptspace.concepts import load_concepts


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--permutations", type=int, default=499)
    args = parser.parse_args(argv)

    model = load_model("smollm2-135m")
    concept = load_concepts("truth_is_universal/animal_class")
    concept = concept.replace(data=concept.data.select(range(min(args.items, len(concept)))))
    layers = [0, 5, 10, 15, 20, 25]
    sites = [f"layer.{i}" for i in layers]
    X = extract(model, concept.texts, sites=sites, position="last").stack(sites)  # (layers, n, d)

    results, _ = probe_layers(RidgeProbe(), X, concept.labels, concept.groups, dataset=concept.name,
                              layers=layers, n_permutations=args.permutations, n_bootstrap=300, seed=0)
    table = results.correct("holm").summary("Truth of animal-class statements, ridge probe per layer")
    print(table)
    return table


if __name__ == "__main__":
    main()

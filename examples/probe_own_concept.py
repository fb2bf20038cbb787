"""Probe your own concept: past vs present tense, 200 sentences you write, with every control beside it.

    python examples/probe_own_concept.py [--permutations 199] [--out my_tense.csv]

Writes the sentences to a CSV (as your own file would be), loads it grouped by verb (a verb never sits in both
training and test folds), probes at 1/4, 1/2, 3/4 of depth beside the control task, twin and last-token embedding.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

from conceptspace import extract, load_model
from conceptspace.analyses.probes import RidgeProbe, control_task_labels, probe_with_controls
from conceptspace.concepts import load_user_concepts
from conceptspace.models import embedding_rows

VERBS = [("walk", "walked"), ("talk", "talked"), ("cook", "cooked"), ("play", "played"), ("paint", "painted"),
         ("clean", "cleaned"), ("watch", "watched"), ("visit", "visited"), ("call", "called"), ("help", "helped"),
         ("open", "opened"), ("plant", "planted"), ("fix", "fixed"), ("bake", "baked"), ("wash", "washed"),
         ("climb", "climbed"), ("study", "studied"), ("carry", "carried"), ("jump", "jumped"), ("count", "counted")]
FRAMES = ["We {v} with our friends.", "They {v} near the river.", "My neighbours {v} in the garden.",
          "The children {v} after school.", "The students {v} together."]


def write_sentences(path: Path) -> None:  # 20 verbs x 5 frames x 2 tenses: minimal pairs, grouped by verb
    with path.open("w", newline="", encoding="utf-8") as stream:
        rows = csv.writer(stream)
        rows.writerow(["sentence", "tense", "verb"])
        rows.writerows([f.format(v=form), tense, present] for present, past in VERBS for f in FRAMES
                       for form, tense in ((present, "present"), (past, "past")))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp()) / "tense.csv")
    args = parser.parse_args(argv)
    write_sentences(args.out)
    tense = load_user_concepts(args.out, kind="binary", columns={"text": "sentence", "label": "tense", "group": "verb"})
    model = load_model("smollm2-135m")
    acts = extract(model, tense.texts, sites=[0.25, 0.5, 0.75], position="last")
    twin = extract(model.untrained(0), tense.texts, sites=acts.sites, position="last")
    last_tokens = [model.tokenizer(t)["input_ids"][-1] for t in tense.texts]
    results = probe_with_controls(
        RidgeProbe(), acts, tense.labels, tense.groups, dataset="my_tense", X_untrained=twin,
        X_lexical=embedding_rows(model, last_tokens), control_y=control_task_labels(tense.groups, tense.labels),
        n_permutations=args.permutations, n_bootstrap=200,
    )
    table = results.correct("holm").summary(f"Past vs present tense, {len(tense)} sentences, ridge probe")
    print(table)
    return table


if __name__ == "__main__":
    main()

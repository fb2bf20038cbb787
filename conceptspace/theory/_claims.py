"""The claims of the concept-space theory that the toolkit tests, and the shape of a verdict rule.

Why apart from the verdict logic: the suite parser needs the claim ids and the rule's fields to validate a suite
file, and the report needs the claims' wording; neither needs the judging itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClaimRule:
    """Thresholds of one claim's verdict rule, stated in the suite before the run."""

    min_effect: float
    margin: float
    beat: tuple[str, ...]



@dataclass(frozen=True)
class Claim:
    """A claim of the concept-space theory that the toolkit tests."""

    id: str
    title: str
    statement: str
    tests: str
    controls: str


CLAIMS: dict[str, Claim] = {
    c.id: c
    for c in (
        Claim("C1", "Concepts occupy regions",
              "Words of one category lie close together in embedding space.",
              "Clustering of word vectors (unembedding rows / contextual span means) against category labels: "
              "ARI/NMI/purity and silhouette minus a label-permutation null.",
              "label permutation (by group); untrained twin"),
        Claim("C2", "Concepts are directions",
              "A relation (country->capital, singular->plural) is one direction: pair differences align.",
              "Mean pairwise cosine of pair-difference vectors per relation vs re-paired null, Euclidean and "
              "causal inner product.",
              "re-paired words (permutation); untrained twin"),
        Claim("C3", "Composition by offsets",
              "b - a + a' lands on b' (analogies by vector arithmetic).",
              "3CosAdd accuracy minus the only-b baseline (nearest neighbour of b alone, Linzen 2016).",
              "only-b baseline; untrained twin"),
        Claim("C4", "Concepts are linearly decodable from context vectors",
              "A linear probe on the last-token context vector recovers the concept.",
              "Grouped-CV probe score minus chance per layer, with the permutation null.",
              "control task (selectivity, Hewitt & Liang); static embedding of the last token (lexical); "
              "untrained twin"),
        Claim("C5", "Concept directions are used",
              "Moving the context vector along a concept direction moves the model's predictions.",
              "Steering dose-response along a probe direction vs norm-matched random directions; LEACE erasure.",
              "norm-matched random and orthogonal directions; random subspaces; untrained twin"),
        Claim("P5", "Proximity reflects conditional probability",
              "How close the context vector is to a token vector tracks the token's conditional probability.",
              "Per-context Spearman of cos(ln_f(h_l), u_t) with log p(t|x) at the declared mid-depth block, minus "
              "what a shuffled pairing of contexts predicts (exact shuffle null); other blocks exploratory. The "
              "last block is the logit lens itself (cosine = logit / norm): a sanity check, never evidence.",
              "shuffled contexts; token frequency; untrained twin"),
        Claim("A6", "Context vectors aggregate token features",
              "The final context vector depends mostly on which tokens are present, not on their order.",
              "1 - (change when non-final tokens are permuted) / (change when as many are replaced by "
              "frequency-matched tokens), against the role-swap permutation null (order matters as much as "
              "content); min_effect applies to that statistic minus its null mean (0.5 = the pre-registered ratio "
              "below 0.5). Exploratory: held-out R^2 of a linear token-embedding model vs shuffled targets.",
              "frequency-matched replacements; shuffled-target null; untrained twin (shown, see the rule)"),
    )
}

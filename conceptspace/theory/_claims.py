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
    #: controls with no learned structure that must not show the effect themselves: if one's own effect has a
    #: lower 95% bound >= ``min_effect``, the test measures the architecture or a tautology, not the claim, and
    #: the primary test is "not testable as run" (a verdict either way would be forced by the design)
    must_fail: tuple[str, ...] = ()



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
              "last block is the logit lens itself (cosine = logit / norm): a sanity check, never evidence. "
              "Second, non-circular test (kind cooccurrence): partial Spearman of token-embedding cosines with "
              "corpus PMI, frequency and token norm partialled out, against a Mantel permutation of the words.",
              "shuffled contexts; token frequency; untrained twin; spectrum-matched twin; for the PMI test "
              "frequency and norm partialled out and a frequency-matched row"),
        Claim("A6", "Context vectors aggregate token features",
              "The final context vector depends mostly on which tokens are present, not on their order.",
              "1 - (change when non-final tokens are permuted) / (change when as many are replaced by "
              "frequency-matched tokens), against the role-swap permutation null (order matters as much as "
              "content); min_effect applies to that statistic minus its null mean (0.5 = the pre-registered ratio "
              "below 0.5). Exploratory: held-out R^2 of a linear token-embedding model vs shuffled targets.",
              "frequency-matched replacements; shuffled-target null; untrained twin (shown, see the rule)"),
        Claim("N2", "Context narrows, it does not teach",
              "Demonstrations only re-weight the query's zero-shot ranking: the answers they lift were already "
              "ranked high by the query's own zero-shot distribution, none is created from far down.",
              "Lift-weighted zero-shot log10-rank of the answer under the query's own zero-shot prompt minus the "
              "same under another query of the task (permutation within task), function-vector tasks and an "
              "arbitrary random-word mapping pooled; jumps from zero-shot rank > 1000 to k-shot top-1 per task.",
              "shuffled demonstrations; queries permuted within task; untrained twins; spectrum-matched twin"),
        Claim("N3", "In-context learning is a composed vector",
              "The mean k-shot context vector of a task at one layer, added to a zero-shot prompt, recovers the "
              "task (a function vector, Todd et al. 2023).",
              "Answer log-prob gain from adding the task's own mean k-shot vector vs other tasks' vectors (tasks "
              "permuted, sequential Monte Carlo) with a two-level (prompts x placebos) interval.",
              "other tasks' vectors; norm-matched random vectors; untrained twins; spectrum-matched twin"),
        Claim("N5", "The Transformer is a self-mapping",
              "The context vector the model composes lives in its own input space: fed back as an input token, "
              "it stands for the next step the way the predicted token's embedding does.",
              "Soft-token feedback: the last position's context vector (ln_f of the residual, per layer), "
              "rescaled to the median input-embedding norm, is appended as an input vector; KL of the next-step "
              "distribution from the model's own after its argmax token. Statistic S = (KL with another "
              "context's vector - KL with the own vector) / (KL with another context's vector - KL with the "
              "argmax token's embedding at the same norm), against contexts shuffled against vectors.",
              "contexts shuffled against vectors (permutation); the last input token's embedding (lexical, "
              "paired: must be beaten); a random vector of the same norm (reported); untrained twins and the "
              "spectrum-matched twin (shown beside: a random tied network predicts its last input token, so its "
              "context vector is that token's embedding by construction)"),
        Claim("N6", "Attention's association bias is redundant",
              "Context vectors are composed by aggregating token features; attention contributes a potentially "
              "redundant association bias: with every head's pattern fixed to its dataset mean (values kept), "
              "the model keeps most of what its attention contributes.",
              "Recovered fraction R = 1 - KL(mean pattern) / KL(mean-ablation) from the clean next-token "
              "distribution, with the heads of the block at mid-depth edited (means fitted on the other of two "
              "folds of sequences), against sign flips of KL_ablate - KL_mean_pattern; other blocks, every block "
              "at once and the loss-based fraction exploratory.",
              "sign-flip null over sequences; repeated random tokens (positive control: the mean pattern at the "
              "control's blocks must lose the copying advantage when the copy offset varies and keep it when the "
              "offset is fixed, else not testable as run); untrained twins and the spectrum-matched twin (shown "
              "beside: a random network's attention is near uniform by construction)"),
        Claim("N6b", "Contexts compose (idioms excepted)",
              "What a two-word context predicts is what its words predict separately, combined additively in "
              "log-probability (log p(t|AB) ~ log p(t|A) + log p(t|B) - log p(t)); idioms, whose meaning is not "
              "built from their parts, are where this composition breaks.",
              "Interaction I(t) = log p(t|AB) - log p(t|A) - log p(t|B) + log p(t) over the top next tokens after "
              "AB, in frames that read the next token after the same words (slot inside the sentence); mean |I| of "
              "adjective-noun idioms minus that of compositional phrases with the same adjectives, against labels "
              "permuted within adjective groups.",
              "labels permuted within adjective groups; collocation frequency log p(B|A) (ANCOVA part, paired: "
              "must be beaten); untrained twins; spectrum-matched twin"),
        Claim("N7", "Filtering and aggregation",
              "The model is built from data-independent filters (MLP, norms) and data-dependent aggregation "
              "(attention).",
              "Per sublayer, the held-out output error of its best input-independent linear filter (ridge over "
              "the current and previous positions, fitted on other sequences) relative to mean-ablation; "
              "statistic: attention's index minus the largest index of the position-wise sublayers (MLP, both "
              "norms), per sequence, against sign flips.",
              "sign-flip null over sequences; token-shuffled sequences (baseline); untrained twins and the "
              "spectrum-matched twin (shown beside: the split is partly architectural)"),
    )
}

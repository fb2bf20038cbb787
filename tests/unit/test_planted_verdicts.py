"""Issue 14's acceptance item: for every claim of the concept-space battery (C1-C5, P5, A6) a planted positive and
a null case on tiny models, run through the suite runner with THAT claim's rule exactly as
``probes/concept_space.toml`` declares it (min_effect, margin, beat: read from the battery file, not copied), the
untrained twin built by the runner (one seed; the spectrum twin off: no claim here lists it in ``beat``).

The planted models (tests/unit/planted_geometry.py, tests/unit/planted.py) are word-level Llamas whose blocks are
the identity unless a test plants something, so what a test plants is all there is to find. The concept data are
files in the model's own words, loaded through ``load_user_concepts`` and handed to the analysis in place of the
bundled dataset (the suite's ``dataset`` key names a bundled set: the loader is replaced, as in
test_self_mapping_filtering.py).

What is planted, and what each null is (effects measured on this machine, for orientation; the tests assert
the verdicts and a few bounds, not these numbers):

* C1 (clustering, k-means ARI at ``unembed``): 4 categories x 24 words whose unembedding rows sit around their
  own centre -> supported (ARI 1.0, effect 0.999). Null: all rows N(0, 1) -> not supported (CI [-0.05, 0.04]).
* C2 (relations, mean pairwise cosine of pair differences at ``unembed``): b_i = a_i + r -> supported (1.0;
  effect 0.67 over the re-paired null, whose pairs still share r). Null: random rows -> not supported.
* C3 (analogies, 3CosAdd minus only-b over the whole single-token vocabulary): b_i = a_i + r, and a near
  neighbour n_i of each a_i so that only-b fails -> supported (1.0). Null: random rows -> not supported; it needs
  80 pairs (6320 questions) and 232 candidates: with 24 pairs the interval, widened to the re-pairing null's
  spread, reached 0.04 > min_effect 0.02 and the verdict was "inconclusive".
* C4 (ridge probe at ``layer@0.5`` vs twin, lexical baseline, control task): block 0's MLP computes s1 * s2 (an
  XOR of two signs the embedding carries) into a new direction -> supported (accuracy 1.0; lexical 0.46).
  Nulls: the label s1, which the static embedding carries too, is explained by the lexical baseline (paired
  difference 0.000) -> not supported; and the ``--null`` battery (labels permuted) -> not supported.
* C5 (steering at ``layer@0.5`` vs data-drawn placebos): planted.py's causal direction v -> supported (effect
  8.4 [1.5, 15.2]). Nulls: planted.py's inert direction u gives "inconclusive" (effect 1.3 [-3.8, 6.4]), which
  is the rule's right answer (see that test); a model whose target score no activation can move (bad* rows =
  good* rows) -> not supported (effect 0 [0, 0]). A null that is ruled out by its interval while some
  direction *is* used is not reachable here: the placebo spread is several units on a min_effect of 0.1.
* P5 (cosine of ln_f(h) with u_t vs log p at ``layer@0.5``, against shuffled contexts and the twin): identity
  blocks and unembedding rows of one norm, so the middle block's proximity ranks tokens as log p does (Spearman
  1.0, effect 0.976); and a model whose later blocks write along a direction the unembedding ignores. Both come
  out "not testable as run", not "supported": their untrained twins clear the test too (0.86 and 0.72; the
  second drawn at initializer_range 1), because a pre-norm residual network's middle block holds part of what
  its last block holds whatever the weights. The battery's ``must_fail = ["untrained", "spectrum_matched"]``
  turns that into the verdict (before the rule the identity model was "supported"). Null: the ``--null`` battery
  (shuffled contexts, twins too) -> not supported.
* A6 (order vs content of the final context vector): uniform attention (zero queries and keys) adding the mean
  of the token vectors -> supported (1 - ratio = 1.0). Null: the ``--null`` battery (roles swapped) -> not
  supported with 160 sentences (with 80 the interval's top was 0.502, a hair above min_effect 0.5).

Every claim has a planted positive; none was impossible on a tiny model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib
import torch

from conceptspace.analyses import _causal_runs as causal_runs
from conceptspace.analyses.kinds import aggregation, analogies, clustering, probe, proximity, relations
from conceptspace.concepts import ConceptSet, load_user_concepts
from conceptspace.suite import parse_suite
from conceptspace.suite._runner import RunOutcome, run_suite
from conceptspace.theory import NOT_SUPPORTED, NOT_TESTABLE, SUPPORTED
from tests.unit import planted
from tests.unit import planted_geometry as pg

BATTERY = Path(__file__).resolve().parents[2] / "probes" / "concept_space.toml"

HEADER = """\
[suite]
name = "planted_verdicts"
model = "{model}"
seed = 0
twin_seeds = [0]
spectrum_twin = false
n_permutations = 99
max_permutations = 1599
n_bootstrap = 100

"""


def battery_rule(claim: str) -> str:
    """The ``[claims.<claim>]`` table of the battery file, re-emitted verbatim in value."""
    rule = tomllib.loads(BATTERY.read_text(encoding="utf-8"))["claims"][claim]
    beat = "[" + ", ".join(f'"{b}"' for b in rule["beat"]) + "]"
    must_fail = "[" + ", ".join(f'"{b}"' for b in rule.get("must_fail", [])) + "]"
    return (f"[claims.{claim}]\nmin_effect = {rule['min_effect']}\nmargin = {rule['margin']}\nbeat = {beat}\n"
            f"must_fail = {must_fail}\n\n")


def battery_analysis(claim: str) -> dict[str, Any]:
    """The battery's first analysis of ``claim`` (its kind and primary site are reused)."""
    return next(a for a in tomllib.loads(BATTERY.read_text(encoding="utf-8"))["analysis"] if a["claim"] == claim)


def run(folder: Path, claim: str, body: str, *, null_seed: int | None = None) -> RunOutcome:
    """Run one analysis of ``claim`` (``body``: its keys after id/claim/kind/primary) under the battery's rule."""
    spec = battery_analysis(claim)
    primary = f'primary = "{spec["primary"]}"\n' if "primary" in spec else ""
    text = (HEADER.format(model=folder) + battery_rule(claim)
            + f'[[analysis]]\nid = "planted"\nclaim = "{claim}"\nkind = "{spec["kind"]}"\n{primary}{body}\n')
    suite = parse_suite(text, "planted.toml")
    battery = parse_suite(BATTERY.read_text(encoding="utf-8"), str(BATTERY))
    assert suite.claims[claim] == battery.claims[claim], "the planted run must judge under the battery's own rule"
    outcome = run_suite(suite.for_run(), progress=False, null_seed=null_seed)
    assert all(r.status == "ok" for r in outcome.records), [r.reason for r in outcome.records]
    return outcome


def verdict_of(outcome: RunOutcome, claim: str) -> Any:
    (verdict,) = [v for v in outcome.verdicts if v.claim == claim]
    return verdict


def primary_of(outcome: RunOutcome) -> Any:
    (primary,) = [r for r in outcome.results if r.extra.get("role") == "primary" and r.control is None]
    return primary


def use_concepts(monkeypatch: pytest.MonkeyPatch, module: Any, concepts: ConceptSet) -> None:
    monkeypatch.setattr(module, "load_concepts", lambda name, **options: concepts)


# --- C1: clustering ------------------------------------------------------------------------------------------------

C1_CLASSES, C1_PER_CLASS, D = 4, 24, 32


def c1_model(folder: Path, planted: bool) -> tuple[Path, list[str], list[int]]:
    """Unembedding rows of each category around its own centre (planted), or all N(0, 1) rows (null)."""
    words = pg.word_names("cat", C1_CLASSES * C1_PER_CLASS)
    labels = [i // C1_PER_CLASS for i in range(len(words))]
    rows = pg.noise(len(words), D, seed=1)
    if planted:
        centres = 3.0 * pg.orthonormal(D, C1_CLASSES, seed=2) * D ** 0.5 / 2
        rows = rows + centres[labels]
    return pg.write_model(folder, words, unembed=rows), words, labels


def c1_concepts(tmp: Path, words: list[str], labels: list[int]) -> ConceptSet:
    rows = [{"w": w, "c": f"class{lab}"} for w, lab in zip(words, labels, strict=True)]
    return load_user_concepts(pg.write_jsonl(tmp / "c1.jsonl", rows), kind="categorical",
                              columns={"word": "w", "label": "c"}, template=pg.TEMPLATE)


C1_BODY = 'dataset = "function_vectors/categories"\nsites = ["unembed"]\nmethods = ["kmeans"]\n'


@pytest.mark.parametrize("planted", [True, False], ids=["planted", "null"])
def test_c1_categories_around_their_centres_are_supported_random_rows_are_not(tmp_path, monkeypatch, planted):
    folder, words, labels = c1_model(tmp_path / "model", planted)
    use_concepts(monkeypatch, clustering, c1_concepts(tmp_path, words, labels))
    outcome = run(folder, "C1", C1_BODY)
    verdict, primary = verdict_of(outcome, "C1"), primary_of(outcome)
    if planted:
        assert verdict.verdict == SUPPORTED, verdict.reason
        assert primary.statistic > 0.9
    else:
        assert verdict.verdict == NOT_SUPPORTED, verdict.reason
        assert primary.ci_high < 0.10


# --- C2 (relations) and C3 (analogies): b = a + r in the unembedding ----------------------------------------------

N_PAIRS, N_EXTRA, D_PAIRS = 80, 160, 64


def pair_model(folder: Path, planted: bool) -> tuple[Path, list[tuple[str, str]]]:
    """24 pairs (a_i, b_i) among 232 words. Planted: b_i = a_i + r in the unembedding (one offset r as long as
    a_i, orthogonal to every a_i) and each a_i has a near neighbour n_i = a_i + q_i (|q_i| = |a_i| / 2), so the
    nearest word to a_i is n_i, not b_i: only-b (Linzen's baseline, the nearest neighbour of the third word)
    fails and the offset has to do the work. Null: every row an independent N(0, 1) draw. 160 further random
    words make the candidate vocabulary big enough that chance accuracy (~1/230) stays far below min_effect."""
    a_words, b_words = pg.word_names("src", N_PAIRS), pg.word_names("dst", N_PAIRS)
    near_words, extra_words = pg.word_names("near", N_PAIRS), pg.word_names("other", N_EXTRA)
    rows = pg.noise(3 * N_PAIRS + N_EXTRA, D_PAIRS, seed=3)
    if planted:
        r = pg.orthonormal(D_PAIRS, 1, seed=5)[0] * D_PAIRS ** 0.5
        a_rows = rows[:N_PAIRS] - (rows[:N_PAIRS] @ r)[:, None] * r / D_PAIRS
        q_rows = pg.noise(N_PAIRS, D_PAIRS, seed=6, scale=0.5)
        rows = torch.cat([a_rows, a_rows + r, a_rows + q_rows, rows[3 * N_PAIRS:]])
    words = [*a_words, *b_words, *near_words, *extra_words]
    return (pg.write_model(folder, words, d_model=D_PAIRS, unembed=rows),
            list(zip(a_words, b_words, strict=True)))


def pair_concepts(tmp: Path, pairs: list[tuple[str, str]]) -> ConceptSet:
    rows = [{"a": a, "b": b} for a, b in pairs]
    return load_user_concepts(pg.write_jsonl(tmp / "pairs.jsonl", rows), kind="pairs", columns={"a": "a", "b": "b"},
                              relation="offset", template=pg.TEMPLATE)


C2_BODY = 'dataset = "google_analogy/family"\nsites = ["unembed"]\n'
C3_BODY = ('dataset = "google_analogy/capital-common-countries"\nsites = ["unembed"]\ncandidates = "vocabulary"\n'
           'max_per_relation = 6320\nmethods = ["3cosadd"]\n')


@pytest.mark.parametrize("planted", [True, False], ids=["planted", "null"])
def test_c2_a_shared_offset_is_a_relation_direction_random_pairs_are_not(tmp_path, monkeypatch, planted):
    folder, pairs = pair_model(tmp_path / "model", planted)
    use_concepts(monkeypatch, relations, pair_concepts(tmp_path, pairs))
    outcome = run(folder, "C2", C2_BODY)
    verdict, primary = verdict_of(outcome, "C2"), primary_of(outcome)
    if planted:
        assert verdict.verdict == SUPPORTED, verdict.reason
        assert primary.statistic > 0.8
    else:
        assert verdict.verdict == NOT_SUPPORTED, verdict.reason
        assert primary.ci_high < 0.10


@pytest.mark.parametrize("planted", [True, False], ids=["planted", "null"])
def test_c3_offsets_solve_analogies_over_the_vocabulary_random_rows_do_not(tmp_path, monkeypatch, planted):
    folder, pairs = pair_model(tmp_path / "model", planted)
    use_concepts(monkeypatch, analogies, pair_concepts(tmp_path, pairs))
    outcome = run(folder, "C3", C3_BODY)
    verdict, primary = verdict_of(outcome, "C3"), primary_of(outcome)
    if planted:
        assert verdict.verdict == SUPPORTED, verdict.reason
        assert primary.statistic > 0.9 and primary.extra["n_candidates"] >= 2 * N_PAIRS
    else:
        assert verdict.verdict == NOT_SUPPORTED, verdict.reason


# --- C4 (probe): a label the block computes, not the word's static embedding ----------------------------------------

N_C4 = 200


def c4_model(folder: Path) -> tuple[Path, list[str], np.ndarray, np.ndarray]:
    """Each word's embedding carries two signs, s1 along a and s2 along b (and N(0, 1) noise off a, b, z); block
    0's MLP computes their product into a third direction z: with gate rows +a, -a and up rows b, b, and down
    columns +z, -z, the two SwiGLU units give z (silu(g) - silu(-g)) (b.x) = z (a.x)(b.x), exactly, whatever the
    scale. So s1 * s2 (an XOR of the signs) is linear in the block's activations and in no linear function of the
    static embedding (a balanced XOR), while s1 alone is linear in both."""
    g = np.random.default_rng(7)
    s1, s2 = g.choice([-1.0, 1.0], N_C4), g.choice([-1.0, 1.0], N_C4)
    a, b, z = pg.orthonormal(D, 3, seed=8)
    rows = pg.noise(N_C4, D, seed=9)
    for direction in (a, b, z):
        rows = rows - (rows @ direction)[:, None] * direction
    rows = rows + 3.0 * (torch.tensor(s1, dtype=torch.float32)[:, None] * a
                         + torch.tensor(s2, dtype=torch.float32)[:, None] * b)

    def plant_xor(model: Any) -> None:
        mlp = model.model.layers[0].mlp
        mlp.gate_proj.weight[0], mlp.gate_proj.weight[1] = a, -a
        mlp.up_proj.weight[0], mlp.up_proj.weight[1] = b, b
        mlp.down_proj.weight[:, 0], mlp.down_proj.weight[:, 1] = z, -z

    words = pg.word_names("item", N_C4)
    return pg.write_model(folder, words, embed=rows, edit=plant_xor), words, s1, s2


def c4_concepts(tmp: Path, words: list[str], labels: np.ndarray) -> ConceptSet:
    rows = [{"w": w, "y": int(y > 0)} for w, y in zip(words, labels, strict=True)]
    return load_user_concepts(pg.write_jsonl(tmp / "c4.jsonl", rows), kind="binary",
                              columns={"word": "w", "label": "y"}, template=pg.TEMPLATE)


C4_BODY = ('dataset = "truth_is_universal/animal_class_polarity"\nlayers = [0, 1]\nposition = "last"\n'
           'probe = "ridge"\ncontrols = ["control_task", "untrained", "lexical"]\n')


@pytest.fixture(scope="module")
def c4_planted(tmp_path_factory):
    return c4_model(tmp_path_factory.mktemp("c4"))


def test_c4_a_label_the_block_computes_is_decodable_beyond_every_control(tmp_path, monkeypatch, c4_planted):
    folder, words, s1, s2 = c4_planted
    use_concepts(monkeypatch, probe, c4_concepts(tmp_path, words, s1 * s2))
    outcome = run(folder, "C4", C4_BODY)
    verdict, primary = verdict_of(outcome, "C4"), primary_of(outcome)
    lexical = next(r for r in outcome.results if r.control == "lexical" and r.site == "embed")
    assert verdict.verdict == SUPPORTED, verdict.reason
    assert primary.site == "layer.1" and primary.statistic > 0.9 and lexical.statistic < 0.7


def test_c4_a_label_the_static_embedding_already_carries_is_explained_by_the_lexical_baseline(
        tmp_path, monkeypatch, c4_planted):
    """The null: s1 is as decodable from the block as s1 * s2 is, but the word's own embedding carries it too, so
    the lexical baseline (a control of the rule's ``beat``) explains it: the paired difference's interval lies
    below the margin."""
    folder, words, s1, _ = c4_planted
    use_concepts(monkeypatch, probe, c4_concepts(tmp_path, words, s1))
    outcome = run(folder, "C4", C4_BODY)
    verdict, primary = verdict_of(outcome, "C4"), primary_of(outcome)
    assert verdict.verdict == NOT_SUPPORTED, verdict.reason
    assert primary.statistic > 0.9 and "lexical" in verdict.judgements[0].explained_by


def test_c4_the_planted_model_under_the_null_battery_is_not_supported(tmp_path, monkeypatch, c4_planted):
    """The ``--null`` battery permutes the labels (s1 * s2): nothing is decodable, and with 200 words the
    score's interval rules out an effect of min_effect."""
    folder, words, s1, s2 = c4_planted
    use_concepts(monkeypatch, probe, c4_concepts(tmp_path, words, s1 * s2))
    outcome = run(folder, "C4", C4_BODY, null_seed=1)
    verdict, primary = verdict_of(outcome, "C4"), primary_of(outcome)
    assert verdict.verdict == NOT_SUPPORTED, verdict.reason
    assert primary.ci_high < 0.10


# --- C5 (steering): planted.py's causal direction v vs its inert direction u ----------------------------------------


def c5_concepts(tmp: Path, positive: list[str], negative: list[str]) -> ConceptSet:
    rows = [{"w": w, "y": 1} for w in positive] + [{"w": w, "y": 0} for w in negative]
    return load_user_concepts(pg.write_jsonl(tmp / "c5.jsonl", rows), kind="binary",
                              columns={"word": "w", "label": "y"}, template="the word is {word}")


def c5_body() -> str:
    quoted = lambda words: "[" + ", ".join(f'"{w}"' for w in words) + "]"  # noqa: E731
    return ('dataset = "vader_lexicon/polarity"\nlayer = 0.5\n'
            f"positive = {quoted(planted.GOOD)}\nnegative = {quoted(planted.BAD)}\n"
            f"prompts = {quoted(planted.prompts(planted.NEUTRAL[:8]))}\nn_random = 4\n")


@pytest.fixture(scope="module")
def c5_model(tmp_path_factory):
    return planted.make_planted_model(tmp_path_factory.mktemp("c5"))


def test_c5_the_planted_causal_direction_is_used(tmp_path, monkeypatch, c5_model):
    """The concept words pos*/neg* differ along v, which the unembedding reads (good* +v, bad* -v)."""
    use_concepts(monkeypatch, causal_runs, c5_concepts(tmp_path, planted.POSITIVE, planted.NEGATIVE))
    outcome = run(c5_model.folder, "C5", c5_body())
    verdict, primary = verdict_of(outcome, "C5"), primary_of(outcome)
    assert verdict.verdict == SUPPORTED, verdict.reason
    assert primary.significant and primary.ci_low > 1.0  # measured: 8.4 [1.5, 15.2]


def test_c5_an_inert_direction_is_not_supported_but_not_ruled_out_either(tmp_path, monkeypatch, c5_model):
    """The concept words nul*/nil* differ along u, which nothing reads; their mass-mean direction still has a
    random part off u (the words' own random rows), as every data-drawn placebo has, so its slope is one more
    draw from the placebo distribution. Why "inconclusive" is the rule's correct answer here and not "not
    supported": on this model the effect (slope beyond the placebos, in log-odds per unit of activation scale)
    has a 95% interval several units wide around 0 (8 prompts, 8 targets), far wider than min_effect = 0.1, so the
    data cannot rule out an effect of 0.1; the next test removes that spread."""
    use_concepts(monkeypatch, causal_runs, c5_concepts(tmp_path, planted.NULL_POS, planted.NULL_NEG))
    outcome = run(c5_model.folder, "C5", c5_body())
    verdict, primary = verdict_of(outcome, "C5"), primary_of(outcome)
    assert verdict.verdict != SUPPORTED, verdict.reason
    assert not primary.significant and primary.ci_low < 0.0 < primary.ci_high


@pytest.fixture(scope="module")
def c5_unread_model(tmp_path_factory):
    """planted.py's model with each bad* unembedding row replaced by its good* partner's: the target score
    (log P(good) - log P(bad)) is then the same for every activation, so no direction is used."""
    from transformers import LlamaForCausalLM

    info = planted.make_planted_model(tmp_path_factory.mktemp("c5-unread"))
    model = LlamaForCausalLM.from_pretrained(info.folder)
    ids = model.config.vocab_size - len(planted.WORDS) + np.array([planted.WORDS.index(w) for w in planted.GOOD])
    bad = model.config.vocab_size - len(planted.WORDS) + np.array([planted.WORDS.index(w) for w in planted.BAD])
    with torch.no_grad():
        model.lm_head.weight[torch.from_numpy(bad)] = model.lm_head.weight[torch.from_numpy(ids)]
    model.save_pretrained(info.folder)
    return info


def test_c5_a_concept_the_target_score_cannot_read_is_not_supported(tmp_path, monkeypatch, c5_unread_model):
    use_concepts(monkeypatch, causal_runs, c5_concepts(tmp_path, planted.POSITIVE, planted.NEGATIVE))
    outcome = run(c5_unread_model.folder, "C5", c5_body())
    verdict, primary = verdict_of(outcome, "C5"), primary_of(outcome)
    assert verdict.verdict == NOT_SUPPORTED, verdict.reason
    assert abs(primary.statistic) < 1e-3


# --- P5 (proximity): the context vector's cosine with a token tracks log p ------------------------------------------


def sentences(words: list[str], n: int, length: int, seed: int) -> list[str]:
    g = np.random.default_rng(seed)
    return [" ".join(words[i] for i in g.integers(0, len(words), length)) for _ in range(n)]


def text_concepts(tmp: Path, texts: list[str], name: str) -> ConceptSet:
    rows = [{"t": t, "y": i % 2} for i, t in enumerate(texts)]
    return load_user_concepts(pg.write_jsonl(tmp / f"{name}.jsonl", rows), kind="binary",
                              columns={"text": "t", "label": "y"})


@pytest.fixture(scope="module")
def p5_model(tmp_path_factory):
    """Identity blocks and unembedding rows of one norm: the middle block's context vector is the final one,
    and its cosine with u_t is the logit divided by a constant, so it ranks tokens exactly as log p does, and
    each context (ending in a different random word) has its own distribution."""
    words = pg.word_names("tok", 120)

    def equal_norms(model: Any) -> None:
        U = model.lm_head.weight
        U.copy_(U / U.norm(dim=1, keepdim=True) * D ** 0.5)

    return pg.write_model(tmp_path_factory.mktemp("p5"), words, edit=equal_norms, n_layers=6), words


@pytest.fixture(scope="module")
def p5_learned_model(tmp_path_factory):
    """Proximity that tracks log p at the middle block for a reason its weights carry: unembedding rows of one
    norm, all orthogonal to a direction e; blocks 0-3 are the identity and blocks 4-5's MLPs write large,
    input-dependent multiples of e, which the final norm turns into a per-context rescaling of the logits (U e =
    0), so the middle block's cosines rank tokens as log p does. Its untrained twin is drawn at
    initializer_range 1, so that its blocks move the residual stream far (no near-identity excuse)."""
    words = pg.word_names("tok", 120)
    e = torch.zeros(D)
    e[0] = 1.0

    def writes_along_e(model: Any) -> None:
        U = model.lm_head.weight
        U[:, 0] = 0.0  # orthogonal to e
        U.copy_(U / U.norm(dim=1, keepdim=True) * D ** 0.5)
        g = torch.Generator().manual_seed(5)
        for layer in model.model.layers[4:]:
            mlp = layer.mlp
            mlp.gate_proj.weight.copy_(torch.randn(mlp.gate_proj.weight.shape, generator=g) / D ** 0.5)
            mlp.up_proj.weight.copy_(torch.randn(mlp.up_proj.weight.shape, generator=g) / D ** 0.5)
            v = torch.randn(mlp.down_proj.weight.shape[1], generator=g)
            mlp.down_proj.weight.copy_(20.0 * torch.outer(e, v / v.norm()))

    folder = pg.write_model(tmp_path_factory.mktemp("p5learned"), words, edit=writes_along_e, n_layers=6,
                            initializer_range=1.0)
    return folder, words


P5_BODY = 'dataset = "truth_is_universal/animal_class"\nlayers = [0, 1, 2]\nmax_items = 100\n'


def _p5(tmp_path, monkeypatch, model, null_seed=None):
    folder, words = model
    use_concepts(monkeypatch, proximity, text_concepts(tmp_path, sentences(words, 100, 6, seed=10), "p5"))
    outcome = run(folder, "P5", P5_BODY, null_seed=null_seed)
    primary = primary_of(outcome)
    assert primary.site == "layer.3"
    twin = next(r for r in outcome.results if r.key == primary.key.counterpart("untrained"))
    return verdict_of(outcome, "P5"), primary, twin


@pytest.mark.parametrize("fixture", ["p5_model", "p5_learned_model"])
def test_p5_planted_proximity_is_not_testable_because_a_random_network_shows_it_too(tmp_path, monkeypatch, request,
                                                                                  fixture):
    """The planted positive of P5 cannot come out "supported" under the battery's rule, and that is the finding:
    a pre-norm residual network's middle block holds part of the sum its last block holds, so the logit lens
    read there tracks the network's own log p *for random weights too*. Identity blocks (twin near-identity at
    initializer_range 0.02) and a model whose later blocks write along a direction the unembedding ignores (twin
    at initializer_range 1: no near-identity excuse) both show the effect (>= 0.5), and so does each one's
    untrained twin (>= 0.3): the claim's ``must_fail`` makes the verdict "not testable as run" (before the rule,
    the identity model came out "supported")."""
    verdict, primary, twin = _p5(tmp_path, monkeypatch, request.getfixturevalue(fixture))
    assert primary.effect_size > 0.5 and twin.ci_low > 0.3
    assert verdict.verdict == NOT_TESTABLE, verdict.reason
    assert "untrained control shows the effect itself" in verdict.reason


def test_p5_shuffled_contexts_are_not_supported(tmp_path, monkeypatch, p5_model):
    """The null is the ``--null`` battery: each context's cosines are paired with another context's log p, the
    twins' too, so no control clears the test and the verdict is an ordinary "not supported"."""
    verdict, _, twin = _p5(tmp_path, monkeypatch, p5_model, null_seed=1)
    assert twin.ci_low < 0.05
    assert verdict.verdict == NOT_SUPPORTED, verdict.reason


# --- A6 (aggregation): a context vector that is a bag of its tokens --------------------------------------------------


@pytest.fixture(scope="module")
def a6_model(tmp_path_factory):
    """Block 0's attention has zero queries and keys (uniform attention over the prefix: RoPE rotates zero to
    zero), identity values and output: the last position adds the mean of the normalised token embeddings, which
    no reordering of the earlier tokens changes, while replacing tokens does."""
    words = pg.word_names("bag", 120)

    def bag_of_tokens(model: Any) -> None:
        attention = model.model.layers[0].self_attn
        attention.q_proj.weight.zero_()
        attention.k_proj.weight.zero_()
        attention.v_proj.weight.copy_(torch.eye(D))
        attention.o_proj.weight.copy_(2.0 * torch.eye(D))

    return pg.write_model(tmp_path_factory.mktemp("a6"), words, edit=bag_of_tokens), words


A6_BODY = 'datasets = ["truth_is_universal/animal_class"]\nmax_items = 160\n'


@pytest.mark.parametrize("null_seed", [None, 1], ids=["planted", "null"])
def test_a6_a_bag_of_tokens_is_supported_the_role_swap_null_is_not(tmp_path, monkeypatch, a6_model, null_seed):
    """The null is the ``--null`` battery: each sentence's reordering and replacement swapped by a coin, so order
    matters as much as content."""
    folder, words = a6_model
    use_concepts(monkeypatch, aggregation, text_concepts(tmp_path, sentences(words, 160, 8, seed=11), "a6"))
    outcome = run(folder, "A6", A6_BODY, null_seed=null_seed)
    verdict, primary = verdict_of(outcome, "A6"), primary_of(outcome)
    if null_seed is None:
        assert verdict.verdict == SUPPORTED, verdict.reason
        assert primary.statistic > 0.9
    else:
        assert verdict.verdict == NOT_SUPPORTED, verdict.reason

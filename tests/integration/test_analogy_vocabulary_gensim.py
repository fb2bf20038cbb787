"""C3's vocabulary protocol on SmolLM2's unembedding equals gensim's evaluate_word_analogies, question by question.

The bundled Google set's capital-common-countries section (the original questions-words.txt lines) is given to
gensim 4.4 with the model's single-token words as its KeyedVectors; conceptspace runs the same relation through
``analogies_vocabulary_output`` (what the analogies kind runs for ``candidates = "vocabulary"``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conceptspace.analyses.geometry import analogies_vocabulary_output, candidate_vocabulary
from conceptspace.analyses.geometry._analogy_vocabulary import VocabularyScorer, vocabulary_questions
from conceptspace.analyses.geometry._run_vocabulary import vocabulary_vectors
from conceptspace.concepts import load_concepts
from conceptspace.concepts._pairs import analogy_quadruples
from conceptspace.resources import datasets_dir

RELATION = "capital-common-countries"


def _section(name: str, out: Path) -> Path:
    """The lines of one section of the bundled questions-words.txt, as a file gensim can read."""
    lines, keep = [], False
    for line in (datasets_dir() / "google_analogy" / "questions-words.txt").read_text().splitlines():
        if line.startswith(":"):
            keep = line[1:].strip() == name
        if keep:
            lines.append(line)
    assert len(lines) == 1 + 506, "the bundled section should hold the 506 original questions"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


@pytest.mark.filterwarnings("ignore:Call to deprecated `init_sims`:DeprecationWarning")
def test_smollm2_unembedding_vocabulary_protocol_equals_gensim(tmp_path: Path) -> None:
    gensim_models = pytest.importorskip("gensim.models", reason="gensim is not installed (pip install .[compare])")
    from conceptspace.models import load_model

    model = load_model("smollm2-135m")
    vocab = candidate_vocabulary(model)
    V = vocabulary_vectors(model, vocab, "unembed")
    kv = gensim_models.KeyedVectors(V.shape[1])
    kv.add_vectors(vocab.words, V.astype(np.float32))
    score, sections = kv.evaluate_word_analogies(str(_section(RELATION, tmp_path / "q.txt")),
                                                 restrict_vocab=len(vocab), case_insensitive=True)
    total = sections[-1]

    cs = load_concepts(f"google_analogy/{RELATION}")
    pairs = list(zip(cs.column("a"), cs.column("b"), strict=True))
    questions, counts = vocabulary_questions(pairs, cs.relations, vocab, analogy_quadruples(cs), cs.groups)
    assert len(questions) == len(total["correct"]) + len(total["incorrect"])  # the same questions skipped
    assert counts["n_questions_skipped"] == 506 - len(questions)

    scorer = VocabularyScorer(V, questions)
    hits = scorer.correct(questions, "3cosadd")

    def quad(q: int) -> tuple[str, ...]:
        return tuple(vocab.words[int(x)].upper() for x in (questions.a[q], questions.a_star[q], questions.b[q],
                                                           questions.b_star[q]))

    assert {quad(q) for q in np.flatnonzero(hits)} == set(total["correct"])
    answers = scorer.answers(questions, "3cosadd")
    for q in np.flatnonzero(~hits)[:40]:  # the wrong answers too, word for word
        a, a_star, b, _ = (w.lower() for w in quad(q))
        assert vocab.words[int(answers[q])] == kv.most_similar(positive=[a_star, b], negative=[a], topn=1)[0][0]

    out = analogies_vocabulary_output(model, cs, ["unembed"], max_per_relation=None, methods=["3cosadd"],
                                      n_permutations=20, n_bootstrap=20, seed=0)
    primary = next(r for r in out.results if r.key.control is None and r.extra["relation"] == "all")
    assert primary.extra["accuracy"] == pytest.approx(score, abs=1e-4)
    assert primary.n == len(questions)
    assert primary.extra["n_vocabulary"] == len(vocab) > 10_000
    assert primary.extra["only_b_accuracy"] < primary.extra["accuracy"]

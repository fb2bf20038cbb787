"""User-controlled strings in report.md render as inert text; output folder names cannot act as paths.

The Markdown is rendered with markdown-it-py in CommonMark mode with raw HTML *allowed* and GFM tables on: the
most permissive common renderer, so anything that survives as markup here would survive in a real viewer.
"""

from __future__ import annotations

import html as html_module
import re

import pytest

from conceptspace.report import build_report, render_markdown
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.suite import SuiteError, parse_suite
from conceptspace.suite._runner import AnalysisRecord, RunOutcome, correct_family
from conceptspace.theory import judge_all
from conceptspace.utils.text_safety import md_code, md_fence, md_text, safe_file_name

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "![x](http://evil.example/x.png)",
    "**bold** _it_ ~~gone~~",
    "pipe | in | name",
    "back`tick``s",
    "line\n# heading injected",
    "a\\|b",
]


def _render(markdown: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    renderer = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
    renderer.validateLink = lambda url: True  # as permissive as a naive renderer: javascript: links too
    return str(renderer.render(markdown))


def _no_markup(html: str, tags: tuple[str, ...] = ("<script", "<img", "<a ", "<strong", "<em", "<s>", "<h1")) -> None:
    for tag in tags:
        assert tag not in html, (tag, html)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_md_text_renders_literally(payload):
    html = _render(f"Model: {md_text(payload)} end")
    _no_markup(html)
    text = re.sub(r"<[^>]+>", "", html).strip()
    assert html_module.unescape(text) == f"Model: {' '.join(payload.split())} end"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_md_code_cannot_be_closed_early(payload):
    html = _render(f"Suite {md_code(payload)} end")
    _no_markup(html)
    assert html.count("<code>") == 1


def test_table_cells_keep_their_pipes_and_code():
    from conceptspace.report._markdown import _md_table

    table = _md_table(["a", "b"], [[md_text("x | y"), md_code("p|q`r", in_table=True)]])
    html = _render(table)
    assert html.count("<td>") == 2 and "x | y" in html and "<code>p|q`r</code>" in html


def test_fence_is_longer_than_any_backtick_run_inside():
    body = "text\n```\n<script>alert(1)</script>\n````"
    html = _render(md_fence(body))
    assert html.count("<pre>") == 1 and "<script" not in html


def test_without_escaping_the_payloads_would_be_markup():
    """The control: the same payloads unescaped do produce tags, so the checks above can fail."""
    assert "<script" in _render("Model: <script>alert(1)</script>")
    assert "<strong" in _render("Model: **bold**")
    assert "<a href" in _render("Model: [click](javascript:alert(1))")
    assert _render("a | b\n---|---\nx | y | z").count("<td>") == 2  # a raw pipe splits the cell


SUITE = """\
[suite]
name = "synthetic"
[claims.C4]
min_effect = 0.1
beat = ["untrained"]
[[analysis]]
id = "probe"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
"""


def _outcome(payload: str) -> RunOutcome:
    suite = parse_suite(SUITE, f"suites/{payload}.toml")
    suite = type(suite)(**{**suite.__dict__, "name": payload})
    rows = [TestResult(key=TestKey(test="probe", dataset=payload, method="RidgeProbe", site="layer.1", position="last",
                               analysis="probe"), claim="C4", statistic_name="balanced_accuracy", statistic=0.8,
                       effect_size_name="balanced_accuracy_minus_chance", effect_size=0.3, ci_low=0.25, ci_high=0.35,
                       p_value=0.001, n=100)]
    results = correct_family(ResultSet(rows), "holm", 0.05)
    record = AnalysisRecord(suite.analyses[0], dict(suite.analyses[0].params), status="failed",
                            reason=f"InvalidInputError: {payload}", results=results)
    verdicts = judge_all(results, suite.claims, alpha=0.05, correction="holm", not_run={})
    model = {"name": f"/models/{payload}", "architecture": payload, "n_layers": 4, "d_model": 8,
             "parameters": 1234, "weights_sha256": "ab" * 32}
    twin = {**model, "untrained_seed": 0, "twin_source": "model"}
    return RunOutcome(suite, False, model, twin, [record], results, verdicts, {"total_s": 1.0}, [f"probe: {payload}"])


@pytest.mark.parametrize("payload", PAYLOADS)
def test_report_markdown_escapes_every_user_string(payload):
    markdown = render_markdown(build_report(_outcome(payload), with_figures=False))
    html = _render(markdown)
    _no_markup(html, ("<script", "<img", "<a ", "<s>", "<strong>bold", "<em>it"))
    assert html.count("<h1>") == 1 and html.count("<h2>") == 4  # title; Verdicts, Multiple testing, C4, Run
    source = " ".join(f"suites/{payload}.toml".split())
    assert f"<code>{html_module.escape(source, quote=False)}</code>" in html  # the code span holds all of it
    header = next(line for line in html.splitlines() if line.startswith("<h1>"))
    assert "conceptspace report:" in header
    # the verdict table keeps its 9 columns (the family table its 4) on every row whatever the test id holds
    for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S):
        assert row.count("<td>") in (0, 4, 9), row


def test_report_markdown_still_reads_plainly_for_plain_names():
    markdown = render_markdown(build_report(_outcome("truth"), with_figures=False))
    assert markdown.startswith("# conceptspace report: truth on /models/truth\n")


@pytest.mark.parametrize("name", ["../../../../elsewhere/x", "a/b", "a\\b", "..", ".hidden", "x\ny"])
def test_suite_name_that_is_a_path_is_refused_with_its_line(name):
    text = SUITE.replace('name = "synthetic"', f"name = {name!r}".replace("'", '"') if "\\" not in name
                         and "\n" not in name else f"name = '''{name}'''")
    with pytest.raises(SuiteError, match=r"s\.toml:2: suite\.name: .*--out"):
        parse_suite(text, "s.toml")


def test_plain_suite_names_still_parse():
    assert parse_suite(SUITE.replace("synthetic", "truth v2 (quick)"), "s.toml").name == "truth v2 (quick)"


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "..", ".", "", ".git", "a/../b", "<x>|y"])
def test_safe_file_name_is_one_plain_component(name):
    safe = safe_file_name(name)
    assert safe and "/" not in safe and "\\" not in safe and ".." not in safe and not safe.startswith(".")
    assert re.fullmatch(r"[A-Za-z0-9._+\-]+", safe)

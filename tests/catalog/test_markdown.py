from __future__ import annotations

import pytest

from catalog.markdown import render_markdown

pytestmark = pytest.mark.same_on_any_database

XSS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<img src="x" onerror="alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '<iframe src="https://evil.example"></iframe>',
    '<svg onload="alert(1)"></svg>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<p onclick="alert(1)">x</p>',
    '<object data="x.swf"></object><embed src="x.swf">',
    '<form action="https://evil.example"><input name="q"></form>',
]


@pytest.mark.parametrize("attack", XSS)
def test_markdown_cannot_inject_script(attack):
    html = render_markdown(f"Hello\n\n{attack}\n").lower()
    for needle in (
        "<script",
        "onerror",
        "onload",
        "onclick",
        "javascript:",
        "<iframe",
        "<svg",
        "<object",
        "<embed",
        "<form",
        "style=",
        "data:text",
    ):
        assert needle not in html


def test_markdown_keeps_what_operators_write():
    html = render_markdown(
        "## Performance\n\n**53.1 AP** at 108 FPS, see [the paper](https://arxiv.org/abs/2304.08069)."
        "\n\n| Model | AP |\n|---|---|\n| RT-DETR-R50 | 53.1 |\n\n```\ncode\n```\n"
    )
    assert "<h2>Performance</h2>" in html
    assert "<strong>53.1 AP</strong>" in html
    assert '<a href="https://arxiv.org/abs/2304.08069" rel="nofollow noopener noreferrer">' in html
    assert "<td>RT-DETR-R50</td>" in html
    assert '<pre tabindex="0"><code>code' in html  # a box the keyboard can scroll


def test_past_a_thousand_brackets_they_are_written_as_typed_not_parsed():
    """python-markdown's link patterns are quadratic in unclosed brackets: 20,000 "[" in a
    description took 68 s to render, in a page render after every catalogue save."""
    from catalog.markdown import MAX_BRACKETS

    past = render_markdown("see [docs](https://example.org) " * (MAX_BRACKETS + 1))
    assert "<a" not in past and past.count("[docs](https://example.org)") == MAX_BRACKETS + 1
    linked = "see [docs](https://example.org) " * MAX_BRACKETS
    assert render_markdown(linked).count('<a href="https://example.org"') == MAX_BRACKETS

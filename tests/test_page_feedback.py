"""Every page says at once that it is working: each read of the engine (``data.…``) on a page
runs inside a refreshing fragment (whose first draw of each view shows a spinner) or under
``page.busy``."""

import ast
from pathlib import Path

import pytest

PAGES = sorted((Path(__file__).parent.parent / "pages").glob("*.py"))
QUICK = {"status.py"}  # reads the collector's health only, no events


def _reads_outside_feedback(path: Path) -> list[int]:
    """Lines of ``data.…(...)`` calls neither in a ``@page.refreshing`` function nor under a
    ``with page.busy(...)`` / ``st.spinner(...)`` block."""
    tree = ast.parse(path.read_text())
    covered: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any("refreshing" in ast.unparse(d) for d in node.decorator_list):
            covered.update(range(node.lineno, node.end_lineno + 1))
        if isinstance(node, ast.With) and any(
            "busy" in ast.unparse(item.context_expr) or "spinner" in ast.unparse(item.context_expr)
            for item in node.items
        ):
            covered.update(range(node.lineno, node.end_lineno + 1))
    functions = {
        node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
    }  # a helper called from a covered function is covered through it
    for name, node in functions.items():
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == name]
        if calls and all(call.lineno in covered for call in calls):
            covered.update(range(node.lineno, node.end_lineno + 1))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and ast.unparse(node.func).startswith("data.")
        and node.func.attr not in ("scope_options", "span")
        and node.lineno not in covered
    ]


@pytest.mark.parametrize("path", [p for p in PAGES if p.name not in QUICK], ids=lambda p: p.name)
def test_every_read_of_the_events_on_a_page_shows_a_spinner_at_once(path):
    assert _reads_outside_feedback(path) == []

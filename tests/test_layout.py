"""The project's rooms: pure computation in metrics/ knows nothing of Streamlit, AWS or the sources."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
FORBIDDEN_IN_METRICS = ("streamlit", "boto3", "botocore", "collectors", "ui", "auth")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_metrics_imports_neither_streamlit_nor_aws_nor_the_sources():
    offenders = []
    for path in sorted((ROOT / "metrics").rglob("*.py")):
        for name in imported_modules(path):
            if name.split(".")[0] in FORBIDDEN_IN_METRICS:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_the_server_module_imports_no_streamlit_component_before_the_server_starts():
    # A component declared before the runtime exists is registered where the server never
    # looks: the sign-in cookie's component would answer 404 in the browser.
    code = "import sys, server; print('extra_streamlit_components' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_the_sign_in_form_run_imports_nothing_of_the_runtime(tmp_path):
    # The first visitor of a starting server waits for whatever the sign-in form's run imports,
    # and the server's start thread is importing the runtime's modules at that moment. (Not
    # pandas: Streamlit imports it to call the cookie's component.)
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file('app.py', default_timeout=60).run()\n"
        "assert [b.label for b in at.button] == ['Log in'], [b.label for b in at.button]\n"
        "heavy = ('ui.runtime', 'ui.data', 'ui.view', 'metrics.engine', 'collectors.collector')\n"
        "print([name for name in heavy if name in sys.modules])\n"
    )
    env = {**os.environ, "INSIGHTS_STATE_DIR": str(tmp_path / "state")}
    env.pop("INSIGHTS_AUTH_FILE", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr

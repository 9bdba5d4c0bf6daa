"""The project's rooms: pure computation in metrics/ knows nothing of Streamlit, AWS or the sources."""

import ast
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

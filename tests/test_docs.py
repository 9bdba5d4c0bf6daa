"""The README's promises: its two commands, and CI running the same test command."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command_unchanged():
    test_command = next(b.strip() for b in shell_blocks() if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_the_readme_run_command_starts_the_app():
    run_command = shell_blocks()[0].strip()
    assert run_command.startswith("python3 -m venv .venv")
    assert run_command.endswith("streamlit run server.py")


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-spark.txt"):
        for line in (ROOT / name).read_text().splitlines():
            if line and not line.startswith(("#", "-r")):
                assert "==" in line, f"{name}: {line}"

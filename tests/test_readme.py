"""The README's two opening commands stay true: CI runs the test command verbatim."""

import re

from conftest import REPO


def readme_commands():
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_install_and_test_commands():
    install, test = readme_commands()
    assert install.startswith("pip install") and "picoface detect" in install
    assert test.startswith("pip install") and "pytest" in test


def test_ci_runs_the_readme_test_command():
    _, test = readme_commands()
    assert test in (REPO / ".ci/run").read_text()

"""The README's set-up commands are the ones CI runs."""
import os
import re

from conftest import REPO


def fenced_commands(path):
    with open(path) as f:
        return re.findall(r"```sh\n(.*?)\n```", f.read(), re.S)


def test_ci_runs_the_readme_test_command():
    readme = fenced_commands(os.path.join(REPO, "README.md"))
    with open(os.path.join(REPO, ".ci", "run")) as f:
        ci_command = [line for line in f.read().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_command == [readme[1]]  # the second block of the README is the test command
    assert "pytest" in readme[1] and "pip install" in readme[0] and "l3ic encode" in readme[0]

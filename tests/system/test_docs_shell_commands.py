"""The commands README.md and docs/ show for any machine (`<!-- test: shell -->` blocks) work as printed: each
line, run from the source tree with Debian's default PATH, exits 0. (Those that need a node are in
tests/e2e/test_docs_node_commands.py.)"""
import os
import subprocess
from pathlib import Path

import docs_examples
import pytest

REPO = Path(__file__).resolve().parents[2]
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_the_pages_show_shell_commands():
    assert docs_examples.commands("shell")


@pytest.mark.parametrize("page, command", docs_examples.commands("shell"), ids=lambda value: value[:60])
def test_each_shell_command_of_the_docs_works(page, command):
    env = {"PATH": DEBIAN_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    proc = subprocess.run(["bash", "-c", command], cwd=str(REPO), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{page}: {command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

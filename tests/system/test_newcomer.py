"""CI's newcomer check: the README's first command, run as a new user runs it, in a fresh clone.

A fresh clone of this repository's HEAD (so what is committed, not the working tree), Debian's default PATH
and nothing else of this environment: no virtualenv, no pyenv, so `python3` is the system's, which has no
pip packages. The command must set everything up and run the demo through the one-file build. Needs root,
the apt packages (already there after tools/setup.sh) and PyPI (the clone makes its own .venv).
"""
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def readme_first_command():
    """The first line of the README's first code block, without its comment."""
    block = re.search(r"^```sh\n(.*?)^```", (REPO / "README.md").read_text(), re.S | re.M)
    return block[1].splitlines()[0].split("#")[0].strip()


def test_the_readme_first_command_works_in_a_fresh_clone(tmp_path):
    command = readme_first_command()
    assert command == "tools/setup.sh && tools/demo.sh"
    clone = tmp_path / "route"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    env = {"PATH": DEBIAN_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    proc = subprocess.run(["bash", "-c", command], cwd=str(clone), env=env, capture_output=True, text=True,
                          timeout=1200)
    report = f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, report
    assert "setup: ready" in proc.stdout and "node python3 /usr/bin/python3" in proc.stdout, report
    lines = proc.stdout.splitlines()
    for verdict in ("[PASS] route install", "[PASS] ADD", "[PASS] CHECK", "[PASS] DEL", "all steps PASSED"):
        assert verdict in lines, f"missing {verdict!r}\n{report}"
    assert not any(line.startswith("[FAIL]") for line in lines), report
    # what the demo installed and ran is the clone's one-file build
    assert f"route install: this build: {clone / 'dist' / 'route'} " in proc.stdout, report

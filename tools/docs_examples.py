#!/usr/bin/env python3
"""The marked blocks of README.md and docs/, and what keeps them true: the example outputs come from a run of
the demo, the embedded files from the repository, and the commands are run by the tests.

Marked blocks, a marker line right before a fenced block:
    <!-- example: NAME -->   an output of tools/demo.sh (EXTRACTORS names them), made stable (`stabilize`:
                             temp dirs, namespace names, container IDs, MACs, times, pids and the host name)
    <!-- file: PATH -->      the content of PATH in the repository
    <!-- test: KIND -->      commands a user copies, each line run by a test (TESTED_BY), or a config entry

    tools/docs_examples.py            run the demo (root), rewrite every marked block
    tools/docs_examples.py --check    run the demo, rewrite nothing; exit 1 naming the stale blocks

tests/e2e/test_demo.py checks the example blocks against its own run of the demo (`stale_examples`), with
durations, the node's program versions and the python3 path masked as well (`mask`); tests/unit/test_docs.py
checks the file blocks (`stale_files`).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"^<!-- (example|file|test): (\S+) -->\n(```[^\n]*\n)(.*?)^```$", re.M | re.S)
MARKER = re.compile(r"^<!-- (example|file|test): .*-->$", re.M)
# Which test runs the blocks of each `test` kind: every line of a shell or node block must exit 0.
TESTED_BY = {"shell": "tests/system/test_docs_shell_commands.py",  # any machine, from the source tree
             "node": "tests/e2e/test_docs_node_commands.py",      # root: a node namespace with one pod attached
             "nft-table": "tests/e2e/test_docs_node_commands.py",  # what `nft list table` shows after such an ADD
             "route-entry": "tests/unit/test_docs.py"}       # a `route` entry the plugin accepts


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def marked_blocks(text: str):
    """(kind, name, body, match) of every marked block of a page."""
    return [(m[1], m[2], m[4], m) for m in MARKED.finditer(text)]


def commands(kind: str) -> list[tuple[str, str]]:
    """(page, line) of every command of the `test: KIND` blocks, in page order; comments dropped."""
    found = []
    for page in pages():
        for marked, name, body, _ in marked_blocks(page.read_text()):
            if marked == "test" and name == kind:
                found += [(str(page.relative_to(REPO)), line) for line in body.splitlines()
                          if line.strip() and not line.lstrip().startswith("#")]
    return found


# --- what the demo printed ---

def _section(out: str, title: str) -> str:
    """The lines of the demo's section whose title starts with *title*, without its heading."""
    found = re.search(rf"^=== {re.escape(title)}.*?\n(.*?)(?=^=== |\Z)", out, re.M | re.S)
    if not found:
        raise ValueError(f"the demo printed no section {title!r}")
    return found[1]


def _shown(section: str) -> str:
    """What the section shows, without its verdicts, the demo's `(node)` prefix as a person types it."""
    lines = [line for line in section.splitlines() if not line.startswith(("[PASS]", "[FAIL]"))]
    return "\n".join(lines).replace("$ (node) ", "$ ").strip("\n") + "\n"


def _doctor(section: str) -> str:
    report = section[section.index("$ (node) route doctor"):]
    return _shown(report[:report.index("\n[")])


def _log_block(section: str, verb: str) -> str:
    blocks = re.split(r"(?m)^(?=# == route )", section)
    return next(b for b in blocks if re.match(rf"# == route \S+ \| \S+ \| {verb} \|", b)).strip("\n") + "\n"


EXTRACTORS = {
    "add-result": lambda out: _shown(_section(out, "ADD:")),
    "node-routes": lambda out: _shown(_section(out, "node: ip route ")),
    "log-add": lambda out: _log_block(_section(out, "the plugin's replayable log"), "ADD"),
    "doctor-healthy": lambda out: _doctor(_section(out, "route doctor: the healthy node")),
    "doctor-fault": lambda out: _doctor(_section(out, "route doctor after a fault")),
    "demo-verdicts": lambda out: "\n".join(line for line in out.splitlines()
                                           if line.startswith(("[PASS]", "[FAIL]", "all steps"))) + "\n",
}


def examples(demo_output: str) -> dict[str, str]:
    return {name: stabilize(extract(demo_output)) for name, extract in EXTRACTORS.items()}


# --- stable and masked text ---

NAMESPACE_IDS = {"node": "17332-9b69ba84", "lan": "17332-26b8cbb1", "pod": "17332-d43e4183"}
MACS = ["ee:97:50:69:e4:81", "aa:1e:43:7f:a4:8d", "5a:0c:3e:91:27:b6", "f2:64:1d:8a:c5:03"]


def stabilize(text: str) -> str:
    """The same text for every run of the demo, apart from durations: names, times and pids made fixed."""
    text = re.sub(r"/tmp/route-demo-\w+", "/tmp/route-demo-2wi_2b2q", text)
    text = re.sub(r"\brtt-(node|lan|pod)-\d+-[0-9a-f]+", lambda m: f"rtt-{m[1]}-{NAMESPACE_IDS[m[1]]}", text)
    text = re.sub(r"\bdemo-[0-9a-f]{12}\b", "demo-3f2a9c1e7b44", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z",
                  lambda m: "2026-11-29T18:31:26" + (".962" if m[1] else "") + "Z", text)
    text = re.sub(r"\bpid \d+", "pid 17486", text)
    text = re.sub(r"(?m)^node \S+$", "node node1", text)
    macs: dict[str, str] = {}
    return re.sub(r"\b(?!ff:ff:ff:ff:ff:ff)(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b",
                  lambda m: macs.setdefault(m[0], MACS[len(macs) % len(MACS)]), text)


def mask(text: str) -> str:
    """What must not differ between a page and a run: also durations, what the node's programs are, and which of
    the states of a neighbour that answered the doctor found (REACHABLE turns STALE after 15 to 45 s)."""
    text = re.sub(r"\bin \d+\.\d+ ms\b", "in N ms", stabilize(text))
    text = re.sub(r"\bneighbour (REACHABLE|STALE|DELAY|PROBE)\b", "neighbour ANSWERED", text)
    return re.sub(r"(?m)^(  \w+ +(?:python3|ip -json|nsenter|nft) +).*$", r"\1...", text)


# --- the pages ---

def rewritten(text: str, new_examples: dict[str, str]) -> str:
    def body(m: re.Match) -> str:
        kind, name = m[1], m[2]
        if kind == "test":
            return m[0]
        content = new_examples[name] if kind == "example" else (REPO / name).read_text()
        return f"<!-- {kind}: {name} -->\n{m[3]}{content}```"
    return MARKED.sub(body, text)


def stale_examples(demo_output: str) -> list[str]:
    """`page: name` of every example block that is not what this run of the demo shows."""
    fresh = examples(demo_output)
    return [f"{page.relative_to(REPO)}: {name}" for page in pages()
            for kind, name, body, _ in marked_blocks(page.read_text())
            if kind == "example" and mask(body) != mask(fresh[name])]


def stale_files() -> list[str]:
    return [f"{page.relative_to(REPO)}: {name}" for page in pages()
            for kind, name, body, _ in marked_blocks(page.read_text())
            if kind == "file" and body != (REPO / name).read_text()]


def run_demo() -> str:
    proc = subprocess.run([str(REPO / "tools" / "demo.sh")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    if proc.returncode != 0:
        raise SystemExit(f"docs_examples: the demo failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 naming the stale blocks")
    args = parser.parse_args(argv)
    out = run_demo()
    if args.check:
        stale = stale_examples(out) + stale_files()
        for line in stale:
            print(f"stale: {line}")
        return 1 if stale else 0
    fresh = examples(out)
    for page in pages():
        text = page.read_text()
        new = rewritten(text, fresh)
        if new != text:
            page.write_text(new)
            print(f"rewrote {page.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""README.md and docs/ as a reader gets them: a short README that starts with the two commands, the pages docs/
must have, every relative link and #anchor resolving, no history of the project's own work, the embedded files
as they are in the repository, config entries the plugin accepts, and doctor's and the commands' pointers into
docs/ landing on a section that exists, the quickstart's commands naming what there is. (The demo's example
outputs are checked against a run of the demo in tests/e2e/test_demo.py; the commands the pages show run in
tests/system/test_docs_shell_commands.py and tests/e2e/test_docs_node_commands.py.)"""
import json
import re
import shlex
from pathlib import Path

import docs_examples
import pytest
import yaml

from cniroute import config, person
from cniroute.doctor import report, verdicts
from cniroute.doctor.verdicts import Docs

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# docs/, one page per topic; every one must exist.
PAGES = {"how-it-works.md", "configuration.md", "node-layouts.md", "services.md", "self-healing.md", "doctor.md",
         "debugging.md", "development.md", "install.md", "performance.md", "multus.md", "metrics.md",
         "quickstart.md"}
TWO_COMMANDS = (
    "tools/setup.sh && tools/demo.sh    # set up (apt, .venv, dist/route) and run the demo: the seed's functional "
    "test, on throw-away namespaces\n"
    "tools/test.sh                      # run every test: lint, unit, golden logs, the one-file build, end-to-end "
    "through the real libcni and podman (root)\n")
# The project's own issues and rounds of work are no part of the product's pages.
HISTORY = re.compile(r"\bissues? #?\d+|\bthis round\b|\bfirst round\b|\bearlier rounds?\b|"
                     r"\bbefore (this|the) round\b|\bthe issue's\b|\bA/B\b|\bearlier versions?\b", re.I)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def documents():
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def prose(text):
    """The text without fenced blocks and inline code, where a `](` is no link."""
    text = re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    text = re.sub(r"`", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    text = re.sub(r"^```.*?^```$", "", path.read_text(), flags=re.M | re.S)
    return {anchor(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    first = re.search(r"^```sh\n(.*?)^```", text, re.S | re.M)
    assert first[1] == TWO_COMMANDS


def test_docs_has_its_pages_and_no_others():
    present = {p.name for p in (REPO / "docs").glob("*.md")}
    assert present == PAGES, (present - PAGES, PAGES - present)


def test_the_readme_links_every_page():
    linked = {target for target in LINK.findall(prose(README.read_text())) if target.startswith("docs/")}
    assert {f"docs/{page}" for page in PAGES} <= linked


def test_the_readme_sends_cluster_users_to_the_quickstart_first():
    assert next(target for target in LINK.findall(prose(README.read_text())) if target.startswith("docs/")) \
        == "docs/quickstart.md"


def quickstart_commands():
    """The lines of the quickstart's sh blocks."""
    text = (REPO / "docs" / "quickstart.md").read_text()
    return [line for block in re.findall(r"^```sh\n(.*?)^```$", text, re.M | re.S) for line in block.splitlines()]


def test_the_quickstarts_commands_name_what_there_is():
    """What can be checked without a cluster: every route command parses as route's own parser takes it, every
    file applied is in deploy/, and every object named is the one the manifests make."""
    daemonset = yaml.safe_load((REPO / "deploy" / "base" / "daemonset.yaml").read_text())["metadata"]["name"]
    pod = yaml.safe_load((REPO / "deploy" / "sample-pod.yaml").read_text())["metadata"]["name"]
    nad = yaml.safe_load((REPO / "deploy" / "multus-nad.yaml").read_text())["metadata"]["name"]
    lines = quickstart_commands()
    routes = [shlex.split(line.split("/opt/cni/bin/route", 1)[1]) for line in lines if "/opt/cni/bin/route " in line]
    assert [args[0] for args in routes] == ["doctor", "remove", "remove"]
    for args in routes:
        person.build_parser().parse_args(args)  # SystemExit on an unknown command or option
    applied = [line.split()[-1] for line in lines if line.startswith("kubectl apply -f")]
    assert applied == ["deploy/multus-nad.yaml", "deploy/sample-pod.yaml"]
    assert all((REPO / path).is_file() for path in applied)
    assert set(re.findall(r"\bds/([\w-]+)", "\n".join(lines))) == {daemonset}
    assert set(re.findall(r"\bpod/([\w-]+)", "\n".join(lines))) == {pod}
    text = (REPO / "docs" / "quickstart.md").read_text()
    assert f"network-attachment-definitions\n   {nad}" in text or f"network-attachment-definitions {nad}" in text


def links():
    for document in documents():
        for target in LINK.findall(prose(document.read_text())):
            if not re.match(r"[a-z]+:", target):
                yield pytest.param(document, target, id=f"{document.relative_to(REPO)}->{target}")


@pytest.mark.parametrize("document, target", list(links()))
def test_every_relative_link_and_anchor_resolves(document, target):
    path, _, fragment = target.partition("#")
    resolved = (document.parent / path).resolve() if path else document
    assert resolved.exists(), f"{document.name}: {target} does not exist"
    assert REPO in resolved.parents or resolved == REPO, f"{target} leaves the repository"
    if fragment:
        assert resolved.suffix == ".md", f"{target}: an anchor into a file that is not a page"
        assert fragment in anchors(resolved), f"{document.name}: no section #{fragment} in {resolved.name}"


@pytest.mark.parametrize("document", documents(), ids=lambda p: p.name)
def test_the_pages_tell_the_product_not_its_history(document):
    found = [m[0] for m in HISTORY.finditer(document.read_text())]
    assert found == [], found


@pytest.mark.parametrize("document", documents(), ids=lambda p: p.name)
def test_every_marker_is_known_and_marks_a_block(document):
    text = document.read_text()
    marked = docs_examples.marked_blocks(text)
    assert len(marked) == len(docs_examples.MARKER.findall(text)), "a marker not right before a fenced block"
    for kind, name, body, _ in marked:
        known = {"example": docs_examples.EXTRACTORS, "test": docs_examples.TESTED_BY}.get(kind)
        assert name in known if known is not None else (REPO / name).is_file(), f"{kind}: {name}"
        assert body.strip(), f"{kind}: {name} is empty: run tools/docs_examples.py"


def test_every_demo_example_is_shown():
    shown = {name for d in documents() for kind, name, _, _ in docs_examples.marked_blocks(d.read_text())
             if kind == "example"}
    assert shown == set(docs_examples.EXTRACTORS)


def test_the_module_map_names_every_module_and_no_other():
    page = (REPO / "docs" / "how-it-works.md").read_text()
    block = re.search(r"^## The module map\n.*?^```\n(.*?)^```", page, re.M | re.S)[1]
    inside = block[block.index("lib/cniroute/\n") + len("lib/cniroute/\n"):block.index("\nschemas/")]
    named, package = set(), ""
    for line in inside.splitlines():
        opened = re.match(r"  (\w+)/ ", line)
        if opened or re.match(r"  \S", line):  # a line of the package's top level
            package = opened[1] + "/" if opened else ""
        named |= {package + name for name in re.findall(r"\b(\w+\.py)\b", line)}
    top = REPO / "lib" / "cniroute"
    assert named == {str(p.relative_to(top)) for p in top.rglob("*.py")}


def test_the_embedded_files_are_the_repositorys():
    assert docs_examples.stale_files() == [], "run tools/docs_examples.py"


def route_entries():
    return [body for d in documents() for kind, name, body, _ in docs_examples.marked_blocks(d.read_text())
            if kind == "test" and name == "route-entry"]


def test_the_pages_show_route_entries():
    assert len(route_entries()) >= 3


@pytest.mark.parametrize("entry", route_entries())
def test_the_route_entries_shown_are_accepted(entry):
    conf = config.load({**json.loads(entry), "cniVersion": "1.0.0", "name": "docs"})
    assert conf.master == json.loads(entry)["master"]


def test_the_stable_text_hides_what_changes_between_runs():
    one = ("# == route 0.1.0 | 2026-12-02T18:08:18.348Z | ADD | pid 11461\n"
           "# netns: /var/run/netns/rtt-pod-11305-ff52b32a\n"
           "ip link add name eno1.host link eno1 address 22:65:2b:6d:19:94 type macvlan mode bridge\n"
           "# exit 0 in 3.9 ms\n")
    two = ("# == route 0.1.0 | 2026-12-03T01:00:00.001Z | ADD | pid 4\n"
           "# netns: /var/run/netns/rtt-pod-7-00aa11bb\n"
           "ip link add name eno1.host link eno1 address 02:00:00:00:00:01 type macvlan mode bridge\n"
           "# exit 0 in 12.0 ms\n")
    assert docs_examples.mask(one) == docs_examples.mask(two)
    assert docs_examples.stabilize(one) != docs_examples.stabilize(two)  # durations are the run's own
    assert docs_examples.mask(one) != docs_examples.mask(one.replace("eno1.host", "eno2.host"))
    answered = "  OK    pod 192.168.1.2      demo-dac178f5ff23@eth0, route on eno1.host, neighbour REACHABLE"
    assert docs_examples.mask(answered) == docs_examples.mask(answered.replace("REACHABLE", "STALE"))
    assert docs_examples.mask(answered) != docs_examples.mask(answered.replace("REACHABLE", "FAILED"))


# --- the pointers into docs/ ---

def test_every_doctor_section_exists():
    sections = anchors(REPO / "docs" / "doctor.md")
    for link in Docs.SECTIONS:
        page, _, section = link.partition("#")
        assert page == Docs.PAGE and section in sections, link


def test_doctor_prints_the_section_under_what_is_not_ok():
    sections = [verdicts.Section("network default", "network default", [
        verdicts.ok("master eno1", "up", Docs.MASTER),
        verdicts.Check("pod 192.168.1.2", verdicts.FAIL, "no route", ("ip route replace 192.168.1.2/32 dev eno1.host",),
                       Docs.POD_ADDRESSES)])]
    text = report.render_text(sections, "2026-01-01T00:00:00Z")
    assert re.search(r"^ +fix: ip route replace .*\n +see: docs/doctor\.md#pod-addresses$", text, re.M), text
    assert text.count("see: ") == 1
    checks = json.loads(report.render_json(sections, "2026-01-01T00:00:00Z"))["checks"]
    assert [c["docs"] for c in checks] == ["docs/doctor.md#the-master", "docs/doctor.md#pod-addresses"]


def test_every_command_names_its_manual_page():
    parser = person.build_parser()
    commands = next(a for a in parser._actions if a.dest == "verb").choices
    assert set(commands) == set(person.MANUAL)
    for verb, sub in commands.items():
        page = person.MANUAL[verb]
        assert f"manual: {page}" in sub.format_help(), verb
        assert (REPO / page).is_file(), page
    assert all(page in parser.format_help() for page in person.MANUAL.values())


def test_every_commands_help_is_written_for_a_person():
    """Each --help says what the command does in words of its own (not the usage synopsis, not another command's
    paragraph), names its page of docs/, and names no module, function or file of the code."""
    import importlib
    import pkgutil

    import cniroute

    parser = person.build_parser()
    commands = next(a for a in parser._actions if a.dest == "verb").choices
    internal = set()
    for module in pkgutil.walk_packages(cniroute.__path__, "cniroute."):
        short = module.name.rsplit(".", 1)[1]
        internal.add(f"{short}.py")
        internal |= {f"{short}.{name}" for name in vars(importlib.import_module(module.name))
                     if not name.startswith("__")}
    descriptions = {}
    for verb, sub in [("route", parser), *commands.items()]:
        text = sub.format_help()
        description = sub.description or ""
        assert len(description.split(". ")) >= 2, (verb, description)  # what it does, and for whom or how
        assert not re.search(r"^\s*route \w+ \[", description, re.M), (verb, description)  # not the synopsis
        assert description not in descriptions.values(), (verb, "has the description of another command")
        descriptions[verb] = description
        assert re.search(r"docs/[\w-]+\.md", text), verb
        assert not [name for name in internal if re.search(rf"(?<![\w/.]){re.escape(name)}\b", text)], (verb, text)

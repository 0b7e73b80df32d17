"""doctor's report, apart from its checks: the text a person reads and the JSON document monitoring reads."""
import json
import socket

from .. import __version__
from .verdicts import FAIL, GRAVITY, OK, worst


def failed(sections):
    return any(c.verdict == FAIL for s in sections for c in s.checks)


def counts(sections):
    every = [c.verdict for s in sections for c in s.checks]
    return {verdict: every.count(verdict) for verdict in reversed(GRAVITY)}


def render_text(sections, stamp):
    width = min(28, max((len(c.subject) for s in sections for c in s.checks), default=0))
    lines = [f"route doctor {__version__}, {stamp}"]
    for section in sections:
        lines += ["", section.title]
        for check in section.checks:
            lines.append(f"  {check.verdict:<4}  {check.subject:<{width}}  {check.found}")
            lines += [" " * (width + 10) + ("fix: " if i == 0 else "     ") + line for i, line in enumerate(check.fix)]
            if check.verdict != OK:
                lines.append(" " * (width + 10) + "see: " + check.docs)
    summary = ", ".join(f"{n} {verdict}" for verdict, n in counts(sections).items())
    lines += ["", summary + (": exit 1" if failed(sections) else ": nothing fails")]
    return "\n".join(lines) + "\n"


def render_json(sections, stamp):
    return json.dumps({
        "route": __version__, "time": stamp, "node": socket.gethostname(),
        "verdict": FAIL if failed(sections) else worst(c.verdict for s in sections for c in s.checks),
        "counts": counts(sections),
        "sections": [{"scope": s.scope, "title": s.title} for s in sections],
        "checks": [{"scope": s.scope, "subject": c.subject, "verdict": c.verdict, "found": c.found,
                    "fix": list(c.fix), "docs": c.docs} for s in sections for c in s.checks],
    }, indent=2) + "\n"

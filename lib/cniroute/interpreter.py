"""Can the python3 that runs us run the plugin? A runtime runs the plugin with the first `python3` on its PATH
(dist/route's header and bin/route's first line look it up): it may be too old (Ubuntu 20.04's 3.8), and it
has no pip packages (a source tree's bin/route then lacks sh and jsonschema, which the one-file build carries).

This module, errors.py and cli.py are what every call runs before the version check, so they are written in
Python 3.4's syntax (no f-strings): an old python3 must reach the check and answer code 106, not a traceback.
"""
import os
import sys

from .errors import UnsuitableInterpreter

OLDEST = (3, 9)  # the oldest Python the plugin runs on (pyproject.toml's ruff target, tests/dist/test_py39.py)
PACKAGES = ("sh", "jsonschema")  # requirements.txt
REQUIREMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "requirements.txt")


def version_found():
    return "%d.%d.%d" % tuple(sys.version_info[:3])


def require_python():
    """Raise UnsuitableInterpreter naming the version found and the version needed."""
    if tuple(sys.version_info[:2]) < OLDEST:
        raise UnsuitableInterpreter(
            "{} is Python {}; route needs Python {}.{} or newer".format(sys.executable, version_found(), *OLDEST),
            "a runtime runs the plugin with the first `python3` on its PATH: install python3 {}.{} or newer "
            "there, or keep this node out of the networks that chain route (docs/install.md#what-a-node-needs)"
            .format(*OLDEST))


def require_packages():
    """Raise UnsuitableInterpreter naming what is missing and the two ways out. (A package already imported is
    there: find_spec would raise for sh, which replaces its module with one that has no __spec__.) The one-file
    build carries them: when its start-up (_route_boot) runs the plugin there is nothing to look for, and
    importlib.util and a search of the zip for jsonschema (~1.3 ms of CPU) are spared."""
    if "_route_boot" in sys.modules:
        return
    import importlib.util

    missing = [name for name in PACKAGES if name not in sys.modules and importlib.util.find_spec(name) is None]
    if missing:
        raise UnsuitableInterpreter(
            "{} (python {}) lacks {}, which route needs".format(sys.executable, version_found(), " and ".join(missing)),
            "either install them for that python3: `{} -m pip install -r {}`, ".format(sys.executable, REQUIREMENTS)
            + "or use the one-file build, which carries them: `python3 tools/build_dist.py` in the source tree, "
            "then `dist/route install` (see docs/install.md)")

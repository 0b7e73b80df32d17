"""Can the python3 that runs us run the plugin? A source tree's bin/route runs on whatever `python3` PATH
finds first; on a node that is the system's, which has no pip packages. The one-file build bundles them."""
import importlib.util
import os
import sys

from .errors import UnsuitableInterpreter

PACKAGES = ("sh", "jsonschema")  # requirements.txt
REQUIREMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "requirements.txt")


def require_packages():
    """Raise UnsuitableInterpreter naming what is missing and the two ways out."""
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise UnsuitableInterpreter(
            f"{sys.executable} (python {sys.version.split()[0]}) lacks {' and '.join(missing)}, which route needs",
            f"either install them for that python3: `{sys.executable} -m pip install -r {REQUIREMENTS}`, "
            "or use the one-file build, which carries them: `python3 tools/build_dist.py` in the source tree, "
            "then `dist/route install` (see README, Install)")

"""route: a chained CNI plugin that lets a node reach its own macvlan pods."""

__version__ = "0.2.0"

# How dist/route's header starts the plugin (tools/build_dist.py), python3 found on the runtime's PATH: -S, the
# node's site-packages and their .pth hooks never run in it (nothing from there is imported anyway), ~3 ms of a
# call; -E, nor do the PYTHON* variables of the runtime's environment.
PYTHON_LAUNCH = "exec python3 -S -E"

# The spec versions this plugin speaks, oldest first (VERSION prints them).
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

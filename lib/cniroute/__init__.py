"""route: a chained CNI plugin that lets a node reach its own macvlan pods."""

__version__ = "0.1.0"

# The spec versions this plugin speaks, oldest first (VERSION prints them).
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

"""The example conflists in net.d/ are what docs/configuration.md says: valid for the plugin, chained after macvlan."""
import glob
import json
import os

import pytest

from cniroute import config

NET_D = os.path.join(os.path.dirname(__file__), "..", "..", "net.d")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(NET_D, "*.conflist"))), ids=os.path.basename)
def test_example_conflist_is_a_valid_route_chain(path):
    with open(path) as f:
        conflist = json.load(f)
    types = [p["type"] for p in conflist["plugins"]]
    assert types == ["macvlan", "route"]
    entry = {**conflist["plugins"][1], "cniVersion": conflist["cniVersion"], "name": conflist["name"]}
    conf = config.load(entry)  # raises on anything the schema refuses
    assert conf.master == conflist["plugins"][0]["master"]


def test_the_dual_stack_example_has_both_families():
    with open(os.path.join(NET_D, "10-dual-stack.conflist")) as f:
        ranges = json.load(f)["plugins"][0]["ipam"]["ranges"]
    assert {":" in r[0]["subnet"] for r in ranges} == {True, False}

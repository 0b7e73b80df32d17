"""What doctor checks: the networks whose configs chain `route` (conf dirs and conflists) and those with
attachments recorded under a state dir (a Multus attachment has no conflist on the node), each with its records;
and a Check for each config, conf dir or state dir that cannot be read."""
import json
import os
from collections import namedtuple

from .. import config, files
from ..errors import CNIError
from ..store import Store
from ..store import networks as recorded_networks
from .verdicts import WARN, Check, Docs

DEFAULT_CONF_DIR = "/etc/cni/net.d"
CONF_SUFFIXES = (".conflist", ".conf", ".json")  # what libcni reads from a conf dir


class Network(namedtuple("Network", "name conflist conf error state_dir records")):
    """A network to check. conflist: its file, None when only records name it; conf: its `route` entry as the
    plugin reads it (config.NetConf), None when `error` says why it cannot be read; records: {owner: Attachment,
    or None when unreadable} under state_dir."""

    __slots__ = ()

    def via_host_cidrs(self):
        cidrs = list(self.conf.route_via_host) if self.conf else []
        return cidrs + [cidr for record in self.records.values() if record for cidr, _ in record.via_host]


def find_networks(conf_dirs, conflists, state_dir):
    """The Networks to check, and Checks of config files that could not be read."""
    found, unreadable = [], []
    for path in _config_files(conf_dirs, conflists, unreadable):
        try:  # as the plugin reads its stdin: at most 1 MiB; and a regular file only, never waited for
            document = json.loads(files.read_text(path, follow=True))
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else e
            unreadable.append(Check(f"config {path}", WARN, f"skipped, cannot be read as JSON: {reason}",
                                    (f"# a runtime fails or skips it too: fix or remove {path}",), Docs.CONFIGS))
            continue
        found += _networks_of(path, document, unreadable)
    state_dirs = [state_dir] + [n.state_dir for n in found if n.state_dir]
    known = {(n.name, n.state_dir) for n in found}
    for top in dict.fromkeys(state_dirs):
        try:
            names = recorded_networks(top)
        except OSError as e:
            unreadable.append(_unreadable_state(top, e))
            continue
        for name in names:
            records = _records(top, name, unreadable) if (name, top) not in known else None
            if records is not None:
                found.append(Network(name, None, None, None, top, records))
    return found, unreadable


def _config_files(conf_dirs, conflists, unreadable):
    paths = list(conflists)
    for directory in conf_dirs:
        try:
            names = sorted(files.list_dir(directory))
        except FileNotFoundError:
            continue  # no conf dir: no network configured here (the records may still name some)
        except OSError as e:
            unreadable.append(Check(f"conf dir {directory}", WARN, f"skipped, cannot be listed: {files.why(e)}",
                                    (f"# a runtime cannot read it either: look at {directory}",), Docs.PAGE))
            continue
        paths += [os.path.join(directory, n) for n in names if n.endswith(CONF_SUFFIXES)]
    return paths


def _unreadable_state(where, error):
    return Check(f"state {where}", WARN, f"skipped, cannot be read: {files.why(error)}",
                 ("# the plugin's calls fail on it too (code 5): look at it, and remove what it did not write",),
                 Docs.PAGE)


def _networks_of(path, document, unreadable):
    """A Network per `route` entry of a conflist (or a single config of type route)."""
    if not isinstance(document, dict):
        return []
    entries = document["plugins"] if isinstance(document.get("plugins"), list) else [document]
    found = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") != "route":
            continue
        merged = dict(entry)  # as libcni passes it: the list's name and cniVersion
        merged.update({key: document[key] for key in ("cniVersion", "name") if key in document})
        try:
            conf = config.load(merged)
        except CNIError as e:
            found.append(Network(str(merged.get("name")), path, None, str(e), None, {}))
            continue
        found.append(Network(conf.name, path, conf, None, conf.state_dir,
                             _records(conf.state_dir, conf.name, unreadable) or {}))
    return found


def _records(state_dir, network, unreadable):
    """{file stem: record or None} of a network's attachments; None (with a Check in `unreadable`) when they
    cannot be listed."""
    store = Store(state_dir, dry_run=True)
    try:
        return dict(store.entries(network))  # by file name: the owner, cut and hashed when very long
    except OSError as e:
        unreadable.append(_unreadable_state(f"of network {network}", e))
        return None

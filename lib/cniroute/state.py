"""What the plugin remembers, so that DEL and GC work without prevResult and never take another pod's route.

Under `stateDir/`:
  networks/NETWORK/attachments/CONTAINER@IFNAME.json  the shim and host prefixes of one attachment
  networks/NETWORK/ips/ADDRESS       which attachment owns the route to that pod address now
  locks/shim.SHIM, locks/nft         the flocks (per shim; the one nft table)
Files are written to a temporary name and renamed into place, so a crash leaves the old content or the new,
never half of one. An address can move to a new pod while the old one's DEL or GC is still to come (IPAM
reuse); the ownership file is what keeps that late DEL from deleting the new pod's route.
"""
import contextlib
import ipaddress
import json
import os
from collections import namedtuple

from . import lock, schema
from .errors import InvalidConfig, IOFailure

LOCK_TIMEOUT = 30.0  # seconds; a holder does a handful of ip calls, so waiting longer means something is stuck


def owner_id(container_id, ifname):
    # '@' can occur in neither a container ID nor an interface name (both are validated).
    return f"{container_id}@{ifname}"


class Attachment(namedtuple("Attachment", "container_id ifname network master shim prefixes via_host on_link "
                                         "log_file log_max_bytes node_addresses", defaults=((), None, None, None))):
    """One attachment as ADD made it: the shim (on master) its host prefixes are routed through, its
    routeViaHost [cidr, gateway] pairs, the node addresses it reaches on its own link (on_link, routes in the
    pod), and what of its config `route reconcile` needs to remake the shim as ADD did and to log where the
    network's own calls log: logFile, logMaxBytes (None: stderr, the default size) and nodeAddresses (None:
    the automatic choice). On disk as schemas/attachment.json (keys containerID, ifname, network, master,
    bridge, prefixes, viaHost, and optionally onLink, logFile, logMaxBytes, nodeAddresses: records written
    before they existed stay readable)."""

    __slots__ = ()

    @property
    def owner(self):
        return owner_id(self.container_id, self.ifname)

    def to_json(self):
        document = {"containerID": self.container_id, "ifname": self.ifname, "network": self.network,
                    "master": self.master, "bridge": self.shim, "prefixes": list(self.prefixes),
                    "viaHost": [list(pair) for pair in self.via_host], "onLink": list(self.on_link)}
        if self.log_file:
            document["logFile"] = self.log_file
            if self.log_max_bytes:
                document["logMaxBytes"] = self.log_max_bytes
        if self.node_addresses is not None:
            document["nodeAddresses"] = [str(n) for n in self.node_addresses]
        return document

    @classmethod
    def from_json(cls, document):
        """The record, or None when it is not one the plugin could have written: what it holds ends up in
        commands, so it is checked as strictly as input (the schema, then every address parsed)."""
        try:
            schema.validate(document, "attachment.json", "attachment")
            prefixes = [str(ipaddress.ip_network(p)) for p in document["prefixes"]]
            via_host = [(str(ipaddress.ip_network(cidr)), str(ipaddress.ip_address(gateway)))
                        for cidr, gateway in document["viaHost"]]
            on_link = [str(ipaddress.ip_network(p)) for p in document.get("onLink", [])]
            node_addresses = document.get("nodeAddresses")
            if node_addresses is not None:
                node_addresses = [ipaddress.ip_network(n) for n in node_addresses]
        except (InvalidConfig, ValueError):  # ValueError: a bad address, or a viaHost entry not a pair
            return None
        return cls(document["containerID"], document["ifname"], document["network"], document["master"],
                   document["bridge"], prefixes, via_host, on_link, document.get("logFile"),
                   document.get("logMaxBytes"), node_addresses)


class Store:
    """The state of one network under stateDir, and the node's locks (every network shares them).

    Locks, in the one order every caller takes them: the shim's lock (around every change on a shim and its
    pods' routes), then, inside it, the nft table's (around changes to the masquerade rules, which every
    shim shares). Never the other way round, so two calls cannot deadlock.
    """

    def __init__(self, state_dir, network, dry_run=False):
        self.top = state_dir
        self.dir = os.path.join(state_dir, "networks", network)
        self.dry_run = dry_run  # a dry run changes no state (it may create the lock files)
        self._shim_held = None

    # --- attachments ---
    def attachment(self, owner):
        """The record of an attachment, or None when there is none or it is not one we could have written."""
        document = _read_json(self.attachment_path(owner))
        return Attachment.from_json(document) if document is not None else None

    def save(self, attachment):
        self._write(self.attachment_path(attachment.owner), json.dumps(attachment.to_json()))

    def forget(self, owner):
        self._unlink(self.attachment_path(owner))

    def owners(self):
        """Every attachment with a record in this network, including unreadable ones (GC removes those)."""
        try:
            names = os.listdir(os.path.join(self.dir, "attachments"))
        except FileNotFoundError:
            return []
        return sorted(n[:-len(".json")] for n in names if n.endswith(".json"))

    def any_uses_via_host(self, shim, besides):
        """Whether an attachment other than `besides`, of any network under this stateDir, still routes via
        the host on `shim`."""
        return any(record.shim == shim and record.via_host for store, record in every_attachment(self.top)
                   if record.owner != besides or store.dir != self.dir)

    # --- locks ---
    @contextlib.contextmanager
    def shim_lock(self, shim):
        with lock.held(self._lock_path(f"shim.{shim}"), LOCK_TIMEOUT):
            self._shim_held = shim
            try:
                yield
            finally:
                self._shim_held = None

    def nft_lock(self):
        if self._shim_held is None:  # the order above is what keeps two calls from deadlocking
            raise RuntimeError("the nft table's lock is taken inside a shim's lock, never alone")
        return lock.held(self._lock_path("nft"), LOCK_TIMEOUT)

    # --- who owns the route to an address ---
    def claim(self, prefix, owner):
        self._write(self._ip_path(prefix), owner)

    def owner_of(self, prefix):
        try:
            with open(self._ip_path(prefix), encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError:
            return None

    def release(self, prefix, owner):
        if self.owner_of(prefix) == owner:
            self._unlink(self._ip_path(prefix))

    def claimed(self):
        """{prefix: owner} of every ownership file."""
        try:
            names = os.listdir(os.path.join(self.dir, "ips"))
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            try:
                prefix = str(ipaddress.ip_network(name))
            except ValueError:
                continue  # a temporary file, or not ours
            found[prefix] = self.owner_of(prefix)
        return found

    def sweep_temporaries(self):
        """Remove what a writer killed between write and rename left behind."""
        for sub in ("attachments", "ips"):
            try:
                names = os.listdir(os.path.join(self.dir, sub))
            except FileNotFoundError:
                continue
            for name in names:
                if name.endswith(".tmp"):
                    self._unlink(os.path.join(self.dir, sub, name))

    def _lock_path(self, name):
        locks = os.path.join(self.top, "locks")
        try:
            os.makedirs(locks, mode=0o700, exist_ok=True)
        except OSError as e:
            raise IOFailure(f"cannot create the lock directory {locks}", str(e)) from None
        return os.path.join(locks, name)

    # --- files ---
    def attachment_path(self, owner):
        return os.path.join(self.dir, "attachments", owner + ".json")

    def _ip_path(self, prefix):
        return os.path.join(self.dir, "ips", str(ipaddress.ip_interface(prefix).ip))

    def _write(self, path, text):
        if self.dry_run:
            return
        temp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with open(temp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(temp, path)
        except OSError as e:
            raise IOFailure(f"cannot write state {path}", str(e)) from None

    def _unlink(self, path):
        if self.dry_run:
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise IOFailure(f"cannot remove state {path}", str(e)) from None


def networks(state_dir):
    """The networks with state under `state_dir`."""
    try:
        return sorted(os.listdir(os.path.join(state_dir, "networks")))
    except (FileNotFoundError, NotADirectoryError):
        return []


def every_attachment(state_dir):
    """(Store of its network, record) of every readable attachment record under state_dir, of every network."""
    found = []
    for network in networks(state_dir):
        store = Store(state_dir, network)
        found += [(store, record) for record in map(store.attachment, store.owners()) if record is not None]
    return found


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

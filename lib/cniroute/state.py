"""What the plugin remembers, so that DEL and GC work without prevResult and never take another pod's route.

Under `stateDir/`:
  networks/NETWORK/attachments/NAME.json  one attachment (schemas/attachment.json); NAME is CONTAINER@IFNAME, or
                                     for one too long for a file name its start, '~' and a hash (file_stem)
  ips/ADDRESS                        which attachment owns the route to that pod address now, as
                                     NETWORK/CONTAINER@IFNAME
  locks/shim.SHIM, locks/nft         the flocks (per shim; the one nft table)
Files are written to a temporary name and renamed into place, so a crash leaves the old content or the new,
never half of one. An address can move to a new pod while the old one's DEL or GC is still to come (IPAM
reuse), also to a pod of another network that shares the pool: the node's main table has one route per
address whatever the network, so its ownership file is node-wide, and it is what keeps that late DEL from
deleting the new pod's route. (Earlier versions kept it per network, networks/NETWORK/ips/ADDRESS holding
CONTAINER@IFNAME: such files are adopted on first use, see Store._adopt_legacy_claims.)
"""
import contextlib
import ipaddress
import json
import os
from collections import namedtuple

from . import config, files, iproute, lock, schema
from .errors import InvalidConfig, IOFailure

LOCK_TIMEOUT = 30.0  # seconds; a holder does a handful of ip calls, so waiting longer means something is stuck
MAX_STEM = 200  # bytes of an attachment file's name before ".json" and a writer's ".PID.tmp" (NAME_MAX is 255)


def owner_id(container_id, ifname):
    # '@' can occur in neither a container ID nor an interface name (both are validated).
    return f"{container_id}@{ifname}"


def file_stem(owner):
    """The file name (without .json) of an attachment's record. Container IDs have no length limit (libcni takes
    any), file names do: a long owner is cut and made unique with a hash ('~' is in no container ID, so a cut
    name never equals a whole one). The record inside keeps the full ID."""
    if len(owner) <= MAX_STEM:
        return owner
    import hashlib  # rare, and it loads OpenSSL

    return owner[:100] + "~" + hashlib.sha256(owner.encode()).hexdigest()[:40]


class Attachment(namedtuple("Attachment", "container_id ifname network master shim prefixes via_host on_link "
                                         "log_file log_max_bytes node_addresses reply_rules reply_routes netns "
                                         "netns_id node_view",
                                defaults=([], None, None, None, [], [], None, None, None))):
    """One attachment as ADD made it: the shim (on master) its host prefixes are routed through, its
    routeViaHost [cidr, gateway] pairs, the node addresses it reaches on its own link (on_link, routes in the
    pod), and what of its config `route reconcile` needs to remake the shim as ADD did and to log where the
    network's own calls log: logFile, logMaxBytes (None: stderr, the default size) and nodeAddresses (None:
    the automatic choice); in a pod of several interfaces, the reply paths it made there (pod_routes:
    reply_rules [address, table], reply_routes [table, dst, gateway, dev, onlink, metric]); and the pod's
    namespace: its path (netns, the ADD's CNI_NETNS) and which namespace that was (netns_id,
    runner.SystemHost.namespace_id), for `route doctor` to look into the pod and for reconcile to put the pod's
    own routes back, each only while it still holds the pod (DEL changes only the namespace the runtime names
    then); node_view, what of the node the pod side was made for (pod_routes.node_view: reconcile enters only
    the pods made for another node than the node of now). On disk as schemas/attachment.json (keys containerID,
    ifname, network, master, bridge, prefixes, viaHost, and optionally onLink, logFile, logMaxBytes,
    nodeAddresses, replyRules, replyRoutes, netns, netnsID, nodeView: records written before they existed stay
    readable)."""

    __slots__ = ()

    @property
    def owner(self):
        return owner_id(self.container_id, self.ifname)

    @property
    def claimant(self):
        """What an ownership file (ips/ADDRESS) says when this attachment owns the route: node-wide, so with the
        network ('/' is in no network name)."""
        return f"{self.network}/{self.owner}"

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
        if self.reply_rules or self.reply_routes:
            document["replyRules"] = [list(rule) for rule in self.reply_rules]
            document["replyRoutes"] = [list(route) for route in self.reply_routes]
        if self.netns:
            document["netns"] = self.netns
        if self.netns and self.netns_id:
            document["netnsID"] = self.netns_id
        if self.node_view is not None:
            document["nodeView"] = list(self.node_view)
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
            reply_rules = [[str(ipaddress.ip_address(a)), _number(table)]
                           for a, table in document.get("replyRules", [])]
            reply_routes = [[_number(table), str(ipaddress.ip_network(dst)),
                             None if gateway is None else str(ipaddress.ip_address(gateway)), _ifname(dev),
                             _flag(onlink), None if metric is None else _number(metric)]
                            for table, dst, gateway, dev, onlink, metric in document.get("replyRoutes", [])]
        except (InvalidConfig, ValueError):  # ValueError: a bad address or table, an entry of the wrong length
            return None
        return cls(document["containerID"], document["ifname"], document["network"], document["master"],
                   document["bridge"], prefixes, via_host, on_link, document.get("logFile"),
                   document.get("logMaxBytes"), node_addresses, reply_rules, reply_routes, document.get("netns"),
                   document.get("netnsID"), document.get("nodeView"))


def _number(value):
    """A table or metric of a record: a u32."""
    if type(value) is not int or not 0 <= value < 2 ** 32:
        raise ValueError(f"not a table or metric: {value!r}")
    return value


def _ifname(value):
    if not isinstance(value, str) or not config.IFNAME.match(value):
        raise ValueError(f"not an interface name: {value!r}")
    return value


def _flag(value):
    if type(value) is not bool:
        raise ValueError(f"not a flag: {value!r}")
    return value


class Store:
    """The state of one network under stateDir, the node's address ownership, and the node's locks (every
    network shares them).

    Locks, in the one order every caller takes them: the shim's lock (around every change on a shim and its
    pods' routes), then, inside it, the nft table's (around changes to the masquerade rules, which every
    shim shares). Never the other way round, so two calls cannot deadlock.
    """

    def __init__(self, state_dir, network, dry_run=False):
        self.top = state_dir
        self.network = network
        self.dir = os.path.join(state_dir, "networks", network)
        self.dry_run = dry_run  # a dry run changes no state (it may create the lock files)
        self._shim_held = None
        self._adopted = False

    # --- attachments ---
    def attachment(self, owner):
        """The record of an attachment, or None when there is none or it is not one we could have written."""
        return self._record(file_stem(owner))

    def save(self, attachment):
        self._write(self._attachment_path(file_stem(attachment.owner)), json.dumps(attachment.to_json()))

    def forget(self, owner):
        self.forget_entry(file_stem(owner))

    def forget_entry(self, stem):
        self._unlink(self._attachment_path(stem))

    def entries(self):
        """[(file stem, record or None)] of every attachment file of this network, including unreadable ones (GC
        removes those)."""
        try:
            names = files.list_dir(self.top, "networks", self.network, "attachments")
        except FileNotFoundError:
            return []
        return [(stem, self._record(stem)) for stem in sorted(n[:-len(".json")] for n in names if n.endswith(".json"))]

    def records_on(self, shim):
        """The records of every network under this stateDir whose routes are on `shim`."""
        return [record for _, record in every_attachment(self.top) if record.shim == shim]

    def attachment_path(self, owner):
        """Where the record of an attachment is (for a person to look at)."""
        return self._attachment_path(file_stem(owner))

    def any_uses_via_host(self, shim, besides):
        """Whether an attachment other than `besides` (a claimant), of any network under this stateDir, still
        routes via the host on `shim`."""
        return any(record.via_host and record.claimant != besides for record in self.records_on(shim))

    def why_unreadable(self, stem):
        """Why the attachment file `stem` gives no record (None: it does)."""
        return self._load(stem)[1]

    def _record(self, stem):
        return self._load(stem)[0]

    def _load(self, stem):
        """(record, None), or (None, why there is none)."""
        try:
            document = json.loads(files.read_text(self._attachment_path(stem)))
        except OSError as e:
            return None, e.strerror or str(e)
        except ValueError as e:  # not UTF-8, not JSON
            return None, str(e)
        record = Attachment.from_json(document)
        if record is None:
            return None, "not a record this plugin writes (schemas/attachment.json)"
        # A record under another attachment's name (moved, or planted) is not one we wrote there.
        if file_stem(record.owner) != stem:
            return None, f"the record of {record.owner}, under another name"
        return record, None

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

    # --- who owns the route to an address (node-wide) ---
    def claim(self, prefix, claimant):
        self._adopt_legacy_claims()
        self._write(self._ip_path(prefix), claimant)

    def owner_of(self, prefix):
        """The claimant (NETWORK/CONTAINER@IFNAME) that owns the route to prefix's address, or None."""
        self._adopt_legacy_claims()
        owner = _read_claim(self._ip_path(prefix))
        if owner is None and not self._adopted:  # not ours to move: read the earlier layout as it lies
            owner = _newest(self._legacy_claims().get(str(ipaddress.ip_interface(prefix).ip), []))
        return owner

    def release(self, prefix, claimant):
        if self.owner_of(prefix) == claimant:
            self._unlink(self._ip_path(prefix))

    def claimed(self):
        """{prefix: claimant or None} of every ownership file on the node."""
        self._adopt_legacy_claims()
        found = {prefix: _read_claim(path) for prefix, path in _claim_files((self.top, "ips"))}
        if not self._adopted:
            for address, claims in self._legacy_claims().items():
                found.setdefault(iproute.host_prefix(address), _newest(claims))
        return found

    def _adopt_legacy_claims(self):
        """Move the per-network ownership files of earlier versions to the node-wide ips/. Of several claims of
        one address, the newest wins; a node-wide claim, being newer than any of them, stays. Written with
        link(2), which never replaces a file, so a claim made meanwhile by a current ADD is kept.

        Only a call that may change state and holds a shim's lock moves them (ADD, DEL, GC under the lock);
        any other reader (doctor, a dry run, reconcile's reads) sees them where they are (_legacy_claims)."""
        if self._adopted or self.dry_run or self._shim_held is None:
            return
        self._adopted = True
        for address, claims in self._legacy_claims().items():
            newest = _newest(claims)
            if newest:
                self._write(os.path.join(self.top, "ips", address), newest, replace=False)
            for _, _, path in claims:
                self._unlink(path)

    def _legacy_claims(self):
        """{address: [(mtime, claimant or None, path)]} of the earlier layout's ownership files; read only."""
        found = {}
        try:
            names = networks(self.top)
        except OSError:  # no claims are read through it (every_attachment says why)
            names = []
        for network in names:
            for prefix, path in _claim_files((self.top, "networks", network, "ips")):
                try:
                    mtime = os.lstat(path).st_mtime_ns
                except OSError:
                    continue
                owner = _read_claim(path)
                found.setdefault(str(ipaddress.ip_interface(prefix).ip), []).append(
                    (mtime, owner and f"{network}/{owner}", path))
        return found

    def sweep_temporaries(self):
        """Remove what a writer killed between write and rename left behind."""
        for parts in (("networks", self.network, "attachments"), ("ips",)):
            try:
                names = files.list_dir(self.top, *parts)
            except FileNotFoundError:
                continue
            directory = os.path.join(self.top, *parts)
            for name in names:
                if name.endswith(".tmp"):
                    self._unlink(os.path.join(directory, name))

    def _lock_path(self, name):
        locks = os.path.join(self.top, "locks")
        try:
            os.makedirs(locks, mode=0o700, exist_ok=True)
        except OSError as e:
            raise IOFailure(f"cannot create the lock directory {locks}", str(e)) from None
        return os.path.join(locks, name)

    # --- files ---
    def _attachment_path(self, stem):
        return os.path.join(self.dir, "attachments", stem + ".json")

    def _ip_path(self, prefix):
        return os.path.join(self.top, "ips", str(ipaddress.ip_interface(prefix).ip))

    def _write(self, path, text, replace=True):
        """Write a state file whole: to a temporary name, then renamed into place (or, with replace=False, linked
        there unless something already is)."""
        if self.dry_run:
            return
        temp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)  # left by a killed writer that had our pid
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            if replace:
                os.replace(temp, path)
            else:
                with contextlib.suppress(FileExistsError):
                    os.link(temp, path)
                os.unlink(temp)
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
    """The networks with state under `state_dir` (OSError when its networks/ cannot be listed: files.list_dir)."""
    try:
        return sorted(files.list_dir(state_dir, "networks"))
    except FileNotFoundError:
        return []


def every_attachment(state_dir, dry_run=False, skipped=None):
    """(Store of its network, record) of every readable attachment record under state_dir, of every network.
    What cannot be read is left out, with a line saying what and why appended to `skipped` (a list) if given."""
    found, unread = [], []
    try:
        names = networks(state_dir)
    except OSError as e:
        names = []
        unread.append(f"skipped {files.why(e)}")
    for network in names:
        store = Store(state_dir, network, dry_run)
        try:
            entries = store.entries()
        except OSError as e:
            unread.append(f"skipped network {network}: {files.why(e)}")
            continue
        for stem, record in entries:
            if record is None:
                unread.append(f"skipped {store.attachment_path(stem)}: {store.why_unreadable(stem)}")
            else:
                found.append((store, record))
    if skipped is not None:
        skipped += unread
    return found


def _claim_files(directory):
    """(host prefix, path) of the ownership files in a directory (top, *parts: files.list_dir); other names
    (temporaries) are skipped."""
    try:
        names = files.list_dir(*directory)
    except OSError:  # none, or not a directory of ours (a symlink...): no claim is read through it
        return []
    found = []
    for name in names:
        try:
            found.append((str(ipaddress.ip_network(name)), os.path.join(*directory, name)))
        except ValueError:
            continue
    return found


def _newest(claims):
    """The claimant of the newest of an address's earlier-layout claims (None: unreadable, or none)."""
    return max(claims, key=lambda c: c[0])[1] if claims else None


def _read_claim(path):
    try:
        return files.read_text(path).strip() or None
    except (OSError, ValueError):
        return None

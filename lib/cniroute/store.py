"""The node's state dir: what the plugin remembers, so that DEL and GC work without prevResult and never take
another pod's route, and the locks that keep calls apart. One Store for the node: every network shares it.

Under `stateDir/`:
  networks/NETWORK/attachments/NAME.json  one attachment (records.Attachment, schemas/attachment.json); NAME is
                                     CONTAINER@IFNAME, or for one too long for a file name its start, '~' and a
                                     hash (file_stem)
  ips/ADDRESS                        which attachment owns the route to that pod address now, as
                                     NETWORK/CONTAINER@IFNAME
  locks/shim.SHIM, locks/nft         the flocks (per shim; the one nft table)
Files are written to a temporary name and renamed into place, so a crash leaves the old content or the new,
never half of one. Below the state dir no directory is followed if it is a symlink, for reads and writes alike
(files.open_dir): a call that would write through one fails with IOFailure naming it.

An address can move to a new pod while the old one's DEL or GC is still to come (IPAM reuse), also to a pod of
another network that shares the pool: the node's main table has one route per address whatever the network, so
its ownership file is node-wide, and it is what keeps that late DEL from deleting the new pod's route.
(Earlier versions kept it per network, networks/NETWORK/ips/ADDRESS holding CONTAINER@IFNAME: see the end of
this file.)
"""
import contextlib
import ipaddress
import json
import os

from . import files, iproute, lock
from .errors import IOFailure
from .records import Attachment

LOCK_TIMEOUT = 30.0  # seconds; a holder does a handful of ip calls, so waiting longer means something is stuck
MAX_STEM = 200  # bytes of an attachment file's name before ".json" and a writer's ".PID.tmp" (NAME_MAX is 255)


def file_stem(owner):
    """The file name (without .json) of an attachment's record. Container IDs have no length limit (libcni takes
    any), file names do: a long owner is cut and made unique with a hash ('~' is in no container ID, so a cut
    name never equals a whole one). The record inside keeps the full ID."""
    if len(owner) <= MAX_STEM:
        return owner
    import hashlib  # rare, and it loads OpenSSL

    return owner[:100] + "~" + hashlib.sha256(owner.encode()).hexdigest()[:40]


class Store:
    """The state dir of the node: every network's attachment records, the node's address ownership, and the
    node's locks.

    Locks, in the one order every caller takes them: the shim's lock (around every change on a shim and its
    pods' routes), then, inside it, the nft table's (around changes to the masquerade rules, which every
    shim shares). Never the other way round, so two calls cannot deadlock.

    `adopts_older_claims`: the plugin's own calls (ADD, DEL, GC) move the earlier layout's ownership files to
    ips/ the first time they hold a shim's lock; every other reader (doctor, reconcile, a dry run) reads them
    where they are.
    """

    def __init__(self, state_dir, dry_run=False, adopts_older_claims=False):
        self.top = state_dir
        self.dry_run = dry_run  # a dry run changes no state (it may create the lock files)
        self.adopts_older_claims = adopts_older_claims
        self._shim_held = None
        self._older = None  # {address: claimant or None} of the earlier layout, once read; {} once adopted

    # --- attachments ---
    def attachment(self, network, owner):
        """The record of an attachment, or None when there is none or it is not one we could have written."""
        return self._load(network, file_stem(owner))[0]

    def save(self, attachment):
        self._write(_records_dir(attachment.network), file_stem(attachment.owner) + ".json",
                    json.dumps(attachment.to_json()))

    def forget(self, network, owner):
        self.forget_entry(network, file_stem(owner))

    def forget_entry(self, network, stem):
        self._unlink(_records_dir(network), stem + ".json")

    def entries(self, network):
        """[(file stem, record or None)] of every attachment file of a network, including unreadable ones (GC
        removes those). OSError when its directory cannot be listed (files.list_dir)."""
        try:
            names = files.list_dir(self.top, "networks", network, "attachments")
        except FileNotFoundError:
            return []
        stems = sorted(n[:-len(".json")] for n in names if n.endswith(".json"))
        return [(stem, self._load(network, stem)[0]) for stem in stems]

    def every_attachment(self, skipped=None):
        """The readable records of every network. What cannot be read is left out, with a line saying what and
        why appended to `skipped` (a list) if given."""
        found, unread = [], []
        try:
            names = networks(self.top)
        except OSError as e:
            names = []
            unread.append(f"skipped {files.why(e)}")
        for network in names:
            try:
                entries = self.entries(network)
            except OSError as e:
                unread.append(f"skipped network {network}: {files.why(e)}")
                continue
            for stem, record in entries:
                if record is None:
                    unread.append(f"skipped {self._attachment_path(network, stem)}: "
                                  f"{self.why_unreadable(network, stem)}")
                else:
                    found.append(record)
        if skipped is not None:
            skipped += unread
        return found

    def records_on(self, shim):
        """The records of every network whose routes are on `shim`."""
        return [record for record in self.every_attachment() if record.shim == shim]

    def attachment_path(self, network, owner):
        """Where the record of an attachment is (for a person to look at)."""
        return self._attachment_path(network, file_stem(owner))

    def any_uses_via_host(self, shim, besides):
        """Whether an attachment other than `besides` (a claimant), of any network, still routes via the host
        on `shim`."""
        return any(record.via_host and record.claimant != besides for record in self.records_on(shim))

    def why_unreadable(self, network, stem):
        """Why the attachment file `stem` gives no record (None: it does)."""
        return self._load(network, stem)[1]

    def _load(self, network, stem):
        """(record, None), or (None, why there is none)."""
        try:
            document = json.loads(files.read_text(self._attachment_path(network, stem), below=self.top))
        except OSError as e:
            return None, e.strerror or str(e)
        except ValueError as e:  # not UTF-8, not JSON
            return None, str(e)
        record = Attachment.from_json(document)
        if record is None:
            return None, "not a record this plugin writes (schemas/attachment.json)"
        # A record under another attachment's name or network (moved, or planted) is not one we wrote there.
        if file_stem(record.owner) != stem:
            return None, f"the record of {record.owner}, under another name"
        if record.network != network:
            return None, f"a record of network {record.network}, under network {network}"
        return record, None

    # --- locks ---
    @contextlib.contextmanager
    def shim_lock(self, shim):
        with lock.held(self._lock_path(f"shim.{shim}"), LOCK_TIMEOUT, below=self.top):
            self._shim_held = shim
            try:
                self._adopt_older_claims()
                yield
            finally:
                self._shim_held = None

    def nft_lock(self):
        if self._shim_held is None:  # the order above is what keeps two calls from deadlocking
            raise RuntimeError("the nft table's lock is taken inside a shim's lock, never alone")
        return lock.held(self._lock_path("nft"), LOCK_TIMEOUT, below=self.top)

    # --- who owns the route to an address (node-wide) ---
    def claim(self, prefix, claimant):
        self._write(("ips",), _address(prefix), claimant)

    def owner_of(self, prefix):
        """The claimant (NETWORK/CONTAINER@IFNAME) that owns the route to prefix's address, or None."""
        return _read_claim(self.top, ("ips",), _address(prefix)) or self._older_claims().get(_address(prefix))

    def release(self, prefix, claimant):
        if self.owner_of(prefix) == claimant:
            self._unlink(("ips",), _address(prefix))

    def claimed(self):
        """{prefix: claimant or None} of every ownership file on the node."""
        found = {prefix: _read_claim(self.top, ("ips",), name) for prefix, name in _claim_files(self.top, "ips")}
        for address, claimant in self._older_claims().items():
            found.setdefault(iproute.host_prefix(address), claimant)
        return found

    def sweep_temporaries(self, network):
        """Remove what a writer killed between write and rename left behind."""
        for parts in (_records_dir(network), ("ips",)):
            try:
                names = files.list_dir(self.top, *parts)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise IOFailure(f"cannot list state {os.path.join(self.top, *parts)}", files.why(e)) from None
            for name in names:
                if name.endswith(".tmp"):
                    self._unlink(parts, name)

    # --- the earlier layout's claims: read as they lie, or adopted once ---
    def _older_claims(self):
        if self._older is None:
            self._older = {address: _newest(claims) for address, claims in _read_older_claims(self.top).items()}
        return self._older

    def _adopt_older_claims(self):
        """Move the per-network ownership files of earlier versions to the node-wide ips/ (a call of the plugin,
        the first time it holds a shim's lock). Of several claims of one address, the newest wins; a node-wide
        claim, being newer than any of them, stays. Written with link(2), which never replaces a file, so a
        claim made meanwhile by a current ADD is kept."""
        if not self.adopts_older_claims or self.dry_run or self._older == {}:
            return
        older, self._older = _read_older_claims(self.top), {}
        for address, claims in older.items():
            newest = _newest(claims)
            if newest:
                self._write(("ips",), address, newest, replace=False)
            for _, _, parts, name in claims:
                self._unlink(parts, name)

    # --- files ---
    def _lock_path(self, name):
        locks = os.path.join(self.top, "locks")
        try:
            os.close(files.open_dir(self.top, "locks", create=True))
        except OSError as e:
            raise IOFailure(f"cannot create the lock directory {locks}", files.why(e)) from None
        return os.path.join(locks, name)

    def _attachment_path(self, network, stem):
        return os.path.join(self.top, *_records_dir(network), stem + ".json")

    def _write(self, parts, name, text, replace=True):
        """Write the state file top/PARTS.../name whole (files.write_whole)."""
        if self.dry_run:
            return
        try:
            files.write_whole(self.top, parts, name, text, replace)
        except OSError as e:
            raise IOFailure(f"cannot write state {os.path.join(self.top, *parts, name)}", files.why(e)) from None

    def _unlink(self, parts, name):
        if self.dry_run:
            return
        try:
            files.remove(self.top, parts, name)
        except OSError as e:
            raise IOFailure(f"cannot remove state {os.path.join(self.top, *parts, name)}", files.why(e)) from None


def networks(state_dir):
    """The networks with state under `state_dir` (OSError when its networks/ cannot be listed: files.list_dir)."""
    try:
        return sorted(files.list_dir(state_dir, "networks"))
    except FileNotFoundError:
        return []


def _records_dir(network):
    return ("networks", network, "attachments")


def _address(prefix):
    return str(ipaddress.ip_interface(prefix).ip)


def _claim_files(top, *parts):
    """(host prefix, file name) of the ownership files in directory top/PARTS... (files.list_dir); other names
    (temporaries) are skipped."""
    try:
        names = files.list_dir(top, *parts)
    except OSError:  # none, or not a directory of ours (a symlink...): no claim is read through it
        return []
    found = []
    for name in names:
        try:
            found.append((str(ipaddress.ip_network(name)), name))
        except ValueError:
            continue
    return found


def _read_claim(top, parts, name):
    try:
        return files.read_text(os.path.join(top, *parts, name), below=top).strip() or None
    except (OSError, ValueError):
        return None


def _read_older_claims(state_dir):
    """{address: [(mtime, claimant or None, parts, file name)]} of the earlier layout's ownership files
    (networks/NETWORK/ips/ADDRESS holding CONTAINER@IFNAME); read only. The one reader of that layout."""
    found = {}
    try:
        names = networks(state_dir)
    except OSError:  # no claims are read through it (every_attachment says why)
        names = []
    for network in names:
        parts = ("networks", network, "ips")
        for prefix, name in _claim_files(state_dir, *parts):
            try:
                mtime = os.lstat(os.path.join(state_dir, *parts, name)).st_mtime_ns
            except OSError:
                continue
            owner = _read_claim(state_dir, parts, name)
            found.setdefault(_address(prefix), []).append((mtime, owner and f"{network}/{owner}", parts, name))
    return found


def _newest(claims):
    """The claimant of the newest of an address's earlier-layout claims (None: unreadable, or none)."""
    return max(claims, key=lambda c: c[0])[1] if claims else None

"""What the plugin remembers, so that DEL and GC work without prevResult and never take another pod's route.

Under `stateDir/`:
  networks/NETWORK/attachments/CONTAINER@IFNAME.json  the shim and host prefixes of one attachment
  networks/NETWORK/ips/ADDRESS       which attachment owns the route to that pod address now
  locks/shim.SHIM, locks/nft         the flocks (per shim; the one nft table)
Files are written to a temporary name and renamed into place, so a crash leaves the old content or the new,
never half of one. An address can move to a new pod while the old one's DEL or GC is still to come (IPAM
reuse); the ownership file is what keeps that late DEL from deleting the new pod's route.
"""
import ipaddress
import json
import os

from .config import IFNAME
from .errors import IOFailure


def owner_id(container_id, ifname):
    # '@' can occur in neither a container ID nor an interface name (both are validated).
    return f"{container_id}@{ifname}"


class Store:
    def __init__(self, state_dir, network, dry_run=False):
        self.top = state_dir
        self.dir = os.path.join(state_dir, "networks", network)
        self.dry_run = dry_run  # a dry run changes no state (it may create the lock files)

    # --- attachments ---
    def load(self, owner):
        """The record of an attachment, or None when there is none or it is not one we could have written."""
        return _valid_record(_read_json(os.path.join(self.dir, "attachments", owner + ".json")))

    def save(self, owner, record):
        self._write(os.path.join(self.dir, "attachments", owner + ".json"), json.dumps(record))

    def remove(self, owner):
        self._unlink(os.path.join(self.dir, "attachments", owner + ".json"))

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
        try:
            networks = os.listdir(os.path.join(self.top, "networks"))
        except FileNotFoundError:
            return False
        for network in networks:
            other = Store(self.top, network)
            for owner in other.owners():
                record = other.load(owner) if owner != besides or other.dir != self.dir else None
                if record and record["bridge"] == shim and record["viaHost"]:
                    return True
        return False

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

    def lock_path(self, shim=None):
        """The lock of a shim, shared by every network that uses it; without a shim, the nft table's."""
        locks = os.path.join(self.top, "locks")
        try:
            os.makedirs(locks, mode=0o700, exist_ok=True)
        except OSError as e:
            raise IOFailure(f"cannot create the lock directory {locks}", str(e)) from None
        return os.path.join(locks, f"shim.{shim}" if shim else "nft")

    # --- files ---
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


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _valid_record(record):
    """Records are ours, but what they hold ends up in commands: check every field as strictly as input."""
    try:
        names_ok = all(IFNAME.match(record[key]) for key in ("bridge", "master", "ifname"))
        prefixes_ok = all(ipaddress.ip_network(p) for p in record["prefixes"])
        via_ok = all(len(pair) == 2 and ipaddress.ip_network(pair[0]) and ipaddress.ip_address(pair[1])
                     for pair in record["viaHost"])
        on_link_ok = all(isinstance(p, str) and ipaddress.ip_network(p) for p in record.get("onLink", []))  # or absent
    except (KeyError, TypeError, ValueError):
        return None
    return record if names_ok and prefixes_ok and via_ok and on_link_ok else None

"""What the plugin remembers per attachment, so that DEL and GC work without prevResult.

One small JSON file per (network, container, ifname), written to a temporary file and renamed into place,
so a crash leaves either the old record or the new one, never half of one.
"""
import json
import os

from .errors import IOFailure


class Store:
    def __init__(self, state_dir, network, dry_run=False):
        self.dir = os.path.join(state_dir, network)
        self.dry_run = dry_run  # a dry run changes nothing on the host, state included

    def _path(self, container_id, ifname):
        # '@' can occur in neither a container ID nor an interface name (both are validated).
        return os.path.join(self.dir, f"{container_id}@{ifname}.json")

    def load(self, container_id, ifname):
        """The record, or None when there is none or it is unreadable (a crash mid-write cannot cause that)."""
        try:
            with open(self._path(container_id, ifname), encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def save(self, container_id, ifname, record):
        if self.dry_run:
            return
        path = self._path(container_id, ifname)
        temp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            with open(temp, "w", encoding="utf-8") as f:
                json.dump(record, f)
            os.replace(temp, path)
        except OSError as e:
            raise IOFailure(f"cannot write state {path}", str(e)) from None

    def remove(self, container_id, ifname):
        if self.dry_run:
            return
        try:
            os.unlink(self._path(container_id, ifname))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise IOFailure("cannot remove state", str(e)) from None

    def lock_path(self, shim):
        """One lock per shim, shared by every network that uses it."""
        top = os.path.dirname(self.dir)
        try:
            os.makedirs(top, mode=0o700, exist_ok=True)
        except OSError as e:
            raise IOFailure(f"cannot create state directory {top}", str(e)) from None
        return os.path.join(top, f"{shim}.lock")

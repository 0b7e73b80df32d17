"""What route and host-local keep on disk in a bed, read as the plugin reads it (route's records through
lib/cniroute's Store)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cniroute.store import Store


def attachments(state_dir: Path, network: str) -> list[str]:
    """route's records of *network* under *state_dir*: `<container ID>@<ifname>` of each attachment it remembers
    (a record route cannot read is listed as `unreadable <file>`, so a test never misses it)."""
    return sorted(record.owner if record else f"unreadable {stem}.json"
                  for stem, record in Store(str(state_dir)).entries(network))


def leases(ipam_dir: Path, network: str) -> list[str]:
    """The addresses host-local has handed out on *network* (its dataDir *ipam_dir*): its files named by address."""
    return sorted(path.name for path in (Path(ipam_dir) / network).glob("*") if _is_address(path.name))


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

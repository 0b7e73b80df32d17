"""What a doctor check says: OK, WARN or FAIL, what the node has, the lines that fix it, and the section of
docs/doctor.md that explains it, which each check names where it is made."""
import shlex
from collections import namedtuple

OK, WARN, FAIL = "OK", "WARN", "FAIL"
GRAVITY = (OK, WARN, FAIL)

class Docs:
    """The sections of docs/doctor.md that explain the checks: each Check names its own where it is made (PAGE, the
    page alone, for a check no section explains)."""

    PAGE = "docs/doctor.md"
    PROGRAMS = f"{PAGE}#the-nodes-programs"
    KUBE_PROXY = f"{PAGE}#kube-proxy"
    CONFIGS = f"{PAGE}#configs-and-records"
    MASTER = f"{PAGE}#the-master"
    SHIM = f"{PAGE}#the-shim"
    ADDRESSES = f"{PAGE}#the-shims-addresses"
    SYSCTLS = f"{PAGE}#the-shims-sysctls"
    MANAGERS = f"{PAGE}#network-managers"
    RP_FILTER_ARP_IGNORE = f"{PAGE}#rp_filter-and-arp_ignore"
    FORWARDING_MASQUERADE = f"{PAGE}#routeviahost-forwarding-and-the-masquerade-rule"
    POD_ADDRESSES = f"{PAGE}#pod-addresses"
    SECTIONS = (PROGRAMS, KUBE_PROXY, CONFIGS, MASTER, SHIM, ADDRESSES, SYSCTLS, MANAGERS, RP_FILTER_ARP_IGNORE,
                FORWARDING_MASQUERADE, POD_ADDRESSES)


class Check(namedtuple("Check", "subject verdict found fix docs")):
    """One line of the report: what was checked, OK/WARN/FAIL, what the node has, the lines that fix it, and where
    docs/ explains it (one of Docs.SECTIONS, or Docs.PAGE)."""

    __slots__ = ()


def ok(subject, found, docs):
    return Check(subject, OK, found, (), docs)


def worst(verdicts):
    return max(verdicts, key=GRAVITY.index, default=OK)


class Section(namedtuple("Section", "scope title checks")):
    """The checks of the node (scope "node") or of one network ("network NAME")."""

    __slots__ = ()


def ip_command(args):
    """A fix line: `ip ARGS` exactly as it would be run."""
    return shlex.join(["ip", *args])


def nft_command(args):
    return shlex.join(["nft", *args])

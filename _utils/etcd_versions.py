"""
The rules of a rolling etcd upgrade (etcd's own, docs/operations.md "Rolling upgrade"): what
``salt-run etcd.upgrade`` may do to a cluster, decided before anything changes.

- one minor version at a time, never a major one; never down (the cluster version does not
  go back: the way back is the pre-upgrade snapshot);
- the newest patches of the old minor first where etcd requires them: 3.5.32+ before 3.6,
  3.6.11+ before 3.7;
- not a release that made MemberList admin-only (3.4.42, 3.5.28, 3.6.9) where users other
  than root exist: patroni's user would lose its member list;
- before 3.6: v2 off (``enable_v2``; 3.6 has no v2 store) and etcd's ``check v2store`` passed.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_errors as errors  # noqa: E402
from etcd_settings import version_parts  # noqa: E402
from etcd_validate import version_problem  # noqa: E402

__virtualname__ = "etcd_versions"

# Releases that made MemberList admin-only (patroni's own user breaks on them).
BAD_PATCHES = {(3, 4, 42): "3.4.42", (3, 5, 28): "3.5.28", (3, 6, 9): "3.6.9"}
# The old minor's patch a cluster must run before it moves to the next minor.
FLOORS = {(3, 6): (3, 5, 32), (3, 7): (3, 6, 11)}
# The first minor without the v2 store.
WITHOUT_V2 = (3, 6)


def __virtual__():
    return __virtualname__


def _text(parts):
    return ".".join(str(p) for p in parts)


def _parts(version, what):
    problem = version_problem(version, what)
    if problem:
        raise errors.EtcdUnsafe(problem)
    return version_parts(version)


def package_version(version):
    """The package version to install for ``version``: as given when it is a package's
    ("3.5.30-2"), else every package of that etcd version ("3.5.30*", the newest wins)."""
    text = str(version)
    return text if "-" in text else text + "*"


def plan(target, running, cluster_version, non_root_users=False, enable_v2=False,
         v2store_checked=False):
    """
    What an upgrade to ``target`` does: {"target": "3.5.30", "members": [names to upgrade,
    in the order given], "minor": whether the cluster version moves}. Raises EtcdUnsafe,
    naming the rule, when etcd's rules refuse it.

    running
        {member name: the etcd version it runs} (every voting member).
    cluster_version
        The cluster version etcd reports ("3.4.0").
    non_root_users
        Whether etcd has users other than root.
    enable_v2, v2store_checked
        The cluster serves v2 (pillar ``enable_v2``); etcd's v2 store check passed.
    """
    wanted = _parts(target, "version")
    have = {name: _parts(version, "the version {} runs".format(name))
            for name, version in running.items()}
    if not have:
        raise errors.EtcdUnsafe("no voting member reports its version: nothing to upgrade")
    cluster = version_parts(cluster_version) or min(have.values())
    newest, oldest = max(have.values()), min(have.values())
    if wanted[0] != cluster[0]:
        raise errors.EtcdUnsafe("{} is another major version than the cluster's {}: refused".format(
            _text(wanted), _text(cluster[:2])))
    if wanted < newest:
        raise errors.EtcdUnsafe(
            "{} is older than {} (which a member runs): a downgrade is refused (the cluster "
            "version never goes back; the way back is the snapshot taken before the "
            "upgrade)".format(_text(wanted), _text(newest)))
    if wanted[:2] > (cluster[0], cluster[1] + 1):
        raise errors.EtcdUnsafe(
            "{} skips a minor version (the cluster is at {}): one minor at a time, upgrade to "
            "the newest {}.{} first".format(_text(wanted), _text(cluster[:2]), cluster[0],
                                            cluster[1] + 1))
    minor = wanted[:2] > cluster[:2]
    floor = FLOORS.get(wanted[:2])
    if minor and floor and oldest < floor:
        raise errors.EtcdUnsafe(
            "{} needs every member at {} or later first (a member runs {}): upgrade to the "
            "newest {}.{} patch first".format(_text(wanted), _text(floor), _text(oldest),
                                              floor[0], floor[1]))
    if wanted in BAD_PATCHES and non_root_users:
        raise errors.EtcdUnsafe(
            "etcd {} made MemberList admin-only: patroni's user (a user other than root) "
            "would lose its member list; pick another patch".format(BAD_PATCHES[wanted]))
    if wanted[:2] >= WITHOUT_V2 > cluster[:2]:
        if enable_v2:
            raise errors.EtcdUnsafe("etcd {} has no v2 store: turn enable_v2 off first (and "
                                    "move vip-manager 1.x to 2.x, which reads v3)".format(
                                        _text(wanted[:2])))
        if not v2store_checked:
            raise errors.EtcdUnsafe("before {}: etcdutl check v2store must pass on the members "
                                    "first".format(_text(wanted[:2])))
    return {"target": _text(wanted), "minor": minor,
            "members": [name for name, parts in have.items() if parts != wanted]}

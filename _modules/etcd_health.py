"""
Health on Salt's event bus (what ``juju status`` gives charm users): ``etcd_health.watch``,
run by a schedule on every member (``etcd/health.sls``), looks at the cluster and fires an
event when what it sees changes, so that a reactor can act:

- ``etcd/<cluster>/health/healthy`` or ``etcd/<cluster>/health/unhealthy``, with data
  ``{cluster, minion, facts, previous}``: ``facts`` are ``healthy``, ``leader``,
  ``members_down`` (member names), ``alarms``, ``certificates_expiring`` (this member's
  certificates inside the renewal window), ``error`` (what the layer says is wrong).

Each member reports what it sees (a member cut off from the others says so too); the last
facts it reported are kept in its cachedir, so an unchanged cluster fires nothing.
"""

import datetime
import json
import os

from salt.exceptions import CommandExecutionError

__virtualname__ = "etcd_health"

TAG = "etcd/{cluster}/health/{state}"
CERTIFICATES = ("peer_cert_file", "server_cert_file", "client_cert_file")


def __virtual__():
    if "etcd_membership.health" not in __utils__:
        return (False, "etcd_health needs the formula's _utils (etcd_membership) and etcd3gw")
    return __virtualname__


def _state_file(cluster):
    return os.path.join(__opts__["cachedir"], "etcd-formula", "health-{}.json".format(cluster))


def facts_of(summary, certificates_expiring):
    """What the event says of a health summary (etcd_membership.health): stable values only
    (no timings), so that an unchanged cluster compares equal."""
    members = summary.get("members") or {}
    return {
        "healthy": bool(summary.get("healthy")),
        "leader": summary.get("leader"),
        "members_down": sorted(name for name, m in members.items()
                               if not m.get("healthy") and not m.get("is_learner")),
        "alarms": sorted(summary.get("alarms") or []),
        "certificates_expiring": sorted(certificates_expiring),
        "error": summary.get("error"),
    }


def _certificates_expiring(settings, now=None):
    """This member's certificates with fewer than pki:days_remaining days left."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    limit = now + datetime.timedelta(days=settings["pki"]["days_remaining"])
    found = []
    for key in CERTIFICATES:
        path = settings["paths"][key]
        try:
            not_after = __utils__["etcd_pki.file_not_after"](path)
        except (OSError, ValueError):
            found.append("{} (unreadable)".format(os.path.basename(path)))
            continue
        if not_after < limit:
            found.append("{} ({:%Y-%m-%d})".format(os.path.basename(path), not_after))
    return found


def watch():
    """
    Look at this member's cluster and fire ``etcd/<cluster>/health/healthy|unhealthy`` when
    what it sees changed since the last look (and on the first): {fired: tag or None, facts}.
    Meant for a schedule (etcd/health.sls); a minion in no cluster returns {}.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_health.watch
    """
    settings = __salt__["etcd_cluster.settings"]()
    if not settings:
        return {}
    try:
        summary = __salt__["etcd_cluster.health"]()
    except CommandExecutionError as exc:
        summary = {"healthy": False, "error": str(exc)}
    facts = facts_of(summary, _certificates_expiring(settings))
    path = _state_file(settings["name"])
    try:
        with open(path) as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        previous = None
    if previous == facts:
        return {"fired": None, "facts": facts}
    tag = TAG.format(cluster=settings["name"], state="healthy" if facts["healthy"] else "unhealthy")
    if not __salt__["event.send"](tag, {"cluster": settings["name"], "minion": __opts__["id"],
                                        "facts": facts, "previous": previous}):
        raise CommandExecutionError("the event {} was not sent".format(tag))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    __utils__["etcd_files.replace"](path, json.dumps(facts, sort_keys=True), 0o600)
    return {"fired": tag, "facts": facts}

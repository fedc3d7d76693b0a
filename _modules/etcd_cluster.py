"""
Manage an etcd cluster's membership and read its health: the Salt equivalent of
``etcdctl member ...``, ``etcdctl endpoint health|status`` and ``etcdctl move-leader``.

The virtual name is ``etcd_cluster`` (Salt's own ``etcd`` module keeps its name).

Connection arguments, accepted by every function that talks to etcd:

endpoints
    Client URLs, a list or a comma-separated string. Default: the client URLs of the
    members of this minion's cluster in pillar ``etcd:clusters`` (or of ``cluster``).
    Learners and dead members among them are skipped over.
cluster
    Name of a cluster in pillar ``etcd:clusters`` whose members are the endpoints
    (for a runner or a minion that is no member).
ca_file, cert_file, key_file
    Default: ``/etc/etcd/pki/ca.crt``, ``/etc/etcd/pki/client.{crt,key}``.
timeout
    Seconds per request (default 5).

Every failure raises ``CommandExecutionError`` with etcd's own message, or
``SaltInvocationError`` for bad arguments.
"""

import logging
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "etcd_cluster"

CONNECTION_ARGS = ("endpoints", "cluster", "ca_file", "cert_file", "key_file", "timeout")


def __virtual__():
    if "etcd_client.connect" not in __utils__:
        return (False, "etcd_cluster needs the etcd_client util and the etcd3gw Python package")
    return __virtualname__


# -- pure decisions (no I/O) ----------------------------------------------------------------------


def _quorum(voter_count):
    return voter_count // 2 + 1


def _voters(members):
    return [m for m in members if not m["is_learner"]]


def _label(member):
    """A member as people know it: its name, or its ID and peer URLs before it first started."""
    if member.get("name"):
        return member["name"]
    return "{} ({}, never started)".format(member["id"], ",".join(member["peer_urls"]))


def _find_member(members, ident):
    """The member whose ID (hex), name or peer URL is ``ident``, or None."""
    ident = str(ident)
    for member in members:
        if ident in (member["id"], member["name"]) or ident in member["peer_urls"]:
            return member
    return None


def _member_with_peer_urls(members, peer_urls):
    wanted = set(peer_urls)
    for member in members:
        if wanted & set(member["peer_urls"]):
            return member
    return None


def _add_refusal(members, peer_urls, learner):
    """
    Why adding a member with ``peer_urls`` would be wrong now, or None. A member with
    these peer URLs is not a refusal (the add already happened).
    """
    if _member_with_peer_urls(members, peer_urls):
        return None
    unstarted = [m for m in members if not m["started"]]
    if unstarted:
        return "member {} was added but never started: start it or remove it first".format(
            _label(unstarted[0])
        )
    learners = [m for m in members if m["is_learner"]]
    if learner and learners:
        # etcd 3.4 and 3.5 allow one learner at a time
        return "the cluster already has a learner, {}: promote or remove it first".format(
            _label(learners[0])
        )
    return None


def _initial_cluster(members, new_member_id, new_member_name):
    """``initial-cluster`` for a new member: every member, itself included, by peer URL."""
    parts = []
    for member in members:
        name = new_member_name if member["id"] == new_member_id else member["name"]
        if not name:
            raise CommandExecutionError(
                "member {} has never started, so its name is unknown and the new member "
                "cannot be given the member list: start or remove it".format(_label(member))
            )
        parts.extend("{}={}".format(name, url) for url in member["peer_urls"])
    return ",".join(parts)


def _removal_refusal(members, target_id, healthy_ids):
    """
    Why removing member ``target_id`` would break the cluster, or None if it is safe.
    ``healthy_ids``: IDs of the members that answer a linearizable read now.
    """
    target = next(m for m in members if m["id"] == target_id)
    if target["is_learner"]:
        return None  # a learner has no vote
    voters = _voters(members)
    if len(voters) == 1:
        return "{} is the last voting member: removing it destroys the cluster".format(
            _label(target)
        )
    if len(voters) == 2:
        return (
            "removing a member of a 2-member cluster is unsafe: if the other one fails "
            "during the change, the cluster cannot recover"
        )
    remaining = [m for m in voters if m["id"] != target_id]
    healthy_remaining = [m for m in remaining if m["id"] in healthy_ids]
    needed = _quorum(len(remaining))
    if len(healthy_remaining) < needed:
        return (
            "removing {} would lose quorum: {} of the {} remaining voting members are "
            "healthy, {} are needed".format(
                _label(target), len(healthy_remaining), len(remaining), needed
            )
        )
    return None


def _learner_caught_up(leader_raft_index, learner_status):
    """
    Whether a learner may be promoted: it answers status (it runs) and its raft index has
    reached the leader's, read before the learner's.
    """
    return learner_status is not None and learner_status["raft_index"] >= leader_raft_index


def _new_leader_candidate(members, leader_id, healthy_ids, statuses):
    """The healthy voter, other than the leader, furthest ahead in the raft log; or None."""
    candidates = [
        m
        for m in _voters(members)
        if m["id"] != leader_id and m["id"] in healthy_ids and m["started"]
    ]
    if not candidates:
        return None
    return max(
        candidates, key=lambda m: (statuses.get(m["id"]) or {}).get("raft_index", -1)
    )


def _summarise_health(members, member_health, alarms, leader_id):
    """
    The cluster's health from each member's: quorum, leader, learners, alarms. ``healthy``
    means every voter answers, there is a leader and no alarm.
    """
    voters = _voters(members)
    healthy_voters = [m for m in voters if (member_health.get(m["id"]) or {}).get("healthy")]
    needed = _quorum(len(voters))
    leader = next((m for m in members if m["id"] == leader_id), None)
    return {
        "healthy": bool(voters)
        and len(healthy_voters) == len(voters)
        and leader is not None
        and not alarms,
        "quorum": {
            "voters": len(voters),
            "healthy_voters": len(healthy_voters),
            "needed": needed,
            "ok": len(healthy_voters) >= needed,
        },
        "leader": _label(leader) if leader else None,
        "learners": [_label(m) for m in members if m["is_learner"]],
        "alarms": ["{} on {}".format(a["alarm"], a["member_id"]) for a in alarms],
        "members": {
            _label(m): dict(member_health.get(m["id"]) or {}, id=m["id"], is_learner=m["is_learner"])
            for m in members
        },
    }


# -- connection -----------------------------------------------------------------------------------


def _pillar():
    return __salt__["config.get"]("etcd", {})


def _connect(connection_args):
    """An etcd client from the connection arguments, defaults filled in from pillar."""
    args = {k: v for k, v in connection_args.items() if not k.startswith("__")}
    unknown = sorted(set(args) - set(CONNECTION_ARGS))
    if unknown:
        raise SaltInvocationError(
            "unknown argument(s): {} (connection arguments: {})".format(
                ", ".join(unknown), ", ".join(CONNECTION_ARGS)
            )
        )
    endpoints = args.get("endpoints")
    if not endpoints:
        endpoints = _default_endpoints(args.get("cluster"))
    tls = __utils__["etcd_pillar.client_tls_files"]()
    return __utils__["etcd_client.connect"](
        endpoints,
        ca_file=args.get("ca_file") or tls["ca_file"],
        cert_file=args.get("cert_file") or tls["cert_file"],
        key_file=args.get("key_file") or tls["key_file"],
        timeout=float(args.get("timeout") or 5),
    )


def _default_endpoints(cluster_name):
    pillar = _pillar()
    if cluster_name:
        try:
            cluster = __utils__["etcd_pillar.cluster_named"](pillar, cluster_name)
        except KeyError as exc:
            raise SaltInvocationError(exc.args[0])
    else:
        cluster = __utils__["etcd_pillar.cluster_of"](pillar, __opts__["id"])
        if cluster is None:
            raise SaltInvocationError(
                "minion {} is a member of no cluster in pillar etcd:clusters: "
                "pass endpoints= or cluster=".format(__opts__["id"])
            )
    endpoints = __utils__["etcd_pillar.client_urls"](cluster)
    if not endpoints:
        raise SaltInvocationError("etcd cluster {} has no members in pillar".format(cluster["name"]))
    return endpoints


def _leader_status(client, members):
    """The status of the leader (asked of the members in turn), or raise."""
    failures = []
    for member in members:
        for url in member["client_urls"]:
            try:
                status = client.status(url)
            except CommandExecutionError as exc:
                failures.append(str(exc))
                continue
            if status["leader"] == status["id"]:
                return status
            leader = next((m for m in members if m["id"] == status["leader"]), None)
            if leader and leader["client_urls"]:
                try:
                    return client.status(leader["client_urls"][0])
                except CommandExecutionError as exc:
                    failures.append(str(exc))
    raise CommandExecutionError(
        "no member knows a leader: " + ("; ".join(failures) or "no member has a client URL")
    )


def _member_statuses(client, members):
    """{member id: status or None} and {member id: error} of the started members."""
    statuses, errors = {}, {}
    for member in members:
        statuses[member["id"]] = None
        if not member["client_urls"]:
            errors[member["id"]] = "not started"
            continue
        try:
            statuses[member["id"]] = client.status(member["client_urls"][0])
        except CommandExecutionError as exc:
            errors[member["id"]] = str(exc)
    return statuses, errors


def _member_health(client, members):
    """{member id: health} for every member (``not started`` for the unstarted)."""
    health = {}
    for member in members:
        if not member["client_urls"]:
            health[member["id"]] = {
                "endpoint": None, "healthy": False, "error": "not started", "took": 0.0
            }
        else:
            health[member["id"]] = client.health(member["client_urls"][0])
    return health


def _require_member(members, ident):
    member = _find_member(members, ident)
    if member is None:
        raise CommandExecutionError(
            "no etcd member {} (members: {})".format(ident, ", ".join(_label(m) for m in members))
        )
    return member


# -- reading --------------------------------------------------------------------------------------


def settings(minion_id=None):
    """
    The resolved settings of this minion's etcd member (or ``minion_id``'s), from pillar
    ``etcd``: its cluster's settings merged over the defaults, plus ``member_name``,
    ``peer_url``, ``client_url``, ``endpoints``, ``initial_cluster``,
    ``initial_cluster_token``, ``pki`` and ``paths``. Empty when the minion is in no cluster.

    minion_id
        Default: this minion's ID.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.settings
        salt master etcd_cluster.settings minion_id=h2
    """
    return __utils__["etcd_pillar.member_settings"](_pillar(), minion_id or __opts__["id"]) or {}


def members(**connection_args):
    """
    The cluster's members, as ``etcdctl member list`` shows them: ``id`` (hex), ``name``,
    ``peer_urls``, ``client_urls``, ``is_learner``, ``started``.

    connection_args
        See the module documentation (``endpoints``, ``cluster``, ``ca_file``, ...).

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.members
        salt master etcd_cluster.members cluster=etcd
    """
    return _connect(connection_args).members()


def leader(**connection_args):
    """
    The leader: its member entry, with the ``endpoint`` that answered as leader.

    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.leader
    """
    client = _connect(connection_args)
    current = client.members()
    status = _leader_status(client, current)
    member = _require_member(current, status["id"])
    return dict(member, endpoint=status["endpoint"])


def status(**connection_args):
    """
    Each member's status, by name (``etcdctl endpoint status`` plus alarms): ``id``,
    ``endpoint``, ``version``, ``db_size``, ``leader``, ``is_leader``, ``raft_index``,
    ``raft_term``, ``raft_applied_index``, ``is_learner``, ``alarms``, and ``error`` when
    the member does not answer.

    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.status
    """
    client = _connect(connection_args)
    current = client.members()
    statuses, errors = _member_statuses(client, current)
    alarms = client.alarms()
    report = {}
    for member in current:
        entry = dict(statuses[member["id"]] or {"id": member["id"], "is_learner": member["is_learner"]})
        entry["is_leader"] = entry.get("leader") == member["id"]
        entry["alarms"] = [a["alarm"] for a in alarms if a["member_id"] == member["id"]]
        entry["error"] = errors.get(member["id"])
        report[_label(member)] = entry
    return report


def health(**connection_args):
    """
    The cluster's health: ``healthy`` (every voter serves linearizable reads, a leader, no
    alarm), ``quorum`` (voters, healthy voters, needed, ok), ``leader``, ``learners``,
    ``alarms``, and per member ``healthy``, ``error``, ``took`` (``etcdctl endpoint health``).
    A cluster that cannot be reached at all is reported unhealthy with an ``error``.

    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.health
        salt-run salt.cmd etcd_cluster.health cluster=etcd
    """
    client = _connect(connection_args)
    try:
        current = client.members()
    except CommandExecutionError as exc:
        return {"healthy": False, "error": str(exc), "quorum": {"ok": False}, "members": {}}
    member_health = _member_health(client, current)
    try:
        alarms = client.alarms()
        leader_id = _leader_status(client, current)["id"]
    except CommandExecutionError as exc:
        summary = _summarise_health(current, member_health, [], None)
        summary.update(healthy=False, error=str(exc))
        return summary
    summary = _summarise_health(current, member_health, alarms, leader_id)
    summary["error"] = None
    return summary

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
request_timeout
    Seconds per request (default 5).

Every failure raises ``CommandExecutionError`` with etcd's own message, or
``SaltInvocationError`` for bad arguments.
"""

import logging
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "etcd_cluster"

CONNECTION_ARGS = ("endpoints", "cluster", "ca_file", "cert_file", "key_file", "request_timeout")


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
        timeout=float(args.get("request_timeout") or 5),
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


def validate(minion_id=None):
    """
    Check pillar ``etcd`` (and that this minion, or ``minion_id``, is in a cluster): raise
    naming every problem at once; otherwise return ``{"valid": True, "warnings": [...]}``.

    minion_id
        Default: this minion's ID. Pass ``minion_id=""`` to check the pillar alone.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.validate
    """
    if minion_id is None:
        minion_id = __opts__["id"]
    errors, warnings = __utils__["etcd_pillar.validate"](_pillar(), minion_id=minion_id or None)
    if errors:
        raise CommandExecutionError(
            "pillar etcd has {} problem(s):\n- {}".format(len(errors), "\n- ".join(errors)),
            info={"errors": errors, "warnings": warnings},
        )
    return {"valid": True, "warnings": warnings}


# -- membership -----------------------------------------------------------------------------------

# etcd's answers when the member was added already: the same peer URLs one second or more
# later, or the same second (the new member's ID derives from its peer URLs and the time).
_ALREADY_ADDED = ("etcdserver: Peer URLs already exists", "etcdserver: member ID already exist")
_NOT_A_LEARNER = "etcdserver: can only promote a learner member"


def _peer_url_list(peer_urls):
    if isinstance(peer_urls, str):
        peer_urls = [u.strip() for u in peer_urls.split(",") if u.strip()]
    if not peer_urls or not all(
        isinstance(u, str) and u.startswith(("https://", "http://")) for u in peer_urls
    ):
        raise SaltInvocationError(
            "peer_urls: {!r}: expected one or more http(s)://host:port URLs".format(peer_urls)
        )
    return list(peer_urls)


def _added(client, name, member, added):
    current = client.members()
    try:
        initial_cluster = __utils__["etcd_pillar.joining_initial_cluster"](
            current, name, member["peer_urls"][0]
        )
    except ValueError as exc:
        raise CommandExecutionError(str(exc))
    return {
        "id": member["id"],
        "name": name,
        "peer_urls": member["peer_urls"],
        "is_learner": member["is_learner"],
        "started": member["started"],
        "added": added,
        "initial_cluster": initial_cluster,
        "initial_cluster_state": "existing",
        "members": current,
    }


def member_add(name, peer_urls, learner=True, timeout=60, **connection_args):
    """
    Add a member: a learner (default), or a voter with ``learner=False``. Idempotent: when a
    member has these peer URLs already, that member is returned (``added: False``).

    Returns ``id`` (hex), ``name``, ``peer_urls``, ``is_learner``, ``started``, ``added``,
    ``refusals`` (etcd's passing refusals retried), and what the new member must be started
    with: ``initial_cluster`` (every member, itself included) and ``initial_cluster_state``
    (``existing``).

    Refuses while another member was added but never started, and a second learner.

    name
        The new member's etcd name (``<cluster>-<seq>``).
    peer_urls
        Its peer URL(s), a list or comma-separated.
    learner
        Add it as a learner, to be promoted once caught up (default True).
    timeout
        Seconds to retry etcd's passing refusals ("unhealthy cluster") (default 60).
    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.member_add etcd-4 https://10.77.0.14:2380
        salt h1 etcd_cluster.member_add etcd-4 https://10.77.0.14:2380 learner=False
    """
    if not name:
        raise SaltInvocationError("name: the new member's etcd name is required")
    peer_urls = _peer_url_list(peer_urls)
    client = _connect(connection_args)
    current = client.members()
    existing = _member_with_peer_urls(current, peer_urls)
    if existing:
        return _added(client, name, existing, added=False)
    refusal = _add_refusal(current, peer_urls, learner)
    if refusal:
        raise CommandExecutionError(refusal)
    try:
        member = client.member_add(peer_urls, learner=learner, deadline=float(timeout))["member"]
    except CommandExecutionError as exc:
        # a request that timed out may have been applied: the retry finds it done
        if getattr(exc, "message", None) not in _ALREADY_ADDED:
            raise
        member = _member_with_peer_urls(client.members(), peer_urls)
        if member is None:
            raise
        return _added(client, name, member, added=False)
    result = _added(client, name, member, added=True)
    result["refusals"] = list(client.last_retries["refusals"])
    return result


def member_promote(member, timeout=120, **connection_args):
    """
    Promote a learner to a voting member once it is started and caught up: its raft index
    has reached the leader's (checked here, since etcd 3.4's own check can pass for a
    learner that never started), then retries etcd's "not in sync" and "unhealthy cluster"
    refusals, all within ``timeout`` seconds. A voting member is left as it is
    (``promoted: False``).

    member
        The learner's ID (hex), name or peer URL.
    timeout
        Seconds to wait for it to catch up and for etcd to accept (default 120).
    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.member_promote etcd-4
    """
    client = _connect(connection_args)
    started = time.monotonic()
    give_up_at = started + float(timeout)
    target = _require_member(client.members(), member)
    if not target["is_learner"]:
        return {"id": target["id"], "name": target["name"], "promoted": False, "waited": 0.0}
    caught_up = _wait_caught_up(client, target["id"], give_up_at)
    try:
        after = client.member_promote(
            target["id"], deadline=max(give_up_at - time.monotonic(), 0.0)
        )
    except CommandExecutionError as exc:
        if getattr(exc, "message", None) != _NOT_A_LEARNER:
            raise
        # promoted meanwhile by someone else: it is as wanted
        target = _require_member(client.members(), target["id"])
        if target["is_learner"]:
            raise
        return {"id": target["id"], "name": target["name"], "promoted": False, "waited": 0.0}
    return {
        "id": target["id"],
        "name": _require_member(after, target["id"])["name"],
        "promoted": True,
        "waited": round(time.monotonic() - started, 3),
        "caught_up": caught_up,
        "refusals": list(client.last_retries["refusals"]),
    }


def _wait_caught_up(client, member_id, give_up_at):
    """Wait until learner ``member_id`` runs and has the leader's raft index; return both."""
    why = "it never answered"
    while True:
        current = client.members()
        learner = _require_member(current, member_id)
        if not learner["is_learner"]:
            return None
        if not learner["started"]:
            why = "it has not started (start it with the initial_cluster member_add returned)"
        else:
            leader_index = _leader_status(client, current)["raft_index"]
            try:
                learner_status = client.status(learner["client_urls"][0])
            except CommandExecutionError as exc:
                learner_status = None
                why = "it does not answer: {}".format(exc)
            if _learner_caught_up(leader_index, learner_status):
                return {"learner": learner_status["raft_index"], "leader": leader_index}
            if learner_status is not None:
                why = "its raft index is {}, the leader's {}".format(
                    learner_status["raft_index"], leader_index
                )
        if time.monotonic() >= give_up_at:
            raise CommandExecutionError(
                "learner {} has not caught up with the leader in time: {}".format(
                    _label(learner), why
                )
            )
        time.sleep(0.25)


def _healthy_ids(client, members):
    """IDs of the members that answer a linearizable read now."""
    return {mid for mid, h in _member_health(client, members).items() if h["healthy"]}


def removal_check(member, **connection_args):
    """
    Whether removing a member now is safe, without removing it: the same checks as
    ``member_remove`` (quorum kept with the healthy voters, not 2 -> 1, not the last voter).
    Returns ``id``, ``name``, ``is_learner``, ``safe`` and ``refusal`` (why not, or None).

    member
        The member's ID (hex), name or peer URL.
    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.removal_check etcd-3
    """
    client = _connect(connection_args)
    current = client.members()
    target = _require_member(current, member)
    refusal = _removal_refusal(current, target["id"], _healthy_ids(client, current))
    return {
        "id": target["id"],
        "name": target["name"],
        "is_learner": target["is_learner"],
        "safe": refusal is None,
        "refusal": refusal,
    }


def member_remove(member, force=False, timeout=60, **connection_args):
    """
    Remove a member. Refuses what would lose quorum (too few healthy voters would remain),
    the last voter, and removing one of 2 voters, unless ``force=True``. When the member is
    the leader, leadership is handed to the healthy voter furthest ahead first, so the
    cluster is not leaderless for an election timeout.

    member
        The member's ID (hex), name or peer URL.
    force
        Remove it even when it is unsafe (default False).
    timeout
        Seconds to retry etcd's passing refusals (default 60).
    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.member_remove etcd-3
        salt h1 etcd_cluster.member_remove 8e9e05c52164694d force=True
    """
    client = _connect(connection_args)
    current = client.members()
    target = _require_member(current, member)
    healthy_ids = _healthy_ids(client, current)
    refusal = _removal_refusal(current, target["id"], healthy_ids)
    if refusal and not force:
        raise CommandExecutionError(refusal + " (force=True removes it anyway)")
    moved_to = None
    if not target["is_learner"] and len(_voters(current)) > 1:
        try:
            leader_status = _leader_status(client, current)
        except CommandExecutionError:
            if not force:
                raise
            leader_status = None
        if leader_status and leader_status["id"] == target["id"]:
            moved_to = _move_leadership(client, current, leader_status, None, healthy_ids)
    remaining = client.member_remove(target["id"], deadline=float(timeout))
    return {
        "id": target["id"],
        "name": target["name"],
        "removed": True,
        "leader_moved_to": moved_to,
        "members": remaining,
    }


def _move_leadership(client, current, leader_status, target, healthy_ids):
    """Hand leadership to ``target`` (or the best healthy voter); the new leader's label."""
    if target is None:
        statuses, _ = _member_statuses(client, current)
        target = _new_leader_candidate(current, leader_status["id"], healthy_ids, statuses)
        if target is None:
            raise CommandExecutionError(
                "no healthy voting member to hand leadership to from {}".format(
                    _label(_require_member(current, leader_status["id"]))
                )
            )
    client.move_leader(target["id"], leader_status["endpoint"])
    # etcd answers once the transfer is done; check it with the new leader itself
    give_up_at = time.monotonic() + 10
    while client.status(target["client_urls"][0])["leader"] != target["id"]:
        if time.monotonic() >= give_up_at:
            raise CommandExecutionError("leadership did not move to {}".format(_label(target)))
        time.sleep(0.2)
    return _label(target)


def move_leader(member=None, **connection_args):
    """
    Hand leadership to ``member`` (default: the healthy voter furthest ahead), as
    ``etcdctl move-leader`` does. Nothing happens when it leads already (``moved: False``).

    member
        The new leader's ID (hex), name or peer URL.
    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.move_leader
        salt h1 etcd_cluster.move_leader etcd-2
    """
    client = _connect(connection_args)
    current = client.members()
    leader_status = _leader_status(client, current)
    old = _label(_require_member(current, leader_status["id"]))
    target = None
    if member is not None:
        target = _require_member(current, member)
        if target["is_learner"] or not target["started"]:
            raise CommandExecutionError(
                "{} cannot lead: it is a learner or has never started".format(_label(target))
            )
        if target["id"] == leader_status["id"]:
            return {"old": old, "new": old, "moved": False}
    new = _move_leadership(client, current, leader_status, target, _healthy_ids(client, current))
    return {"old": old, "new": new, "moved": True}


# -- keys -----------------------------------------------------------------------------------------


def put(key, value, **connection_args):
    """
    Set ``key`` to ``value`` (``etcdctl put``). Returns True.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.put a 10
    """
    _connect(connection_args).put(key, value)
    return True


def get(key, **connection_args):
    """
    The value of ``key`` (``etcdctl get``), or None when there is no such key (an
    unreachable cluster raises, so None means absent).

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.get a
    """
    return _connect(connection_args).get(key)


def delete(key, **connection_args):
    """
    Delete ``key`` (``etcdctl del``): the number of keys deleted, 0 or 1.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.delete a
    """
    return _connect(connection_args).delete(key)

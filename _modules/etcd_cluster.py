"""
Manage an etcd cluster's membership and read its health: the Salt equivalent of
``etcdctl member ...``, ``etcdctl endpoint health|status`` and ``etcdctl move-leader``, and
this host's own etcd (``local_state``, ``purge``).

The virtual name is ``etcd_cluster`` (Salt's own ``etcd`` module keeps its name). It is
the CLI surface of the formula's membership layer (``_utils/etcd_membership.py``): the
rules live there, once.

Connection arguments, accepted by every function that talks to etcd:

endpoints
    Client URLs, a list or a comma-separated string. Default: the client URLs of the
    members of this minion's cluster in pillar ``etcd:clusters`` (or of ``cluster``).
    Learners and dead members among them are skipped over.
cluster
    Name of a cluster in pillar ``etcd:clusters`` whose members are the endpoints
    (for a minion that is no member).
ca_file, cert_file, key_file
    Default: ``/etc/etcd/pki/ca.crt``, ``/etc/etcd/pki/client.{crt,key}``.
request_timeout
    Seconds per request (default 5).

Every failure raises ``CommandExecutionError`` (the layer's typed errors are ones) with
etcd's own message or the formula's reason, or ``SaltInvocationError`` for bad arguments.
"""

import logging
import os
import re
import tarfile
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "etcd_cluster"

# systemd states in which etcd may hold or serve its data: never purged then.
ACTIVE_STATES = ("active", "activating", "reloading", "deactivating", "refreshing")
# A client URL as the formula writes one: scheme, an IP or host name, a port.
ENDPOINT_RE = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):[0-9]{1,5}$")
# What etcd keeps in its data dir: anything else there is not etcd's, and is never deleted.
DATA_ENTRIES = ("member",)
MEMBER_ENTRIES = ("wal", "snap")


def __virtual__():
    if "etcd_membership.connect" not in __utils__:
        return (False, "etcd_cluster needs the formula's _utils (etcd_membership) and etcd3gw")
    return __virtualname__


def _layer(function):
    return __utils__["etcd_membership." + function]


# -- settings -------------------------------------------------------------------------------------


def _pillar():
    return __salt__["config.get"]("etcd", {})


def settings(minion_id=None):
    """
    The resolved settings of this minion's etcd member (or ``minion_id``'s), from pillar
    ``etcd``: its cluster's settings merged over the defaults, plus ``member_name``,
    ``peer_url``, ``client_url``, ``endpoints``, ``initial_cluster``,
    ``initial_cluster_token``, ``pki`` and ``paths``. Empty when the minion is in no cluster.
    Resolved once per pillar and run (``__context__``).

    minion_id
        Default: this minion's ID.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.settings
        salt master etcd_cluster.settings minion_id=h2
    """
    pillar = _pillar()
    minion_id = minion_id or __opts__["id"]
    key = "etcd_cluster.settings:{}:{}".format(minion_id, __utils__["etcd_settings.digest"](pillar))
    if key not in __context__:
        # secrets (root_password, clients' passwords) hidden: this lands in job caches and SLS
        __context__[key] = __utils__["etcd_settings.masked"](
            __utils__["etcd_settings.member_settings"](pillar, minion_id) or {})
    return __context__[key]


def client_settings(cluster=None):
    """
    What ``etcd/clients/*.sls`` render from: the cluster's client specs by name and by kind
    (defaults from the formula), its voting ``endpoints`` (handed in pillar ``etcd_client``
    by ``salt-run etcd.refresh_endpoints``; else every pillar member), ``hosts``,
    ``metrics_port``, ``enable_v2``, ``pki``; and for each kind whether this minion is in
    its target (``here``).

    cluster
        Default: the handed one, else the first cluster with clients.

    CLI Example:

    .. code-block:: bash

        salt pg1 etcd_cluster.client_settings
    """
    handed = __salt__["config.get"]("etcd_client", {}) or {}
    found = __utils__["etcd_settings.client_settings"](
        _pillar(), cluster or handed.get("cluster"), handed.get("endpoints"))
    for spec in list(found.get("clients", {}).values()) + list(found.get("kinds", {}).values()):
        target, tgt_type = __utils__["etcd_settings.client_target"](spec)
        spec["here"] = bool(target) and bool(__salt__["match." + tgt_type](target))
    return __utils__["etcd_settings.masked"](found)


def pki_settings():
    """
    Pillar ``etcd:pki`` merged over the formula's defaults, with the master's admin
    certificate files (``admin_dir``, ``admin_tls``), for the CA server's SLS.

    CLI Example:

    .. code-block:: bash

        salt master etcd_cluster.pki_settings
    """
    pki = __utils__["etcd_settings.pki"](_pillar())
    return dict(pki, admin_dir=__utils__["etcd_settings.admin_dir"](pki),
                admin_tls=__utils__["etcd_settings.admin_tls_files"](pki))


def backup_settings():
    """
    Pillar ``etcd:backup`` merged over the formula's defaults, with the ``clusters`` whose
    snapshots it schedules, for ``etcd/backup.sls`` (on the master's machine).

    CLI Example:

    .. code-block:: bash

        salt master etcd_cluster.backup_settings
    """
    pillar = _pillar()
    return dict(__utils__["etcd_settings.backup"](pillar),
                clusters=sorted(__utils__["etcd_settings.clusters"](pillar)))


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
    problems, warnings = __utils__["etcd_validate.validate"](_pillar(), minion_id=minion_id or None)
    if problems:
        raise CommandExecutionError(
            "pillar etcd has {} problem(s):\n- {}".format(len(problems), "\n- ".join(problems)),
            info={"errors": problems, "warnings": warnings},
        )
    return {"valid": True, "warnings": warnings}


# -- connection -----------------------------------------------------------------------------------


def _connect(connection_args):
    """An etcd client from the connection arguments, defaults filled in from pillar."""
    return _layer("client_for")(_pillar(), __opts__["id"], **connection_args)


# -- reading --------------------------------------------------------------------------------------


def members(**connection_args):
    """
    The cluster's members, as ``etcdctl member list`` shows them: ``id`` (hex), ``name``,
    ``peer_urls``, ``client_urls``, ``is_learner``, ``started``.

    connection_args
        See the module documentation (``endpoints``, ``cluster``, ``ca_file``, ...).

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.members
        salt pg1 etcd_cluster.members cluster=etcd
    """
    with _connect(connection_args) as client:
        return client.members()


def leader(**connection_args):
    """
    The leader: its member entry, with the ``endpoint`` that answered as leader.

    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.leader
    """
    with _connect(connection_args) as client:
        current = client.members()
        found = _layer("leader_status")(client, current)
        return dict(_layer("require")(current, found["id"]), endpoint=found["endpoint"])


def status(**connection_args):
    """
    Each member's status, by name (``etcdctl endpoint status`` plus alarms): ``id``,
    ``cluster_id``, ``endpoint``, ``version``, ``db_size``, ``leader``, ``is_leader``,
    ``raft_index``, ``raft_term``, ``raft_applied_index``, ``is_learner``, ``alarms``, and
    ``error`` when the member does not answer.

    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.status
    """
    with _connect(connection_args) as client:
        return _layer("status")(client)


def health(**connection_args):
    """
    The cluster's health, asked of every endpoint: ``healthy`` (one cluster, every voter
    serves linearizable reads, a leader, no alarm), ``quorum`` (voters, healthy voters,
    needed, ok), ``leader``, ``learners``, ``alarms``, ``clusters`` (cluster ID ->
    endpoints: more than one is a split), ``split``, per member ``healthy``, ``error``,
    ``took``, and ``error``: what is wrong and what to do (a split, a quorum loss).

    connection_args
        See the module documentation.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.health
    """
    with _connect(connection_args) as client:
        summary = _layer("health")(client)
    summary.pop("views", None)
    return summary


# -- membership -----------------------------------------------------------------------------------


def _peer_url_list(peer_urls):
    if isinstance(peer_urls, str):
        peer_urls = [u.strip() for u in peer_urls.split(",") if u.strip()]
    if not peer_urls or not all(
        isinstance(u, str) and u.startswith(("https://", "http://")) for u in peer_urls
    ):
        raise SaltInvocationError(
            "peer_urls: {!r}: expected one or more http(s)://host:port URLs".format(peer_urls))
    return list(peer_urls)


def member_add(name, peer_urls, learner=True, timeout=60, **connection_args):
    """
    Add a member: a learner (default), or a voter with ``learner=False``. Idempotent: when a
    member has these peer URLs already, that member is returned (``added: False``).

    Returns ``id`` (hex), ``name``, ``peer_urls``, ``is_learner``, ``started``, ``added``,
    ``refusals`` (etcd's passing refusals retried), and what the new member must be started
    with: ``initial_cluster`` (every member, itself included) and ``initial_cluster_state``
    (``existing``). Refuses while another member was added but never started, and a second
    learner.

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
    """
    if not name:
        raise SaltInvocationError("name: the new member's etcd name is required")
    peer_urls = _peer_url_list(peer_urls)
    with _connect(connection_args) as client:
        return _layer("add")(client, name, peer_urls, learner=learner, timeout=timeout)


def member_promote(member, timeout=120, **connection_args):
    """
    Promote a learner to a voting member once it is started and caught up (its raft index
    has reached the leader's), retrying etcd's "not in sync" and "unhealthy cluster"
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
    with _connect(connection_args) as client:
        return _layer("promote")(client, member, timeout=timeout)


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
    with _connect(connection_args) as client:
        return _layer("removal_check")(client, member)


def member_remove(member, force=False, timeout=60, **connection_args):
    """
    Remove a member. Refuses what would lose quorum (too few healthy voters would remain),
    the last voter, and removing one of 2 voters, unless ``force=True``. When the member is
    the leader, leadership is handed to the healthy voter furthest ahead first.

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
    """
    with _connect(connection_args) as client:
        return _layer("remove")(client, member, force=force, timeout=timeout)


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

        salt h1 etcd_cluster.move_leader etcd-2
    """
    with _connect(connection_args) as client:
        return _layer("move_leader")(client, member)


# -- keys -----------------------------------------------------------------------------------------


def put(key, value, **connection_args):
    """
    Set ``key`` to ``value`` (``etcdctl put``). Returns True.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.put a 10
    """
    with _connect(connection_args) as client:
        client.put(key, value)
    return True


def get(key, **connection_args):
    """
    The value of ``key`` (``etcdctl get``), or None when there is no such key (an
    unreachable cluster raises, so None means absent).

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.get a
    """
    with _connect(connection_args) as client:
        return client.get(key)


def delete(key, **connection_args):
    """
    Delete ``key`` (``etcdctl del``): the number of keys deleted, 0 or 1.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.delete a
    """
    with _connect(connection_args) as client:
        return client.delete(key)


# -- this host's etcd -----------------------------------------------------------------------------


def write_env(endpoints):
    """
    Point this member's etcdctl environment (``/etc/profile.d/etcdctl.sh``) at
    ``endpoints``, the same file highstate writes (``etcd_render.env_file``): replaced
    atomically, 0644, only when it differs. What ``salt-run etcd.refresh_endpoints`` calls on
    the members (a state run would compile the pillar again on each). Returns
    ``{"changed": bool, "endpoints": [...]}``.

    endpoints
        The voting members' client URLs, a list or comma-separated.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.write_env https://10.77.0.11:2379,https://10.77.0.12:2379
    """
    if isinstance(endpoints, str):
        endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
    # written into a file root's shell sources: a URL of host and port, nothing else
    if not endpoints or not all(isinstance(e, str) and ENDPOINT_RE.match(e) for e in endpoints):
        raise SaltInvocationError(
            "endpoints: {!r}: expected one or more http(s)://host:port URLs".format(endpoints))
    member = settings()
    if not member:
        raise SaltInvocationError("minion {} is in no etcd cluster of its pillar".format(
            __opts__["id"]))
    path = member["paths"]["env_file"]
    text = __utils__["etcd_render.env_file"](endpoints, member["paths"])
    return {"changed": __utils__["etcd_files.replace"](path, text, 0o644), "endpoints": endpoints}


def _run(argv):
    return __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True,
                                   output_loglevel="quiet")


def _unit_state(service):
    shown = _run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID",
                  "-p", "UnitFileState", service])
    values = dict(line.split("=", 1) for line in shown["stdout"].splitlines() if "=" in line)
    return {"active": values.get("ActiveState", "unknown"), "sub": values.get("SubState", ""),
            "main_pid": int(values.get("MainPID") or 0),
            "enabled": values.get("UnitFileState", "")}


def _etcd_processes():
    found = _run(["pgrep", "-x", "etcd"])
    return [int(pid) for pid in found["stdout"].split()] if found["retcode"] == 0 else []


def _data_shape(data_dir):
    """(entries of ``data_dir``, holds a member, problem: why it is not etcd's own data)."""
    if not os.path.isdir(data_dir):
        return [], False, None
    entries = sorted(os.listdir(data_dir))
    foreign = [e for e in entries if e not in DATA_ENTRIES]
    member_dir = os.path.join(data_dir, "member")
    inside = sorted(os.listdir(member_dir)) if os.path.isdir(member_dir) else []
    has_member = any(e in MEMBER_ENTRIES for e in inside)
    foreign += ["member/" + e for e in inside if e not in MEMBER_ENTRIES]
    if os.path.exists(member_dir) and not os.path.isdir(member_dir):
        foreign.append("member (not a directory)")
    problem = None
    if foreign:
        problem = "{} holds what is not etcd's data ({}): nothing there is deleted".format(
            data_dir, ", ".join(foreign[:5]))
    return entries, has_member, problem


def local_state():
    """
    This host's etcd, as the bootstrap rule and the destructive steps need to know it:
    ``data`` (its data dir holds a member), ``entries``, ``data_problem`` (what is there that
    is not etcd's), ``unit`` (systemd's ActiveState), ``running`` (the unit may hold or
    serve data, or an etcd process runs), ``data_dir``, ``token`` (of its config file).
    Members answer it for each other through Salt's peer publish while bootstrapping.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.local_state
    """
    member = settings()
    if not member:
        raise SaltInvocationError("minion {} is in no etcd cluster of its pillar".format(
            __opts__["id"]))
    problem = __utils__["etcd_validate.path_problem"](member["data_dir"])
    entries, has_member, shape_problem = ([], False, None) if problem else _data_shape(
        member["data_dir"])
    unit = _unit_state("etcd")
    processes = _etcd_processes()
    token = None
    try:
        with open(member["paths"]["config_file"]) as handle:
            for line in handle:
                if line.startswith("initial-cluster-token:"):
                    token = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "minion": __opts__["id"],
        "member_name": member["member_name"],
        "data_dir": member["data_dir"],
        "data": has_member,
        "entries": entries,
        "data_problem": problem or shape_problem,
        "unit": unit["active"],
        "enabled": unit["enabled"],
        "running": unit["active"] in ACTIVE_STATES or bool(processes),
        "processes": processes,
        "token": token,
    }


def _in_membership(member):
    """Whether the cluster still lists this member (asked of the other members), or raise
    when it cannot be asked."""
    others = [url for url in member["endpoints"] if url != member["client_url"]]
    if not others:
        return None
    tls = __utils__["etcd_settings.client_tls_files"]()
    if not all(os.path.exists(path) for path in tls.values()):
        raise CommandExecutionError(
            "cannot ask cluster {} whether {} is still a member: no client certificate here "
            "({})".format(member["name"], member["member_name"], tls["cert_file"]))
    with _layer("connect")(others, timeout=3, **tls) as client:
        current = client.members()
    return _layer("find_by_peer_urls")(current, [member["peer_url"]])


def _archive(data_dir):
    """tar.gz of ``data_dir`` beside it, mode 0600, checked by reading it back: its path."""
    archive = "{}.removed-{}-{}.tar.gz".format(
        data_dir.rstrip("/"), time.strftime("%Y%m%dT%H%M%S"), os.urandom(3).hex())
    problem = __utils__["etcd_validate.path_problem"](archive)
    if problem:
        raise CommandExecutionError("will not write the archive: " + problem)
    expected = set()
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            expected.add(os.path.relpath(os.path.join(root, name), data_dir))
    fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        with tarfile.open(fileobj=handle, mode="w:gz") as tar:
            for entry in sorted(os.listdir(data_dir)):
                tar.add(os.path.join(data_dir, entry), arcname=entry)
    with tarfile.open(archive, "r:gz") as tar:
        got = {os.path.normpath(name) for name in tar.getnames()}
    if not expected <= got or os.stat(archive).st_mode & 0o077:
        raise CommandExecutionError(
            "the archive {} of {} does not hold all of it: nothing deleted".format(archive, data_dir))
    return archive


def purge(mode="clean", test=False):
    """
    Stop this host's etcd and remove what the formula made for it (data dir, certificates,
    config, unit, etcdctl env), archiving the data dir first (``<data_dir>.removed-<time>
    .tar.gz``, mode 0600, read back before anything is deleted). Only etcd's own data is
    deleted: a data dir that holds anything else, or a path the formula may not delete,
    is refused.

    mode
        ``clean`` (``etcd.clean``): refused under ``safeguard``, while etcd may hold or
        serve data (active, activating, reloading, an etcd process), while the cluster
        still lists this member (asked of the others; refused when they cannot be asked),
        and without ``clean: true``.
        ``retire`` (``etcd.remove_member``'s last step): the member must have left the
        membership; etcd is stopped and disabled; the data dir is archived, and purged
        unless ``safeguard``; the etcdctl env goes.
        ``purge`` (``etcd.purge``, Pigsty's etcd_purge): the explicit override: safeguard
        and membership are not asked; etcd is stopped first; the archive is still made.
    test
        Say what would be done, do nothing.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.purge
        salt h1 etcd_cluster.purge mode=purge test=True
    """
    if mode not in ("clean", "retire", "purge"):
        raise SaltInvocationError("mode: {!r}: expected clean, retire or purge".format(mode))
    member = settings()
    if not member:
        raise SaltInvocationError(
            "minion {} is in no cluster of pillar etcd:clusters, so its paths are unknown"
            .format(__opts__["id"]))
    name, data_dir = member["member_name"], member["data_dir"]
    problem = __utils__["etcd_validate.path_problem"](data_dir)
    if problem:
        raise CommandExecutionError("data_dir {}: nothing deleted".format(problem))
    entries, has_member, shape_problem = _data_shape(data_dir)
    if shape_problem:
        raise CommandExecutionError(shape_problem)
    state = local_state()
    notes = []

    if mode in ("clean", "retire"):
        if mode == "clean" and member["safeguard"]:
            raise CommandExecutionError(
                "etcd member {}: cluster {} has safeguard: true: etcd.clean purges nothing "
                "(etcd.purge is the explicit override, and archives first)".format(
                    name, member["name"]))
        if mode == "clean" and not member["clean"]:
            raise CommandExecutionError(
                "etcd member {}: cluster {} has clean: false: etcd.clean purges nothing; set "
                "clean: true for this run (or use etcd.purge)".format(name, member["name"]))
        if mode == "clean" and state["running"]:
            raise CommandExecutionError(
                "etcd member {} may hold or serve data (unit {}, etcd processes {}): stop it, "
                "or remove it with etcd.remove_member first".format(
                    name, state["unit"], state["processes"] or "none"))
        try:
            still = _in_membership(member)
        except CommandExecutionError as exc:
            raise CommandExecutionError(
                "etcd member {}: cannot tell whether the cluster still lists it ({}): refusing "
                "to purge; etcd.purge is the explicit override".format(name, exc)) from None
        if still is not None:
            raise CommandExecutionError(
                "etcd member {} ({}) is still in cluster {}'s membership: remove it first "
                "(salt-run state.orchestrate etcd.remove_member pillar='{{\"etcd_member\": "
                "\"{}\"}}')".format(name, still["id"], member["name"], __opts__["id"]))
    elif state["data"]:
        try:
            still = _in_membership(member)
        except CommandExecutionError:
            still = None
        if still is not None:
            notes.append("{} was still a {} of cluster {}: remove it from the membership "
                         "(etcd.remove_member) unless the whole cluster goes".format(
                             name, "learner" if still["is_learner"] else "voting member",
                             member["name"]))

    keep_data = mode == "retire" and member["safeguard"]
    paths = member["paths"]
    # root's etcd credentials go with the env that reads them, whatever the mode
    files = [paths["env_file"], paths["root_credentials_file"]]
    if mode != "retire":
        files += [paths["unit_file"], paths["config_file"]]
    plan = {
        "stop": state["running"] or state["enabled"] == "enabled",
        "archive": data_dir if entries else None,
        "delete_data": bool(entries) and not keep_data,
        "delete_pki": mode != "retire" and os.path.isdir(paths["pki_dir"]),
        "delete_files": [f for f in files if os.path.exists(f)],
    }
    if test:
        return {"name": name, "mode": mode, "test": True, "plan": plan, "notes": notes}

    done = []
    if plan["stop"]:
        __salt__["service.stop"]("etcd")
        __salt__["service.disable"]("etcd")
        after = local_state()
        if after["running"]:
            raise CommandExecutionError(
                "etcd on {} is still {} after a stop (processes {}): nothing deleted".format(
                    __opts__["id"], after["unit"], after["processes"]))
        done.append("etcd stopped and disabled")
    archive = None
    if plan["archive"]:
        archive = _archive(data_dir)
        done.append("data dir archived to {} (0600)".format(archive))
    if plan["delete_data"]:
        __salt__["file.remove"](data_dir)
        done.append("data dir {} purged".format(data_dir))
    elif entries:
        done.append("data dir {} kept: safeguard is true".format(data_dir))
    for path in plan["delete_files"]:
        __salt__["file.remove"](path)
    if plan["delete_files"]:
        done.append("removed " + ", ".join(plan["delete_files"]))
    if plan["delete_pki"]:
        __salt__["file.remove"](paths["pki_dir"])
        done.append("removed " + paths["pki_dir"])
    if os.path.exists(data_dir) and plan["delete_data"]:
        raise CommandExecutionError("{} is still there after its removal".format(data_dir))
    return {"name": name, "mode": mode, "done": done, "archive": archive, "notes": notes}


# -- restore and recovery, on this member --------------------------------------------------------


def _etcd_version():
    package = __salt__["config.get"]("etcd:pkg:server", "") or "etcd-server"
    return __salt__["pkg.version"](package) or None


def _write_config(member, initial, extra=None):
    """This member's config file, as etcd_config.managed writes it (``extra``: keys for one
    start, e.g. force-new-cluster)."""
    config = __utils__["etcd_render.member_config"](member, initial, _etcd_version())
    config.update(extra or {})
    path = member["paths"]["config_file"]
    temporary = path + ".new"
    with open(temporary, "w") as handle:
        handle.write(__utils__["etcd_render.config_text"](config))
    os.chmod(temporary, 0o640)
    __salt__["file.chown"](temporary, "root", "etcd")
    os.replace(temporary, path)


def _require_stopped(name):
    state = local_state()
    if state["running"]:
        raise CommandExecutionError(
            "etcd member {} may hold or serve data (unit {}, etcd processes {}): stop it "
            "first".format(name, state["unit"], state["processes"] or "none"))
    return state


def restore(host, port, path, fingerprint, sha256, token, test=False):
    """
    Replace this member's data with a snapshot (one step of ``etcd.restore``, which stops
    every member first and hands every member the SAME file): the snapshot fetched from the
    master (``etcd_transfer``: its certificate pinned by ``fingerprint``, the file checked
    against ``sha256``), its integrity checked, the old data dir archived (0600), the
    snapshot restored with the pillar's membership and the new ``token``, the config file
    rewritten for it. Refused while etcd runs here.

    host, port, path, fingerprint, sha256
        Where the runner serves the snapshot, and what it must be.
    token
        The restored cluster's initial-cluster-token (a restore makes a new cluster).

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.restore 10.77.0.1 45123 /Qx... <fingerprint> <sha256> etcd-1a2b-r1
    """
    member = settings()
    if not member:
        raise SaltInvocationError("minion {} is in no etcd cluster of its pillar".format(
            __opts__["id"]))
    name, data_dir = member["member_name"], member["data_dir"]
    problem = __utils__["etcd_validate.path_problem"](data_dir)
    if problem:
        raise CommandExecutionError("data_dir {}: nothing restored".format(problem))
    if not __utils__["etcd_settings.token_matches"](token, member):
        raise SaltInvocationError("token {!r} is not one of cluster {}'s".format(token, member["name"]))
    entries, _, shape_problem = _data_shape(data_dir)
    if shape_problem:
        raise CommandExecutionError(shape_problem)
    _require_stopped(name)
    if test:
        return {"name": name, "test": True, "archive": bool(entries)}
    done = []
    copy = os.path.join(os.path.dirname(data_dir.rstrip("/")), "restore-{}.db".format(sha256[:16]))
    tls = __utils__["etcd_settings.client_tls_files"]()
    try:
        size = __utils__["etcd_transfer.fetch"](host, port, path, fingerprint, sha256, copy,
                                                tls["cert_file"], tls["key_file"])
    except (OSError, ValueError) as exc:
        raise CommandExecutionError("fetching the snapshot from {}:{} failed: {}: nothing "
                                    "changed".format(host, port, exc)) from None
    try:
        __utils__["etcd_snapshot.integrity"](copy)
        done.append("snapshot fetched ({} bytes, sha256 checked)".format(size))
        if entries:
            done.append("old data dir archived to {} (0600)".format(_archive(data_dir)))
        staging = data_dir.rstrip("/") + ".restoring"
        if os.path.exists(staging):
            __salt__["file.remove"](staging)
        argv = __utils__["etcd_snapshot.restore_argv"](
            copy, name, member["initial_cluster"], token, member["peer_url"], staging)
        ran = _run(argv)
        if ran["retcode"] != 0:
            raise CommandExecutionError("{} failed: {}".format(
                " ".join(argv[:3]), (ran["stderr"] or ran["stdout"]).strip()[-400:]))
        if entries:
            __salt__["file.remove"](data_dir)
        os.replace(staging, data_dir)
        for root, dirs, files in os.walk(data_dir):
            for entry in dirs + files:
                __salt__["file.chown"](os.path.join(root, entry), "etcd", "etcd")
        __salt__["file.chown"](data_dir, "etcd", "etcd")
        os.chmod(data_dir, 0o700)
        done.append("restored into {} (token {})".format(data_dir, token))
        _write_config(member, __utils__["etcd_render.initial"](
            member["initial_cluster"], "new", token))
        done.append("config file written for the restored cluster")
    finally:
        if os.path.exists(copy):
            os.remove(copy)
    return {"name": name, "done": done}


def force_new_cluster(timeout=60):
    """
    Make this member, with its data, a cluster of one (``etcd --force-new-cluster``, once):
    the recovery from a lost quorum keeps the best survivor's data this way and adds the
    others back as learners (``etcd.recover``). etcd is stopped, started once with the flag,
    checked healthy, and the flag taken out of the config file again (never left for the
    next restart). Refused without data here.

    timeout
        Seconds to wait for the member to be healthy alone.

    CLI Example:

    .. code-block:: bash

        salt h1 etcd_cluster.force_new_cluster
    """
    member = settings()
    if not member:
        raise SaltInvocationError("minion {} is in no etcd cluster of its pillar".format(
            __opts__["id"]))
    state = local_state()
    if not state["data"]:
        raise CommandExecutionError("etcd member {} holds no data: nothing to keep".format(
            member["member_name"]))
    current = {}
    try:
        import yaml

        with open(member["paths"]["config_file"]) as handle:
            current = yaml.safe_load(handle) or {}
    except (OSError, ValueError):
        pass
    initial = __utils__["etcd_render.initial_settings"](current) or __utils__[
        "etcd_render.initial"](member["initial_cluster"], "existing", member["initial_cluster_token"])
    __salt__["service.stop"]("etcd")
    _require_stopped(member["member_name"])
    _write_config(member, initial, {"force-new-cluster": True})
    try:
        started = __salt__["service.start"]("etcd")
        give_up_at = time.monotonic() + float(timeout)
        tls = __utils__["etcd_settings.client_tls_files"]()
        while True:
            with _layer("connect")([member["client_url"]], timeout=2, **tls) as client:
                health = client.health(member["client_url"])
                members = client.members() if health["healthy"] else []
            if health["healthy"] and len(members) == 1:
                break
            if time.monotonic() >= give_up_at:
                raise CommandExecutionError(
                    "etcd member {} is not healthy alone after --force-new-cluster ({} s, "
                    "started: {}): {}".format(member["member_name"], timeout, started,
                                              health["error"]))
            time.sleep(0.5)
    finally:
        # never left in the file: a later restart would throw the membership away again
        _write_config(member, initial)
    return {"name": member["member_name"], "members": members,
            "done": ["etcd member {} is a cluster of one with its data".format(
                member["member_name"])]}

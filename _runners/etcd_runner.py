"""
The etcd cluster seen from the salt-master (``salt-run etcd.*``): the status table, and the
steps of the orchestrations (etcd/add_member.sls, etcd/remove_member.sls;
docs/operations.md).

.. code-block:: bash

    salt-run etcd.status
    salt-run state.orchestrate etcd.add_member pillar='{"etcd_member": "h4"}'
    salt-run state.orchestrate etcd.remove_member pillar='{"etcd_member": "h1"}'

Every step does one thing, checks what it is given first, and is safe to run again. A
step that fails returns ``{"Error": why, "retcode": 1, ...}``: Salt's ``salt.runner``
orchestration state treats that as a failure, and ``salt-run`` exits 1.

A step talks to etcd through the membership layer (``_utils/etcd_membership.py``) with the
master's admin client certificate (etcd/admin.sls issues it on the CA server):
``<etcd:pki:ca_dir>/admin/{ca.crt,client.crt,client.key}``, or the paths in the master
config ``etcd_admin_tls: {ca_file: ..., cert_file: ..., key_file: ...}``. It reads pillar
``etcd`` as the member concerned sees it (``pillar.show_pillar``); without a member, as the
CA server sees it (master config ``etcd_pillar_minion`` overrides which minion that is).
Each step validates the whole pillar first, as highstate does.

The file is named etcd_runner.py so that it never shadows the ``etcd`` package Salt's own
etcd helper imports; its virtual name is ``etcd``.
"""

import logging
import os
import sys

from salt.exceptions import CommandExecutionError, SaltInvocationError

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_steps  # noqa: E402
from etcd_steps import MinionSilent, StepFailed, failed, ok, step  # noqa: E402

log = logging.getLogger(__name__)

__virtualname__ = "etcd"

# How long a learner may take to catch up: a base, plus the db size at a (slow) transfer
# rate. etcd 3.4 here: 0.5 s at 50 MB, 8 s at 1.8 GB (etcd-facts.md); 4 MiB/s is 25x slower.
PROMOTE_BASE_SECONDS = 60
PROMOTE_BYTES_PER_SECOND = 4 * 1024**2
PROMOTE_POLL_SECONDS = 0.05
# The client kinds whose endpoint lists the runner refreshes, and their SLS.
CLIENT_SLS = {
    "patroni": "etcd.clients.patroni",
    "vip_manager": "etcd.clients.vip_manager",
    "prometheus": "etcd.clients.prometheus",
}


def __virtual__():
    return __virtualname__


def _steps():
    return etcd_steps.of(globals())


def _layer(function):
    return __utils__["etcd_membership." + function]


# -- pure decisions (no I/O) ----------------------------------------------------------------------


def promote_deadline(db_size):
    """Seconds a learner gets to catch up and be promoted, growing with the db size."""
    return PROMOTE_BASE_SECONDS + int((db_size or 0) / PROMOTE_BYTES_PER_SECOND)


def client_targets(cluster):
    """{kind: (target, tgt_type)} of the clients in pillar ``clients`` (kinds of CLIENT_SLS)."""
    found = {}
    for spec in __utils__["etcd_settings.client_specs"](cluster).values():
        target, tgt_type = __utils__["etcd_settings.client_target"](spec)
        if spec["kind"] in CLIENT_SLS and target:
            found[spec["kind"]] = (target, tgt_type)
    return found


# -- status -----------------------------------------------------------------------------------------


def status(cluster=None, member=None, table=True):
    """
    The cluster's status, asked of every pillar endpoint: a table like ``etcdctl endpoint
    status -w table`` (with each member's cluster ID, so a split shows), the health line
    (a split or a quorum loss is said loudly, with what to do), learners, alarms and the
    expiry of the members' certificates (read from the TLS handshake) and of the master's
    own client certificate. Unless the cluster is healthy, the text comes as a failure
    (``Error``) and salt-run exits 1.

    cluster
        Cluster name in pillar ``etcd:clusters`` (default: the only one).
    member
        Or a member minion, whose cluster (and pillar) is used.
    table
        False: the data instead of the text.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.status
        salt-run etcd.status etcd
    """
    s = _steps()
    try:
        etcd_pillar, settings = s.cluster_context(cluster, member)
        with s.client(etcd_pillar, settings) as client:
            health = _layer("health")(client)
            auth_on = client.auth_enabled() if health.get("quorum", {}).get("ok") else None
        tls = s.admin_tls(etcd_pillar)
    except (StepFailed, CommandExecutionError, SaltInvocationError) as exc:
        return failed(str(exc))
    auth_line = None
    if auth_on is not None and auth_on != (settings.get("auth") is True):
        auth_line = "WARNING: authentication is {} in etcd, {} in pillar: run salt-run etcd.auth".format(
            "on" if auth_on else "off", "on" if settings.get("auth") is True else "off")
    expiry = __utils__["etcd_pki.expiry_rows"](
        [(m, __utils__["etcd_settings.client_url"](settings, m),
          __utils__["etcd_settings.peer_url"](settings, m))
         for m in __utils__["etcd_settings.by_seq"](settings)],
        tls["cert_file"])
    backup = __utils__["etcd_settings.backup"](etcd_pillar)
    snapshots = __utils__["etcd_snapshot.load"](
        __utils__["etcd_settings.backup_dir"](etcd_pillar, settings["name"]))
    last = snapshots[-1] if snapshots else None
    if not table:
        data = {"health": health, "cert_expiry": expiry, "last_snapshot": last,
                "auth": auth_on}
        return data if health.get("healthy") else dict(data, retcode=1)
    text = __utils__["etcd_report.status_text"](
        settings["name"], health, s.names(settings), expiry,
        [__utils__["etcd_report.snapshot_line"](
            last, last and __utils__["etcd_snapshot.age_hours"](last), backup["max_age_hours"])]
        + ([auth_line] if auth_line else []))
    # salt-run exits with the retcode of a dict return: an unhealthy cluster is a failure
    return text if health.get("healthy") else failed(text)


@step
def health(cluster=None, member=None, exclude=None):
    """
    The cluster's health, failing the step unless it is healthy (one cluster, every voter
    answers, a leader, no alarm). A member in its restart delay or an election is waited
    for (about 15 s) first. Printed at the end of the orchestrations, with the status table.

    cluster, member
        Which cluster: by name, or a member minion's.
    exclude
        A minion not to ask (one just removed).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.health member=h1
    """
    s = _steps()
    if exclude:
        s.check_minion_id(exclude, "exclude")
    etcd_pillar, settings = s.cluster_context(cluster, member)
    excluded = [exclude] if exclude else []
    names = {u: m for u, m in s.names(settings).items() if m not in excluded}
    with s.client(etcd_pillar, settings, exclude=excluded) as client:
        answer = _layer("wait_healthy")(client)
    text = __utils__["etcd_report.status_text"](settings["name"], answer, names)
    why = s.unhealthy(settings, answer)
    if why:
        raise StepFailed(why + "\n" + text)
    return ok("cluster {} is healthy: {} voting members, leader {}".format(
        settings["name"], answer["quorum"]["voters"], answer["leader"]), status=text,
        health={k: v for k, v in answer.items() if k != "views"})


# -- add_member -------------------------------------------------------------------------------------


@step
def add_preflight(member):
    """
    Step 1 of add_member: ``member`` is one plain minion id, in its cluster's pillar (the
    whole pillar validates), its minion answers, the cluster is healthy, no other member is
    pending (its own learner from an earlier run is resumed), and its data dir is empty or
    this very member's.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.add_preflight h4
    """
    s = _steps()
    etcd_pillar, cluster = s.member_context(member)
    new = s.member(cluster, member)
    # first: the host answers (this is its ping), and what its data dir holds
    try:
        local = s.on_minion(member, "etcd_cluster.local_state", timeout=5, expect=dict)
    except MinionSilent:
        raise StepFailed("minion {} does not answer (5 s): start it, or check its key and "
                         "connection to the master first".format(member)) from None
    with s.client(etcd_pillar, cluster, exclude=[member]) as client:
        answer = _layer("health")(client)
        why = s.unhealthy(cluster, answer)
        if why:
            raise StepFailed(why + ": fix it before adding a member")
        members = client.members()
    if local.get("data_problem"):
        raise StepFailed("{} on {}: fix it first".format(local["data_problem"], member))
    plan = _layer("add_plan")(members, new["peer_url"],
                              {"entries": local["entries"], "member": local["data"]})
    comment = {
        "add": "{} ({}) can be added to cluster {}".format(new["name"], member, cluster["name"]),
        "resume": "{} is a learner from an earlier run: resuming".format(new["name"]),
        "done": "{} is a voting member already: the remaining steps only check".format(new["name"]),
    }[plan]
    return ok(comment, plan=plan, member=new["name"], peer_url=new["peer_url"])


@step
def add_learner(member):
    """
    Step 2 of add_member: ``member`` added as a learner (nothing done when a member has its
    peer URL already: the add happened).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.add_learner h4
    """
    s = _steps()
    etcd_pillar, cluster = s.member_context(member)
    new = s.member(cluster, member)
    with s.operation(etcd_pillar, cluster, "add_learner {}".format(member)):
        with s.client(etcd_pillar, cluster, exclude=[member]) as client:
            added = _layer("add")(client, new["name"], [new["peer_url"]], learner=True)
        role = "learner" if added["is_learner"] else "voter"
        return ok(
            "{} {} as a {} (id {})".format(
                new["name"], "has been added" if added["added"] else "was already a member", role,
                added["id"]),
            id=added["id"], added=added["added"], initial_cluster=added["initial_cluster"],
            changes={"added": added["id"]} if added["added"] else {},
        )


@step
def promote(member, deadline=None):
    """
    Step 4 of add_member: promote ``member``'s learner as soon as etcd accepts it (it runs
    and has the leader's raft index). The deadline grows with the db size (``deadline``
    seconds overrides it). Only when the learner did not catch up in time is it rolled
    back: the membership is read again (a learner promoted after all is kept), then the
    learner is removed, etcd stopped on the host and its data dir archived and purged,
    and the step fails saying so. Any other failure changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.promote h4
    """
    s = _steps()
    etcd_pillar, cluster = s.member_context(member)
    new = s.member(cluster, member)
    with s.operation(etcd_pillar, cluster, "promote {}".format(member)):
        with s.client(etcd_pillar, cluster, exclude=[member]) as client:
            learner = _layer("find_by_peer_urls")(client.members(), [new["peer_url"]])
            if learner is None:
                raise StepFailed("{} is not a member: run add_member from the start".format(
                    new["name"]))
            if not learner["is_learner"]:
                return ok("{} is a voting member already".format(new["name"]), promoted=False)
            if deadline is None:
                sizes = [st.get("db_size") or 0 for st in _layer("status")(client).values()]
                deadline = promote_deadline(max(sizes or [0]))
            # the orchestration runs this step beside the new member's highstate: it promotes
            # within one poll (50 ms) of the learner catching up
            promoted = _layer("promote_or_roll_back")(client, learner["id"], timeout=deadline,
                                                      poll=PROMOTE_POLL_SECONDS)
        if promoted.get("promoted_after_all"):
            return ok("{} was promoted after all (at the deadline)".format(new["name"]),
                       promoted=True, changes={"promoted": learner["id"]})
        if promoted.get("rolled_back"):
            raise StepFailed(
                "{} did not catch up within {} s ({}): the learner has been removed from the "
                "cluster; {}; run add_member again once the cause is fixed".format(
                    new["name"], deadline, promoted["why"], _wipe_learner(member)))
        return ok(
            "{} has been promoted to a voting member after {} s".format(
                new["name"], promoted.get("waited")),
            promoted=promoted.get("promoted"), waited=promoted.get("waited"),
            caught_up=promoted.get("caught_up"), refusals=promoted.get("refusals"),
            deadline=deadline, changes={"promoted": learner["id"]},
        )




@step
def remove_learner(member):
    """
    Remove ``member``'s learner (a pending add that will not be finished), stop its etcd
    and purge its data dir (archived first). A voter is refused: use the remove_member
    orchestration.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.remove_learner h4
    """
    s = _steps()
    etcd_pillar, cluster = s.member_context(member)
    new = s.member(cluster, member)
    with s.operation(etcd_pillar, cluster, "remove_learner {}".format(member)):
        with s.client(etcd_pillar, cluster, exclude=[member]) as client:
            learner = _layer("find_by_peer_urls")(client.members(), [new["peer_url"]])
            if learner is None:
                return ok("{} is not a member".format(new["name"]))
            if not learner["is_learner"]:
                raise StepFailed("{} is a voting member: use the remove_member orchestration".format(
                    new["name"]))
            client.member_remove(learner["id"])
        return ok("the learner {} has been removed; {}".format(new["name"], _wipe_learner(member)),
                   changes={"removed": learner["id"]})


    # -- endpoint references ------------------------------------------------------------------------


@step
def refresh_endpoints(member=None, cluster=None, exclude=None):
    """
    Steps 5 of add_member and 2 of remove_member: point every client at the voting
    members (never a learner, never ``exclude``, a member about to leave), without
    restarting etcd: the etcdctl env of the members (etcd.env), and the clients of pillar
    ``etcd:clusters:<cluster>:clients``: patroni (``etcd3`` hosts, then reload),
    vip-manager (``dcs-endpoints``, then restart), prometheus (its target file).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.refresh_endpoints member=h4
        salt-run etcd.refresh_endpoints cluster=etcd exclude=h1
    """
    s = _steps()
    if exclude:
        s.check_minion_id(exclude, "exclude")
    etcd_pillar, settings = s.cluster_context(cluster, member)
    excluded = [exclude] if exclude else []
    with s.client(etcd_pillar, settings, exclude=excluded) as client:
        members = client.members()
    voters = __utils__["etcd_settings.voting_minions"](settings, members, excluded)
    if not voters:
        raise StepFailed("no voting member left to point clients at")
    endpoints = __utils__["etcd_settings.client_urls"](settings, voters)
    handed = {"etcd_client": {"cluster": settings["name"], "endpoints": endpoints}}
    answered = s.answers(",".join(voters), "etcd_cluster.write_env", [endpoints])
    failures = {m: "did not answer" for m in voters if m not in answered}
    failures.update({m: ret for m, (ret, retcode) in answered.items()
                     if retcode or not isinstance(ret, dict)})
    refreshed = ["etcdctl env on " + ", ".join(voters)]
    for kind, (target, tgt_type) in sorted(client_targets(settings).items()):
        failures.update({"{} ({})".format(m, kind): why
                         for m, why in s.apply(target, tgt_type, CLIENT_SLS[kind], handed).items()})
        refreshed.append("{} on {}".format(kind, target))
    if failures:
        raise StepFailed("endpoint refresh failed on {}".format(
            "; ".join("{}: {}".format(m, why) for m, why in sorted(failures.items()))))
    return ok("endpoints {} given to {}".format(",".join(endpoints), "; ".join(refreshed)),
               endpoints=endpoints)


# -- remove_member ------------------------------------------------------------------------------


@step
def remove_preflight(member, force=False):
    """
    Step 1 of remove_member: ``member`` is one plain minion id in its cluster's pillar (keep
    it there until the removal is done; the whole pillar validates) and removing it is
    safe: quorum kept with the healthy members, not 2 -> 1, not the last one;
    ``force=True`` removes it anyway. Its minion need not answer: a dead host is removed
    the same way.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.remove_preflight h3
    """
    s = _steps()
    s.check_bool(force)
    etcd_pillar, cluster = s.member_context(member)
    leaving = s.member(cluster, member)
    with s.client(etcd_pillar, cluster) as client:
        target = _layer("find_by_peer_urls")(client.members(), [leaving["peer_url"]])
        if target is None:
            return ok("{} is not a member of cluster {}: the remaining steps clean up".format(
                leaving["name"], cluster["name"]), plan="gone")
        check = _layer("removal_check")(client, target["id"])
    if check["refusal"] and not force:
        raise StepFailed(check["refusal"] + " (etcd_force: true removes it anyway)")
    return ok("{} ({}) can be removed from cluster {}".format(
        leaving["name"], "learner" if target["is_learner"] else "voter", cluster["name"]),
        plan="remove", id=target["id"])


@step
def move_leader_off(member):
    """
    Step 3 of remove_member: when ``member`` leads, hand leadership to the healthy voter
    furthest ahead, so its removal leaves the cluster with a leader.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.move_leader_off h1
    """
    s = _steps()
    etcd_pillar, cluster = s.member_context(member)
    leaving = s.member(cluster, member)
    with s.operation(etcd_pillar, cluster, "move_leader_off {}".format(member)):
        with s.client(etcd_pillar, cluster) as client:
            current = client.members()
            target = _layer("find_by_peer_urls")(current, [leaving["peer_url"]])
            if target is None or target["is_learner"]:
                return ok("{} does not lead".format(leaving["name"]), moved=False)
            leader = _layer("leader_status")(client, current)
            if leader["id"] != target["id"]:
                return ok("{} does not lead".format(leaving["name"]), moved=False)
            moved = _layer("move_leader")(client)
        return ok("leadership has moved from {} to {}".format(moved["old"], moved["new"]),
                   moved=True, changes={"leader": {"old": moved["old"], "new": moved["new"]}})


@step
def member_remove(member, force=False):
    """
    Step 4 of remove_member: ``member`` removed from the cluster's membership (the layer's
    checks again: quorum, leader).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.member_remove h3
    """
    s = _steps()
    s.check_bool(force)
    etcd_pillar, cluster = s.member_context(member)
    leaving = s.member(cluster, member)
    with s.operation(etcd_pillar, cluster, "member_remove {}".format(member)):
        with s.client(etcd_pillar, cluster, exclude=[member]) as client:
            target = _layer("find_by_peer_urls")(client.members(), [leaving["peer_url"]])
            if target is None:
                return ok("{} is not a member".format(leaving["name"]), removed=False)
            removed = _layer("remove")(client, target["id"], force=bool(force))
        return ok("{} has been removed from cluster {}".format(leaving["name"], cluster["name"]),
                   removed=True, leader_moved_to=removed.get("leader_moved_to"),
                   changes={"removed": target["id"]})


@step
def retire(member):
    """
    Step 5 of remove_member, on the removed host: etcd stopped and disabled; its data dir
    archived (``<data_dir>.removed-<time>.tar.gz``, 0600, kept) and then purged when the
    cluster's ``safeguard`` is false (kept when it is true); its etcdctl env removed.
    Refused while the host is still a member. A host whose minion does not answer is
    skipped, and the step says so: its etcd cannot rejoin (the cluster refuses a removed
    member, and highstate will not start it), and ``salt-run etcd.retire <minion>`` does
    the cleanup once it is back.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.retire h3
    """
    s = _steps()
    etcd_pillar, cluster = s.member_context(member)
    leaving = s.member(cluster, member)
    with s.operation(etcd_pillar, cluster, "retire {}".format(member)):
        with s.client(etcd_pillar, cluster, exclude=[member]) as client:
            if _layer("find_by_peer_urls")(client.members(), [leaving["peer_url"]]) is not None:
                raise StepFailed("{} is still a member: remove it first (etcd.member_remove)".format(
                    leaving["name"]))
        try:
            s.on_minion(member, "test.ping", timeout=5)
        except MinionSilent:
            return ok(
                "{} did not answer: its cleanup (stop, archive, purge) was skipped. It is out of "
                "the membership: its etcd cannot rejoin (the cluster refuses a removed member, "
                "and highstate will not start it); once the host is back, run salt-run "
                "etcd.retire {} to archive and purge its data".format(member, member),
                skipped=True)
        try:
            done = s.on_minion(member, "etcd_cluster.purge", mode="retire", timeout=60, expect=dict)
        except MinionSilent as exc:
            raise StepFailed("{} answered a ping but not its cleanup ({}): it may be under way; "
                             "run salt-run etcd.retire {} again".format(member, exc, member)) from None
        return ok("; ".join(done["done"]) or "nothing left on {}".format(member),
                   archive=done.get("archive"), changes={"retired": member})


def _wipe_learner(member):
    """Stop a removed learner's etcd and purge its data (archived first): what was done."""
    s = _steps()
    try:
        done = s.on_minion(member, "etcd_cluster.purge", mode="retire", timeout=60, expect=dict)
    except StepFailed as exc:
        return "its data dir could not be purged ({}): purge it (state.apply etcd.purge) " \
               "before a re-run".format(exc)
    return "; ".join(done["done"]) or "nothing to purge on {}".format(member)

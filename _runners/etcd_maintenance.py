"""
Keep it healthy (``salt-run etcd.*``, docs/operations.md): defragmentation driven by the
numbers, compaction on demand, alarms, and the way out of NOSPACE.

.. code-block:: bash

    salt-run etcd.defrag                 # members less than defrag_in_use_ratio in use
    salt-run etcd.defrag force=True      # every member
    salt-run etcd.compact                # the key history up to the current revision
    salt-run etcd.alarms
    salt-run etcd.nospace                # compact, defragment all, disarm once space is back

Defragmentation blocks a member's reads and writes while it runs: one member at a time,
followers first and the leader last, each healthy again before the next, only while the
cluster is healthy, under the cluster's operation lock; per member it reports the db size
before and after and the time it took, as it goes.

The same virtual name as etcd_runner.py (``etcd``): one ``salt-run etcd.*`` namespace.
"""

import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_steps  # noqa: E402
from salt.exceptions import CommandExecutionError  # noqa: E402
from etcd_steps import StepFailed, ok, step  # noqa: E402

__virtualname__ = "etcd"

# Seconds one member's defragmentation may take (etcd defragments some 50-100 MB/s).
DEFRAG_TIMEOUT = 600
# Seconds a defragmented member gets to serve again.
HEALTHY_AFTER = 60


def __virtual__():
    return __virtualname__


def _steps():
    return etcd_steps.of(globals())


def _mb(size):
    return "{:.2f} MB".format(size / 1e6)


def defrag_plan(members, statuses, leader_id, in_use_ratio, min_bytes, force=False):
    """
    [(member, status, why skipped or None)] in the order to defragment: followers by
    name, the leader last. A member is skipped (unless ``force``) when its db is smaller
    than ``min_bytes`` or at least ``in_use_ratio`` of it is in use.
    """
    order = sorted((m for m in members if not m["is_learner"]),
                   key=lambda m: (m["id"] == leader_id, m["name"]))
    plan = []
    for member in order:
        status = statuses[member["id"]]
        size, in_use = status["db_size"], status["db_size_in_use"]
        why = None
        if not force and size < min_bytes:
            why = "db {} is under defrag_min_bytes ({})".format(_mb(size), _mb(min_bytes))
        elif not force and size and in_use / size >= in_use_ratio:
            why = "{:.0%} of its {} in use (defrag_in_use_ratio {:.0%})".format(
                in_use / size, _mb(size), in_use_ratio)
        plan.append((member, status, why))
    return plan


def _statuses(client, members):
    found = {}
    for member in members:
        if member["is_learner"]:
            continue
        if not member["client_urls"]:
            raise StepFailed("{} has not started: nothing is defragmented".format(member["name"]))
        found[member["id"]] = client.status(member["client_urls"][0])
    return found


def _wait_member_healthy(client, url):
    give_up_at = time.monotonic() + HEALTHY_AFTER
    while True:
        health = client.health(url)
        if health["healthy"] or (health["error"] or "").startswith("Active Alarm(s): NOSPACE"):
            return None
        if time.monotonic() >= give_up_at:
            return health["error"]
        time.sleep(0.5)


def _healthy_enough(s, client, settings, allowed_alarms):
    """Why the cluster may not lose a member for a defragmentation now, or None: quorum,
    no split, every voting member serving (an alarm aside), no alarm but those allowed."""
    health = s.layer("health")(client)
    # "NOSPACE on <member id>" (etcd_membership.summarise)
    alarms = [a for a in health.get("alarms") or [] if a.split(" on ")[0] not in allowed_alarms]
    if not health.get("quorum", {}).get("ok") or health.get("split") or not all(
            m.get("healthy") or (m.get("error") or "").startswith("Active Alarm")
            for m in health["members"].values()) or alarms:
        return s.unhealthy(settings, health) or "alarms {}".format(", ".join(alarms))
    return None


def _defragment(s, etcd_pillar, settings, operation, force, allowed_alarms=()):
    """Defragment the cluster's voting members in the plan's order: what was done. The
    cluster's health is asked again before each member: a member blocked by its
    defragmentation while another is down could cost the quorum (and patroni its leader)."""
    with s.client(etcd_pillar, settings) as client:
        problem = _healthy_enough(s, client, settings, allowed_alarms)
        if problem:
            raise StepFailed("not defragmenting: {}".format(problem))
        members = client.members()
        statuses = _statuses(client, members)
        leader_id = s.layer("leader_status")(client, members)["id"]
    plan = defrag_plan(members, statuses, leader_id, settings["defrag_in_use_ratio"],
                       settings["defrag_min_bytes"], force)
    done = []
    with s.client(etcd_pillar, settings) as checks, \
            s.client(etcd_pillar, settings, timeout=DEFRAG_TIMEOUT) as client:
        for member, before, skipped in plan:
            role = "leader" if member["id"] == leader_id else "follower"
            if skipped:
                done.append("{} ({}): skipped, {}".format(member["name"], role, skipped))
                s.progress(done[-1])
                continue
            operation.check()  # the lock is still this operation's
            # before the first member the check above is a moment old: not asked twice
            problem = done and _healthy_enough(s, checks, settings, allowed_alarms)
            if problem:
                raise StepFailed("not defragmenting {} ({}): {}: stopped there; done: {}; "
                                 "continue with: salt-run etcd.defrag".format(
                                     member["name"], role, problem, "; ".join(done)))
            url = member["client_urls"][0]
            s.progress("{} ({}): defragmenting {} ({:.0%} in use)".format(
                member["name"], role, _mb(before["db_size"]),
                before["db_size_in_use"] / max(before["db_size"], 1)))
            started = time.monotonic()
            try:
                client.defragment(url)
            except CommandExecutionError as exc:  # etcd's errors: reported with what was done
                raise StepFailed("{} ({}): defragmentation failed: {}; done: {}; continue "
                                 "with: salt-run etcd.defrag".format(
                                     member["name"], role, exc, "; ".join(done) or "nothing")) from None
            took = time.monotonic() - started
            problem = _wait_member_healthy(checks, url)
            if problem:
                raise StepFailed("{} ({}) is not healthy {} s after its defragmentation ({}): "
                                 "stopped there; done: {}; continue with: salt-run "
                                 "etcd.defrag".format(member["name"], role, HEALTHY_AFTER,
                                                      problem, "; ".join(done) or "nothing"))
            after = checks.status(url)
            done.append("{} ({}): {} -> {} in {:.2f} s".format(
                member["name"], role, _mb(before["db_size"]), _mb(after["db_size"]), took))
            s.progress(done[-1])
    return done


@step
def defrag(cluster=None, force=False):
    """
    Defragment the cluster's voting members whose db is at least ``defrag_min_bytes`` and
    less than ``defrag_in_use_ratio`` in use (every member with ``force``): one at a time,
    followers first, the leader last, each healthy again before the next; only while the
    cluster is healthy; under the cluster's operation lock. Reports per member.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.defrag
        salt-run etcd.defrag cluster=etcd force=True
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    with s.operation(etcd_pillar, settings, "defrag") as operation:
        done = _defragment(s, etcd_pillar, settings, operation, force)
    return ok("cluster {}: {}".format(settings["name"], "; ".join(done)), done=done)


@step
def compact(cluster=None, revision=None):
    """
    Compact the cluster's key history up to ``revision`` (default: the current one): the
    space of older revisions is free for reuse (``etcd.defrag`` gives it back to the disk).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.compact
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    with s.operation(etcd_pillar, settings, "compact"):
        with s.client(etcd_pillar, settings, timeout=60) as client:
            revision = int(revision or client.revision())
            compacted = client.compact(revision)
    return ok("cluster {}: {} to revision {}".format(
        settings["name"], "compacted" if compacted else "already compacted", revision),
        revision=revision)


@step
def alarms(cluster=None):
    """
    The cluster's active alarms (NOSPACE, CORRUPT), by member name.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.alarms
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    with s.client(etcd_pillar, settings) as client:
        found = client.alarms()
        names = {m["id"]: m["name"] for m in client.members()}
    listed = ["{}: {}".format(names.get(a["member_id"], a["member_id"]), a["alarm"])
              for a in found]
    return ok("cluster {}: {}".format(settings["name"], ", ".join(listed) or "no alarm"),
              alarms=listed)


@step
def nospace(cluster=None):
    """
    The way out of a NOSPACE alarm (etcd takes no write): compact to the current revision,
    defragment every member (followers first, the leader last), and disarm the alarm only
    once every member's db is ``nospace_margin`` under ``quota_backend_bytes``; otherwise
    say which are still too big (raise the quota, or delete keys, then run it again).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.nospace
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    quota = settings["quota_backend_bytes"]
    limit = int(quota * (1 - settings["nospace_margin"]))
    done = []
    # NOSPACE takes no write, not even the lock's lease: the master's lock alone
    with s.operation(etcd_pillar, settings, "nospace", in_etcd=False) as operation:
        with s.client(etcd_pillar, settings, timeout=60) as client:
            revision = client.revision()
            client.compact(revision)
            done.append("compacted to revision {}".format(revision))
            s.progress(done[-1])
        done += _defragment(s, etcd_pillar, settings, operation, True, allowed_alarms=("NOSPACE",))
        with s.client(etcd_pillar, settings) as client:
            members = client.members()
            statuses = _statuses(client, members)
            big = ["{} ({})".format(m["name"], _mb(statuses[m["id"]]["db_size"]))
                   for m in members if m["id"] in statuses
                   and statuses[m["id"]]["db_size"] > limit]
            if big:
                raise StepFailed("still too big for quota {} less the margin ({}): {}; alarm "
                                 "kept; done: {}".format(_mb(quota), _mb(limit), ", ".join(big),
                                                         "; ".join(done)))
            disarmed = 0
            for alarm in client.alarms():
                if alarm["alarm"] == "NOSPACE":
                    client.alarm_disarm(alarm["member_id"], "NOSPACE")
                    disarmed += 1
            done.append("NOSPACE disarmed on {} member(s)".format(disarmed))
            s.progress(done[-1])
            client.put("/etcd-formula/nospace-check", str(revision))
            client.delete("/etcd-formula/nospace-check")
    return ok("cluster {}: writes are taken again; {}".format(settings["name"], "; ".join(done)),
              done=done)

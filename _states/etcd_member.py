"""
Manage an etcd cluster's membership: a member is present (added as a learner, then
promoted once it runs and has caught up; or added as a voter), or absent.

.. code-block:: yaml

    etcd-member-present:
      etcd_member.present:
        - name: etcd-4
        - peer_urls: https://10.77.0.14:2380

    etcd-member-absent:
      etcd_member.absent:
        - name: etcd-3

Connection arguments (``endpoints``, ``cluster``, ``ca_file``, ``cert_file``, ``key_file``,
``request_timeout``) are passed to the ``etcd_cluster`` execution module, whose defaults come
from the minion's pillar.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "etcd_member"


def __virtual__():
    if "etcd_cluster.members" not in __salt__:
        return (False, "etcd_member needs the etcd_cluster execution module")
    return __virtualname__


def _connection(endpoints, cluster, ca_file, cert_file, key_file, request_timeout):
    given = {
        "endpoints": endpoints,
        "cluster": cluster,
        "ca_file": ca_file,
        "cert_file": cert_file,
        "key_file": key_file,
        "request_timeout": request_timeout,
    }
    return {k: v for k, v in given.items() if v is not None}


def _peer_url_list(peer_urls):
    if isinstance(peer_urls, str):
        return [u.strip() for u in peer_urls.split(",") if u.strip()]
    return list(peer_urls or [])


def _role(member):
    if member is None:
        return "absent"
    return "learner" if member["is_learner"] else "voter"


def _find(members, name, peer_urls):
    """The member named ``name`` or having one of ``peer_urls`` (before it starts, etcd
    knows a member by its peer URLs only)."""
    for member in members:
        if (name and member["name"] == name) or set(peer_urls) & set(member["peer_urls"]):
            return member
    return None


def _plan_present(members, name, peer_urls, learner, promote):
    """
    What ``present`` must do, from the current members: ``(steps, stale_learner)``, steps
    among ``add_learner``, ``add_voter``, ``promote``; ``stale_learner`` a learner of another
    host that never started and blocks the add (an earlier run left it half-way): removed.
    """
    current = _find(members, name, peer_urls)
    if current is None:
        others = [m for m in members if m["is_learner"]]
        stale = next((m for m in others if not m["started"]), None)
        if others and stale is None:
            raise CommandExecutionError(
                "learner {} is still pending: promote it (etcd_member.present for it) or "
                "remove it before adding {}".format(others[0]["name"] or others[0]["id"], name)
            )
        if not learner:
            return ["add_voter"], stale
        return (["add_learner", "promote"] if promote else ["add_learner"]), stale
    if current["is_learner"] and (promote or not learner):
        return ["promote"], None
    return [], None


def present(
    name,
    peer_urls,
    learner=True,
    promote=True,
    timeout=120,
    endpoints=None,
    cluster=None,
    ca_file=None,
    cert_file=None,
    key_file=None,
    request_timeout=None,
):
    """
    Ensure etcd member ``name`` (with ``peer_urls``) is in the cluster.

    With ``learner=True`` (default) it is added as a learner; with ``promote=True``
    (default) it is then promoted to a voter once it runs and has caught up with the leader,
    waiting up to ``timeout`` seconds (start its etcd with the ``initial_cluster`` shown in
    ``changes`` meanwhile). With ``promote=False`` it is left a learner (an orchestration
    starts it, then runs this state again to promote it). With ``learner=False`` it is added
    as a voter at once.

    A learner left by an earlier run is finished (promoted); another host's learner that
    never started, which would block the add, is removed first, and the comment says so.

    name
        The member's etcd name (``<cluster>-<seq>``).
    peer_urls
        Its peer URL(s), a list or comma-separated.
    learner, promote, timeout
        See above.
    endpoints, cluster, ca_file, cert_file, key_file, request_timeout
        Connection arguments of the ``etcd_cluster`` module.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    connection = _connection(endpoints, cluster, ca_file, cert_file, key_file, request_timeout)
    peer_urls = _peer_url_list(peer_urls)
    try:
        members = __salt__["etcd_cluster.members"](**connection)
        current = _find(members, name, peer_urls)
        steps, stale = _plan_present(members, name, peer_urls, learner, promote)
        if not steps:
            ret["comment"] = "etcd member {} is present as a {}".format(name, _role(current))
            return ret

        wanted = "learner" if steps == ["add_learner"] else "voter"
        changes = {"membership": {"old": _role(current), "new": wanted}}
        if stale:
            changes["removed_stale_learner"] = stale["id"]
        comments = []
        if stale:
            comments.append(
                "learner {} ({}) never started and blocked the add: it {} removed".format(
                    stale["id"],
                    ",".join(stale["peer_urls"]),
                    "would be" if __opts__["test"] else "has been",
                )
            )

        if __opts__["test"]:
            ret["result"] = None
            ret["changes"] = changes
            comments.append(
                "etcd member {} would be {}".format(name, _describe(steps, test=True))
            )
            ret["comment"] = "; ".join(comments)
            return ret

        if stale:
            __salt__["etcd_cluster.member_remove"](stale["id"], **connection)
        member_id = current["id"] if current else None
        if "add_learner" in steps or "add_voter" in steps:
            added = __salt__["etcd_cluster.member_add"](
                name, peer_urls, learner="add_learner" in steps, **connection
            )
            member_id = changes["id"] = added["id"]
            changes["initial_cluster"] = added["initial_cluster"]
            # the add is done: say so even if the promote below fails
            ret["changes"] = changes
        if "promote" in steps:
            __salt__["etcd_cluster.member_promote"](member_id, timeout=timeout, **connection)
            changes["id"] = member_id
        ret["changes"] = changes
        comments.append("etcd member {} has been {}".format(name, _describe(steps, test=False)))
        ret["comment"] = "; ".join(comments)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        if ret["changes"]:
            ret["comment"] += " (after adding it as a learner: run this state again to finish)"
    return ret


def _describe(steps, test):
    added = {"add_learner": "added as a learner", "add_voter": "added as a voter"}
    done = [added[s] for s in steps if s in added]
    if "promote" in steps:
        done.append("promoted to a voter" if done else "promoted from learner to voter")
    return " and ".join(done)


def absent(
    name,
    peer_urls=None,
    force=False,
    endpoints=None,
    cluster=None,
    ca_file=None,
    cert_file=None,
    key_file=None,
    request_timeout=None,
):
    """
    Ensure etcd member ``name`` (or the member with ``peer_urls``, for one that never
    started and so has no name yet) is not in the cluster. Removing it is refused when it
    would lose quorum or leave one voter of two, unless ``force=True``; a leader hands its
    leadership over first.

    name
        The member's etcd name.
    peer_urls
        Its peer URL(s), to find it before it ever started.
    force
        Remove it even when that is unsafe.
    endpoints, cluster, ca_file, cert_file, key_file, request_timeout
        Connection arguments of the ``etcd_cluster`` module.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    connection = _connection(endpoints, cluster, ca_file, cert_file, key_file, request_timeout)
    try:
        members = __salt__["etcd_cluster.members"](**connection)
        current = _find(members, name, _peer_url_list(peer_urls))
        if current is None:
            ret["comment"] = "etcd member {} is absent".format(name)
            return ret

        changes = {"membership": {"old": _role(current), "new": "absent"}, "id": current["id"]}
        if __opts__["test"]:
            ret["result"] = None
            ret["changes"] = changes
            ret["comment"] = "etcd member {} would be removed".format(name)
            return ret

        removed = __salt__["etcd_cluster.member_remove"](current["id"], force=force, **connection)
        if removed.get("leader_moved_to"):
            changes["leader"] = {"old": name, "new": removed["leader_moved_to"]}
        ret["changes"] = changes
        ret["comment"] = "etcd member {} has been removed".format(name)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        ret["changes"] = {}
    return ret

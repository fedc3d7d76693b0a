"""
Manage an etcd cluster's membership: a member is present (added as a learner, then
promoted once it runs and has caught up; or added as a voter), or absent. The rules are the
membership layer's (``_utils/etcd_membership.py``), the same the runner follows.

.. code-block:: yaml

    etcd-member-present:
      etcd_member.present:
        - name: etcd-4
        - peer_urls: https://10.77.0.14:2380

    etcd-member-absent:
      etcd_member.absent:
        - name: etcd-3

Connection arguments (``endpoints``, ``cluster``, ``ca_file``, ``cert_file``, ``key_file``,
``request_timeout``) default from the minion's pillar, as for the ``etcd_cluster`` module.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "etcd_member"


def __virtual__():
    if "etcd_membership.connect" not in __utils__:
        return (False, "etcd_member needs the formula's _utils (etcd_membership) and etcd3gw")
    return __virtualname__


def _layer(function):
    return __utils__["etcd_membership." + function]


def _client(connection):
    return _layer("client_for")(__salt__["config.get"]("etcd", {}), __opts__["id"], **connection)


def _peer_url_list(peer_urls):
    if isinstance(peer_urls, str):
        return [u.strip() for u in peer_urls.split(",") if u.strip()]
    return list(peer_urls or [])


def _role(member):
    if member is None:
        return "absent"
    return "learner" if member["is_learner"] else "voter"


def _find(members, name, peer_urls):
    """The member named ``name`` or having one of ``peer_urls``."""
    return (_layer("find_by_peer_urls")(members, peer_urls) if peer_urls else None) or (
        next((m for m in members if name and m["name"] == name), None))


def _plan_present(members, current, peer_urls, learner, promote):
    """The steps ``present`` takes (``add_learner``, ``add_voter``, ``promote``), or the
    layer's refusal (a pending learner of another host is never removed here)."""
    if current is None:
        refusal = _layer("add_refusal")(members, peer_urls, learner)
        if refusal:
            raise CommandExecutionError(refusal)
        if not learner:
            return ["add_voter"]
        return ["add_learner", "promote"] if promote else ["add_learner"]
    if current["is_learner"] and (promote or not learner):
        return ["promote"]
    return []


def _describe(steps, test):
    added = {"add_learner": "added as a learner", "add_voter": "added as a voter"}
    done = [added[s] for s in steps if s in added]
    if "promote" in steps:
        done.append("promoted to a voter" if done else "promoted from learner to voter")
    return " and ".join(done)


def present(name, peer_urls, learner=True, promote=True, timeout=120, endpoints=None,
            cluster=None, ca_file=None, cert_file=None, key_file=None, request_timeout=None):
    """
    Ensure etcd member ``name`` (with ``peer_urls``) is in the cluster.

    With ``learner=True`` (default) it is added as a learner; with ``promote=True``
    (default) it is then promoted to a voter once it runs and has caught up with the leader,
    waiting up to ``timeout`` seconds (start its etcd with the ``initial_cluster`` shown in
    ``changes`` meanwhile). With ``promote=False`` it is left a learner (an orchestration
    starts it, then runs this state again to promote it). With ``learner=False`` it is added
    as a voter at once. A learner of this member left by an earlier run is finished; a
    pending learner of another host refuses the add (finish or remove that one first).

    name
        The member's etcd name (``<cluster>-<seq>``).
    peer_urls
        Its peer URL(s), a list or comma-separated.
    learner, promote, timeout
        See above.
    endpoints, cluster, ca_file, cert_file, key_file, request_timeout
        Connection arguments.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    connection = {"endpoints": endpoints, "cluster": cluster, "ca_file": ca_file,
                  "cert_file": cert_file, "key_file": key_file, "request_timeout": request_timeout}
    peer_urls = _peer_url_list(peer_urls)
    try:
        with _client(connection) as client:
            members = client.members()
            current = _find(members, name, peer_urls)
            steps = _plan_present(members, current, peer_urls, learner, promote)
            if not steps:
                ret["comment"] = "etcd member {} is present as a {}".format(name, _role(current))
                return ret
            wanted = "learner" if steps == ["add_learner"] else "voter"
            changes = {"membership": {"old": _role(current), "new": wanted}}
            if __opts__["test"]:
                ret.update(result=None, changes=changes, comment="etcd member {} would be {}".format(
                    name, _describe(steps, test=True)))
                return ret
            member_id = current["id"] if current else None
            if "add_learner" in steps or "add_voter" in steps:
                added = _layer("add")(client, name, peer_urls, learner="add_learner" in steps)
                member_id = changes["id"] = added["id"]
                changes["initial_cluster"] = added["initial_cluster"]
                # the add is done: say so even if the promote below fails
                ret["changes"] = changes
            if "promote" in steps:
                _layer("promote")(client, member_id, timeout=timeout)
                changes["id"] = member_id
            ret["changes"] = changes
            ret["comment"] = "etcd member {} has been {}".format(name, _describe(steps, test=False))
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        if ret["changes"]:
            ret["comment"] += " (after adding it as a learner: run this state again to finish)"
    return ret


def absent(name, peer_urls=None, force=False, endpoints=None, cluster=None, ca_file=None,
           cert_file=None, key_file=None, request_timeout=None):
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
        Connection arguments.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    connection = {"endpoints": endpoints, "cluster": cluster, "ca_file": ca_file,
                  "cert_file": cert_file, "key_file": key_file, "request_timeout": request_timeout}
    try:
        with _client(connection) as client:
            current = _find(client.members(), name, _peer_url_list(peer_urls))
            if current is None:
                ret["comment"] = "etcd member {} is absent".format(name)
                return ret
            changes = {"membership": {"old": _role(current), "new": "absent"}, "id": current["id"]}
            if __opts__["test"]:
                check = _layer("removal_check")(client, current["id"])
                if check["refusal"] and not force:
                    raise CommandExecutionError(check["refusal"] + " (force=True removes it anyway)")
                ret.update(result=None, changes=changes,
                           comment="etcd member {} would be removed".format(name))
                return ret
            removed = _layer("remove")(client, current["id"], force=force)
        if removed.get("leader_moved_to"):
            changes["leader"] = {"old": name, "new": removed["leader_moved_to"]}
        ret["changes"] = changes
        ret["comment"] = "etcd member {} has been removed".format(name)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err), changes={})
    return ret

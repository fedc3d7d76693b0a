"""
This host's etcd member purged: the state behind ``etcd.clean`` (honours safeguard, refuses
a member that may hold or serve data or is still in the cluster) and ``etcd.purge`` (the
explicit override, Pigsty's etcd_purge). Either way the data dir is archived first (0600,
read back), and only etcd's own data is deleted. The rules are ``etcd_cluster.purge``'s.

.. code-block:: yaml

    etcd-member-purged:
      etcd_data.purged:
        - name: etcd member
        - mode: clean
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "etcd_data"


def __virtual__():
    if "etcd_cluster.purge" not in __salt__:
        return (False, "etcd_data needs the etcd_cluster execution module")
    return __virtualname__


def purged(name, mode="clean"):
    """
    Ensure this host's etcd member is purged (see ``etcd_cluster.purge`` for ``mode``:
    ``clean`` or ``purge``).

    name
        Any name (it is only shown).
    mode
        ``clean`` (default) or ``purge``.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        planned = __salt__["etcd_cluster.purge"](mode=mode, test=True)
        plan = planned["plan"]
        todo = {k: v for k, v in plan.items() if v}
        if not todo:
            ret["comment"] = "etcd member {} is purged already".format(planned["name"])
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes={"would": todo}, comment="; ".join(
                ["etcd member {} would be purged ({})".format(planned["name"], mode)]
                + planned["notes"]))
            return ret
        done = __salt__["etcd_cluster.purge"](mode=mode)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret["changes"] = {"purged": done["done"]}
    if done["archive"]:
        ret["changes"]["archive"] = done["archive"]
    ret["comment"] = "; ".join(["etcd member {} has been purged".format(done["name"])]
                               + done["done"] + done["notes"])
    return ret

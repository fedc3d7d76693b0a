"""
The ``etcd`` pillar checked before anything changes: ``etcd/assert.sls`` runs it first.

.. code-block:: yaml

    etcd-pillar-valid:
      etcd_assert.pillar_valid:
        - failhard: True
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "etcd_assert"


def __virtual__():
    if "etcd_cluster.validate" not in __salt__:
        return (False, "etcd_assert needs the etcd_cluster execution module")
    return __virtualname__


def pillar_valid(name, minion_id=None):
    """
    Fail, naming every problem of pillar ``etcd`` at once, unless it is valid and this
    minion (or ``minion_id``) is in one of its clusters. Never changes anything.

    name
        Any name (it is only shown).

    minion_id
        The member to check for. Default: this minion.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        report = __salt__["etcd_cluster.validate"](minion_id=minion_id)
    except CommandExecutionError as err:
        # the message names every problem; ``info`` would only repeat them
        ret.update(result=False, comment=err.error)
        warnings = (err.info or {}).get("warnings") if isinstance(err.info, dict) else None
        if warnings:
            ret["warnings"] = warnings
        return ret
    except SaltInvocationError as err:
        ret.update(result=False, comment=str(err))
        return ret
    warnings = report.get("warnings") or []
    ret["comment"] = "pillar etcd is valid"
    if warnings:
        ret["comment"] += ", with {} warning(s):\n- {}".format(len(warnings), "\n- ".join(warnings))
        ret["warnings"] = warnings
    return ret

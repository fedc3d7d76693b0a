"""
etcd's systemd service on a member: running, enabled and healthy; restarted (when a watched
config, unit or CA file changes) one member at a time across the cluster.

- ``running``: start and enable etcd if needed, then wait until this member is healthy
  (it serves a linearizable read) and knows a leader. On a fresh bootstrap every member
  starts at once, so a member only becomes healthy when enough of the others have started.
- ``mod_watch``: restart a running member only while the cluster is healthy, holding a
  lease-backed lock in etcd itself, so that however many members apply a change at once,
  one member at most is down; the lock is released once this member is healthy again
  and knows a leader. A member that is not running is just started (no lock: nothing runs
  that a start could hurt).

.. code-block:: yaml

    etcd-service-running:
      etcd_service.running:
        - name: etcd
        - watch:
          - etcd_config: etcd-config-file-managed
"""

import os.path
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "etcd_service"

POLL_SECONDS = 0.2


def __virtual__():
    if "etcd_cluster.settings" not in __salt__:
        return (False, "etcd_service needs the etcd_cluster execution module")
    return __virtualname__


def _settings():
    settings = __salt__["etcd_cluster.settings"]()
    if not settings:
        raise SaltInvocationError(
            "minion {} is in no cluster of pillar etcd:clusters".format(__opts__["id"])
        )
    return settings


def _client(endpoints):
    tls = __utils__["etcd_settings.client_tls_files"]()
    return __utils__["etcd_membership.connect"](endpoints, timeout=2, **tls)


def _member_state(settings):
    """(healthy and a leader known, why not) for this member."""
    own = settings["client_url"]
    with _client([own]) as client:
        health = client.health(own)
        if not health["healthy"]:
            return False, health["error"]
        try:
            status = client.status(own)
        except CommandExecutionError as err:
            return False, str(err)
    if int(status["leader"], 16) == 0:
        return False, "no leader known"
    return True, None


def _cluster_state(settings):
    """(healthy, why not) for the whole cluster (one cluster, every voter healthy, a leader,
    no alarm), asked of every pillar endpoint."""
    with _client(settings["endpoints"]) as client:
        health = __utils__["etcd_membership.health"](client)
    if health.get("healthy"):
        return True, None
    if health.get("error"):
        return False, health["error"]
    sick = [
        "{}: {}".format(name, member.get("error") or "unhealthy")
        for name, member in sorted((health.get("members") or {}).items())
        if not member.get("healthy")
    ]
    if health.get("alarms"):
        sick.append("alarms: " + ", ".join(health["alarms"]))
    return False, "; ".join(sick) or "no leader"


def _wait(check, timeout, what):
    """Poll ``check()`` -> (ok, why) until ok, or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ok, why = check()
        if ok:
            return
        if time.monotonic() >= deadline:
            raise CommandExecutionError(
                "{} after {} s: {}".format(what, timeout, why)
            )
        time.sleep(POLL_SECONDS)


def _refuse_a_member_the_cluster_does_not_list(settings):
    """A member that the running cluster does not list is never started: etcd would refuse
    it. With data, it was removed while its host was away, and its data can never rejoin.
    Without data, it was never added, or its add was rolled back (etcd.add_member's promote
    step removes a learner that did not catch up, possibly while the host's highstate was
    still on its way to this state): etcd would restart in a loop on "member count is
    unequal". Asked of the other members' peer ports; no answer proves nothing, and a
    bootstrap under way lists every initial member. Without its peer certificate (a test
    run on a fresh host: the certificate is only predicted) it cannot ask, nor could etcd
    start."""
    others = {m: u for m, u in settings["peer_urls"].items() if m != settings["minion_id"]}
    tls = __utils__["etcd_settings.peer_tls_files"]()
    if not others or not all(__salt__["file.file_exists"](path) for path in tls.values()):
        return
    answers = __utils__["etcd_membership.probe_peers"](others, timeout=2, **tls)
    cluster_id = __utils__["etcd_membership.removed_by"](answers, settings["peer_url"])
    if not cluster_id:
        return
    if __salt__["file.directory_exists"](os.path.join(settings["data_dir"], "member")):
        raise CommandExecutionError(
            "member {} holds data, but cluster {} runs without it (it was removed): not "
            "started. Purge it (state.apply etcd.purge, which archives the data first) and "
            "add it again with etcd.add_member".format(settings["member_name"], cluster_id))
    raise CommandExecutionError(
        "member {} is not in the membership of cluster {} (never added, or its add was "
        "rolled back): not started. Add it: salt-run state.orchestrate etcd.add_member "
        "pillar='{{\"etcd_member\": \"{}\"}}'".format(
            settings["member_name"], cluster_id, settings["minion_id"]))


def running(name="etcd", timeout=120):
    """
    Ensure etcd runs, is enabled, and this member is healthy with a leader known.

    name
        The systemd service. Default ``etcd``.

    timeout
        Seconds to wait for this member to become healthy. Default 120.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        settings = _settings()
        member = settings["member_name"]
        changes = {}
        if not __salt__["service.enabled"](name):
            changes["enabled"] = True
        if not __salt__["service.status"](name):
            changes["started"] = True
        if "started" in changes:
            _refuse_a_member_the_cluster_does_not_list(settings)  # read-only: a test run predicts it too
        if __opts__["test"]:
            if changes:
                ret.update(
                    result=None,
                    changes=changes,
                    comment="Service {} would be {}".format(name, " and ".join(sorted(changes))),
                )
            else:
                ret["comment"] = "Service {} is running and enabled".format(name)
            return ret
        if "enabled" in changes:
            __salt__["service.enable"](name)
        if "started" in changes:
            # --no-block: etcd tells systemd it is ready only once the cluster has a
            # quorum; the wait below is ours, with its own clear failure
            __salt__["service.start"](name, no_block=True)
        _wait(
            lambda: _member_state(settings),
            timeout,
            "member {} is not healthy with a leader".format(member),
        )
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret["changes"] = changes
    if changes:
        ret["comment"] = "Service {} has been {}; member {} is healthy with a leader".format(
            name, " and ".join(sorted(changes)), member
        )
    else:
        ret["comment"] = "Service {} is running and enabled; member {} is healthy".format(
            name, member
        )
    return ret


def mod_watch(name, sfun=None, timeout=120, lock_wait=600, lock_ttl=60, **kwargs):
    """
    Restart etcd after a watched change, one member of the cluster at a time.

    name
        The systemd service. Default ``etcd``.

    timeout
        Seconds to wait for the cluster to be healthy before restarting, and for this
        member to be healthy with a leader after. Default 120.

    lock_wait
        Seconds to wait for the restart lock while other members restart. Default 600.

    lock_ttl
        Seconds the lock outlives a holder that died. Default 60.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        settings = _settings()
        if not __salt__["service.status"](name):
            # nothing runs here: a start is all there is to do (a fresh bootstrap starts
            # every member at once)
            return running(name, timeout=timeout)
        member = settings["member_name"]
        if __opts__["test"]:
            ret.update(
                result=None,
                changes={"restarted": True},
                comment="Service {} would be restarted (member {}, one member at a time)".format(
                    name, member
                ),
            )
            return ret
        if len(settings["members"]) == 1:
            __salt__["service.restart"](name)
            _wait(lambda: _member_state(settings), timeout,
                  "member {} is not healthy with a leader".format(member))
        else:
            _restart_in_turn(name, settings, timeout, lock_wait, lock_ttl)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret.update(
        changes={"restarted": True},
        comment="Service {} has been restarted; member {} is healthy with a leader".format(
            name, member
        ),
    )
    return ret


def _restart_in_turn(name, settings, timeout, lock_wait, lock_ttl):
    member = settings["member_name"]
    unhealthy = "cluster {} is not healthy, so member {} is not restarted".format(
        settings["name"], member
    )
    cluster_state = lambda: _cluster_state(settings)  # noqa: E731
    _wait(cluster_state, timeout, unhealthy)
    own = settings["client_url"]
    # the lock's lease is kept alive through the other members while this one is down
    endpoints = [url for url in settings["endpoints"] if url != own] + [own]
    lock_name = __utils__["etcd_settings.restart_lock"](settings["name"])
    with _client(endpoints) as client, client.lock(lock_name, ttl=lock_ttl, wait=lock_wait) as held:
        # the previous holder released the lock once its member was healthy: check the
        # whole cluster again, a member elsewhere may have failed meanwhile
        _wait(cluster_state, timeout, unhealthy)
        # a lock whose lease lapsed may be another member's now: no restart then
        held.check()
        # blocking: systemd returns once etcd has rejoined (Type=notify)
        if not __salt__["service.restart"](name):
            raise CommandExecutionError("systemctl restart {} failed".format(name))
        _wait(
            lambda: _member_state(settings),
            timeout,
            "member {} is not healthy with a leader after its restart".format(member),
        )

"""
Rolling etcd upgrades (``salt-run etcd.upgrade version=3.5.30``; the ``etcd.upgrade``
orchestration; docs/operations.md "Rolling upgrade"), under etcd's own rules
(``etcd_versions.plan``: one minor at a time, the floors, no downgrade, no known-bad patch
for clusters with users other than root, v2 off before 3.6):

1. the cluster healthy, the plan checked: nothing changes when etcd's rules refuse it;
2. a verified snapshot (``etcd.snapshot``: the way back once the cluster version moved);
3. one member at a time, followers first, leadership moved off the leader before its turn:
   highstate with the new package (pillar ``etcd_upgrade``: the only way highstate changes
   the etcd version of a member that runs), the config rewritten for the new version, etcd
   restarted; the member healthy again, running the new version, before the next;
4. at the end, the cluster version checked (it moves up once every member runs the new minor).

Holds the cluster's operation lock. Interrupted and run again, it goes on with the members
that do not run the new version yet. Reports per member as it goes.

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

# Seconds a member gets to serve again after its upgrade, and the cluster to move its version.
HEALTHY_AFTER = 90
CLUSTER_VERSION_AFTER = 60


def __virtual__():
    return __virtualname__


def _steps():
    return etcd_steps.of(globals())


def _rules(function):
    return __utils__["etcd_versions." + function]


def _survey(s, etcd_pillar, settings):
    """({minion: etcd version}, cluster version, users other than root) of the voting members."""
    names = s.names(settings)
    with s.client(etcd_pillar, settings) as client:
        members = [m for m in client.members() if not m["is_learner"]]
        running = {}
        cluster_version = ""
        for member in members:
            url = (member["client_urls"] or [""])[0]
            if url not in names:
                raise StepFailed("{} is no pillar member's endpoint: nothing upgraded".format(url))
            found = client.versions(url)
            running[names[url]] = found["server"]
            cluster_version = cluster_version or found["cluster"]
        try:
            users = client.users()
        except CommandExecutionError:  # authentication on, no root credentials here
            users = ["(unknown)"]
    return running, cluster_version, [u for u in users if u != "root"]


@step
def upgrade(version=None, cluster=None):
    """
    Upgrade the cluster's etcd to ``version``, one member at a time (module documentation).
    Refused, changing nothing, when etcd's rules refuse the plan, the cluster is unhealthy,
    or pillar ``etcd:pkg:version`` pins another version.

    version
        An etcd version (``3.5.30``: its newest package) or a package version (``3.5.30-2``).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.upgrade version=3.5.30
        salt-run state.orchestrate etcd.upgrade pillar='{"etcd_version": "3.5.30"}'
    """
    s = _steps()
    problem = __utils__["etcd_validate.version_problem"](version, "version")
    if problem:
        raise StepFailed(problem)
    version = str(version)
    etcd_pillar, settings = s.cluster_context(cluster)
    pinned = (etcd_pillar.get("pkg") or {}).get("version")
    if pinned and str(pinned) != version:
        raise StepFailed("pillar etcd:pkg:version pins {}: set it to {} (or remove it) first, "
                         "or the next highstate would install {} again; nothing was "
                         "changed".format(pinned, version, pinned))
    again = "salt-run etcd.upgrade version={}".format(version)
    with s.operation(etcd_pillar, settings, "upgrade") as operation:
        s.rolling_order(etcd_pillar, settings, again)  # healthy first
        running, cluster_version, users = _survey(s, etcd_pillar, settings)
        try:
            plan = _rules("plan")(version, running, cluster_version, non_root_users=bool(users),
                                  enable_v2=bool(settings.get("enable_v2")))
        except CommandExecutionError as exc:
            raise StepFailed("{}; nothing was changed".format(exc)) from None
        if not plan["members"]:
            return ok("every member of {} runs etcd {} already (cluster version {})".format(
                settings["name"], plan["target"], cluster_version), done=[])
        done = []
        s.progress("{}: etcd {} -> {} on {}".format(settings["name"], ", ".join(
            sorted(set(running.values()))), plan["target"], ", ".join(plan["members"])))
        snap = __salt__["etcd.snapshot"](cluster=settings["name"])
        if not isinstance(snap, dict) or snap.get("result") is not True:
            raise StepFailed("no verified snapshot, nothing upgraded: {}".format(
                (snap or {}).get("Error", snap)))
        done.append("snapshot {} (revision {})".format(snap["snapshot"]["path"],
                                                       snap["snapshot"]["revision"]))
        s.progress(done[-1])
        handed = {"etcd_upgrade": {"version": _rules("package_version")(version)}}
        for minion, leads in s.rolling_order(etcd_pillar, settings, again):
            if minion not in plan["members"]:
                continue
            operation.check()
            url = __utils__["etcd_settings.client_url"](settings, minion)
            with s.client(etcd_pillar, settings) as client:
                if leads:
                    moved = s.layer("move_leader")(client)
                    s.progress("leadership moved {} -> {} before its upgrade".format(
                        moved["old"], moved["new"]))
            s.progress("{}: upgrading to {}".format(minion, plan["target"]))
            started = time.monotonic()
            failures = s.apply(minion, "list", "etcd", handed)
            if failures:
                raise StepFailed("the upgrade of {} failed: {}; done: {}; continue with: {}".format(
                    minion, failures.get(minion) or failures, "; ".join(done), again))
            now = _wait_member(s, etcd_pillar, settings, url, plan["target"])
            if now is not None:
                raise StepFailed("{} after its upgrade: {}; stopped there; done: {}; continue "
                                 "with: {}".format(minion, now, "; ".join(done), again))
            done.append("{}: etcd {} in {:.1f} s, healthy".format(
                minion, plan["target"], time.monotonic() - started))
            s.progress(done[-1])
        moved = _wait_cluster_version(s, etcd_pillar, settings, plan)
        done.append("cluster version {}".format(moved))
        s.progress(done[-1])
    return ok("{}: upgraded to etcd {}: {}".format(settings["name"], plan["target"],
                                                   "; ".join(done)),
              done=done, changes={"version": {"old": running, "new": plan["target"]}})


def _wait_member(s, etcd_pillar, settings, url, target):
    """None once the member at ``url`` runs ``target`` and the cluster is healthy, else why."""
    give_up_at = time.monotonic() + HEALTHY_AFTER
    why = "not checked"
    with s.client(etcd_pillar, settings) as client:
        while time.monotonic() < give_up_at:
            try:
                server = client.versions(url)["server"]
            except CommandExecutionError as exc:
                server, why = None, str(exc)
            if server is not None and server != target:
                return "it runs etcd {}, not {}".format(server, target)
            if server is not None:
                why = s.unhealthy(settings, s.layer("health")(client))
                if why is None:
                    return None
            time.sleep(1)
    return why


def _wait_cluster_version(s, etcd_pillar, settings, plan):
    wanted = ".".join(plan["target"].split(".")[:2])
    give_up_at = time.monotonic() + CLUSTER_VERSION_AFTER
    url = __utils__["etcd_settings.client_url"](settings, sorted(settings["members"])[0])
    with s.client(etcd_pillar, settings) as client:
        while True:
            found = client.versions(url)["cluster"]
            if found.startswith(wanted + "."):
                return found
            if time.monotonic() >= give_up_at:
                raise StepFailed("every member runs etcd {} but the cluster version is still "
                                 "{} after {} s: look at the members' logs".format(
                                     plan["target"], found, CLUSTER_VERSION_AFTER))
            time.sleep(1)

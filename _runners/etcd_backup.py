"""
Never lose the cluster (``salt-run etcd.*``, docs/operations.md): verified snapshots on the
salt-master, restore from one, recovery from a lost quorum with a survivor, and the
operation lock every orchestration holds from its first step to its last.

.. code-block:: bash

    salt-run etcd.snapshot                      # the only cluster; or cluster=<name>
    salt-run state.orchestrate etcd.restore pillar='{"etcd_snapshot": "latest", "etcd_confirm": "etcd"}'
    salt-run state.orchestrate etcd.recover pillar='{"etcd_cluster": "etcd"}'

Snapshots are streamed from a member through the one client, verified (etcd's sha256,
revision, keys, size), kept in ``<etcd:backup:dir>/<cluster>/`` (0700, files 0600) with a
manifest, pruned by count and age, handed to an offsite command. A restore hands every
member the same file over a one-off mTLS transfer (never Salt's publish channel, which every
minion can read). Long steps report per member as they go (progress events).

The same virtual name as etcd_runner.py (``etcd``): one ``salt-run etcd.*`` namespace, one
file per idea; both share etcd_steps.py.
"""

import datetime
import logging
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_steps  # noqa: E402
from etcd_steps import MinionSilent, StepFailed, ok, step  # noqa: E402
from salt.exceptions import CommandExecutionError, SaltInvocationError  # noqa: E402

log = logging.getLogger(__name__)

__virtualname__ = "etcd"

# Port the master serves a snapshot on during a restore (0: any free one).
TRANSFER_PORT = 0
# Seconds a restored cluster gets to be healthy.
RESTORE_HEALTH_TIMEOUT = 120


def __virtual__():
    return __virtualname__


def _steps():
    return etcd_steps.of(globals())


def _layer(function):
    return __utils__["etcd_membership." + function]


def _snap(function):
    return __utils__["etcd_snapshot." + function]


def _cluster_dir(etcd_pillar, cluster):
    return __utils__["etcd_settings.backup_dir"](etcd_pillar, cluster["name"])


# -- the operation lock ---------------------------------------------------------------------------


@step
def begin(what, cluster=None, member=None):
    """
    The first step of every orchestration: hold cluster's operation lock until ``end`` (or a
    failing step) releases it. A second operation is refused, naming the first; a killed
    one's lock frees itself (at once on this master, after its lease in etcd).

    what
        The operation, for the holder's name (e.g. ``add_member h4``).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.begin "restore" cluster=etcd
    """
    s = _steps()
    if member:
        s.check_minion_id(member)
    etcd_pillar, settings = s.cluster_context(cluster, member)
    operation = __utils__["etcd_operations.begin"](settings["name"], str(what), s.lock_dir(),
                                                   s.lock_client(etcd_pillar, settings))
    return ok("cluster {} is locked for {}{}".format(
        settings["name"], operation.holder, "; " + "; ".join(operation.notes)
        if operation.notes else ""), holder=operation.holder)


@step
def end(cluster=None, member=None):
    """
    The last step of every orchestration: release the cluster's operation lock.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.end cluster=etcd
    """
    s = _steps()
    _, settings = s.cluster_context(cluster, member)
    released = __utils__["etcd_operations.end"](settings["name"])
    return ok("cluster {}: {}".format(settings["name"], "lock released ({})".format(
        released.what) if released else "no lock held by this run"))


# -- snapshots ------------------------------------------------------------------------------------


def _pick_source(health, member_endpoint=None):
    """The endpoint to snapshot: ``member_endpoint``, else the leader, else (no quorum) the
    member up with the highest raft index."""
    if member_endpoint:
        return member_endpoint
    views = health.get("views") or {}
    up = {e: v["status"] for e, v in views.items() if v.get("status")}
    leaders = [e for e, st in up.items() if st["leader"] == st["id"]]
    if leaders:
        return leaders[0]
    if not up:
        raise StepFailed("no member answers: nothing to take a snapshot from")
    return max(up, key=lambda e: up[e]["raft_index"])


def _take(s, etcd_pillar, cluster, member=None):
    """Take, verify, record, prune and ship one snapshot: its manifest entry."""
    directory = _cluster_dir(etcd_pillar, cluster)
    backup = __utils__["etcd_settings.backup"](etcd_pillar)
    names = s.names(cluster)
    source = s.member(cluster, member)["client_url"] if member else None
    with s.client(etcd_pillar, cluster) as client:
        health = _layer("health")(client)
        endpoint = _pick_source(health, source)
        s.progress("snapshot of cluster {} from {} ({})".format(
            cluster["name"], names.get(endpoint, endpoint), endpoint))
        started = time.monotonic()
        entry = _snap("take")(client, endpoint, directory, cluster["name"],
                              names.get(endpoint, endpoint))
    entry["took"] = round(time.monotonic() - started, 2)
    s.progress("snapshot {} verified: revision {}, {} keys, {} bytes, {} s".format(
        entry["file"], entry["revision"], entry["keys"], entry["bytes"], entry["took"]))
    dropped = _snap("prune")(directory, backup["keep"], backup["max_age_days"])
    entry["pruned"] = [d["file"] for d in dropped]
    if backup["offsite_command"]:
        code, output = _snap("offsite")(backup["offsite_command"], entry["path"])
        entry["offsite"] = {"retcode": code, "output": output}
        if code != 0:
            raise StepFailed("snapshot {} is verified and kept, but the offsite command failed "
                             "({}): {}".format(entry["path"], code, output))
    return entry


@step
def snapshot(cluster=None, member=None, source=None):
    """
    Take a snapshot of the cluster on the master: from the leader (a member up with the most
    data when there is no quorum; ``source`` names a member), verified (etcd's integrity
    hash, revision, keys, size), kept in ``<etcd:backup:dir>/<cluster>/`` (0600) and its
    manifest, older ones pruned (``keep``, ``max_age_days``), the offsite command run.
    Holds the cluster's operation lock, or runs inside the orchestration that does.

    cluster, member
        Which cluster: by name, or a member minion's.
    source
        The minion to take it from (default: the leader).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.snapshot
        salt-run etcd.snapshot cluster=etcd source=h2
    """
    s = _steps()
    if source:
        s.check_minion_id(source, "source")
    etcd_pillar, settings = s.cluster_context(cluster, member)
    if source and source not in settings["members"]:
        raise StepFailed("source: {!r} is no member of cluster {} ({})".format(
            source, settings["name"], ", ".join(sorted(settings["members"]))))
    try:
        with s.operation(etcd_pillar, settings, "snapshot"):
            entry = _take(s, etcd_pillar, settings, source)
    except (StepFailed, CommandExecutionError, SaltInvocationError):
        _export_snapshot_metrics(etcd_pillar, settings, success=False)
        raise
    _export_snapshot_metrics(etcd_pillar, settings, success=True)
    return ok("snapshot {} of cluster {} verified: revision {}, {} keys, {} bytes (sha256 {})"
              .format(entry["path"], settings["name"], entry["revision"], entry["keys"],
                      entry["bytes"], entry["sha256"][:16]), snapshot=entry)


def _export_snapshot_metrics(etcd_pillar, settings, success):
    """The cluster's snapshot metrics for prometheus (etcd_metrics), on the master: the
    newest verified snapshot's time and this run's outcome. Never fails the snapshot."""
    entries = _snap("load")(__utils__["etcd_settings.backup_dir"](etcd_pillar, settings["name"]))
    last = None
    if entries:
        last = _snap("taken_at_timestamp")(entries[-1])
    text = __utils__["etcd_metrics.render"](
        __utils__["etcd_metrics.snapshot_samples"](settings["name"], last, success))
    directory = __utils__["etcd_settings.monitoring"](etcd_pillar)["textfile_dir"]
    try:
        __utils__["etcd_metrics.write"](directory, "etcd_formula_snapshots_{}.prom".format(
            settings["name"]), text)
    except OSError as exc:
        log.warning("snapshot metrics of cluster %s not written: %s", settings["name"], exc)


def snapshots(cluster=None):
    """
    The verified snapshots of a cluster, newest last, with their age.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.snapshots
    """
    s = _steps()
    try:
        etcd_pillar, settings = s.cluster_context(cluster)
    except StepFailed as exc:
        return etcd_steps.failed(str(exc))
    entries = _snap("load")(_cluster_dir(etcd_pillar, settings))
    return [dict(e, age_hours=round(_snap("age_hours")(e), 1)) for e in entries]


# -- restore --------------------------------------------------------------------------------------


def _confirmed(confirm, settings):
    if confirm != settings["name"]:
        raise StepFailed(
            "a restore replaces the data of cluster {0} with the snapshot's: confirm it with "
            "etcd_confirm: {0} (got {1!r})".format(settings["name"], confirm))


@step
def restore_preflight(snapshot="latest", confirm=None, cluster=None, force=False):
    """
    Step 2 of etcd.restore: the snapshot (``latest`` or a file of the manifest) verified
    anew, every member's minion answers, ``safeguard`` honoured (``etcd_force: true``
    overrides it), and ``confirm`` names the cluster. Remembers the snapshot for the
    later steps. Nothing is stopped before this passes.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.restore_preflight latest confirm=etcd
    """
    s = _steps()
    s.check_bool(force)
    etcd_pillar, settings = s.cluster_context(cluster)
    _confirmed(confirm, settings)
    if settings["safeguard"] and not force:
        raise StepFailed("cluster {} has safeguard: true: a restore replaces its data; "
                         "etcd_force: true overrides it".format(settings["name"]))
    directory = _cluster_dir(etcd_pillar, settings)
    entry = _snap("resolve")(directory, snapshot)
    checked = _snap("verify")(os.path.join(directory, entry["file"]))
    if checked["sha256"] != entry["sha256"]:
        raise StepFailed("{} changed since it was verified (sha256 {}, manifest {}): "
                         "refused".format(entry["file"], checked["sha256"], entry["sha256"]))
    answered = s.answers(",".join(settings["members"]), "test.ping", timeout=5)
    silent = [m for m in settings["members"] if m not in answered]
    if silent:
        raise StepFailed("{} do(es) not answer: every member is restored from the same file, "
                         "at once; start them first".format(", ".join(sorted(silent))))
    with s.operation(etcd_pillar, settings, "restore") as operation:
        operation.context["snapshot"] = dict(entry, path=os.path.join(directory, entry["file"]))
    return ok("snapshot {} (revision {}, {} keys, taken {} from {}) will replace cluster {}'s "
              "data on {}".format(entry["file"], entry["revision"], entry["keys"],
                                  entry["taken_at"], entry["member"], settings["name"],
                                  ", ".join(__utils__["etcd_settings.by_seq"](settings))),
              snapshot=entry)


def _patroni(s, settings, verb, only=None):
    """``patronictl pause|resume --wait`` on the patroni minions (``only``: those client
    names): (what was done, as text; the client names it was done for)."""
    done, acted = [], []
    for name, spec in sorted(__utils__["etcd_settings.client_specs"](settings).items()):
        target, tgt_type = __utils__["etcd_settings.client_target"](spec)
        if spec["kind"] != "patroni" or not target:
            continue
        if only is not None and name not in only:
            continue
        # patronictl waits for the DCS as long as it takes: bounded here
        found = s.answers(target, "cmd.run_all",
                          [["patronictl", "-c", spec["config"], verb, "--wait"]],
                          {"python_shell": False, "timeout": 30},
                          tgt_type=tgt_type, timeout=45)
        ran = {m: r for m, (r, _) in found.items() if isinstance(r, dict)}
        for minion, result in sorted(ran.items()):
            if result.get("retcode") == 0:
                done.append("patroni on {}: {}d".format(minion, verb))
                s.progress("patroni on {}: {}d".format(minion, verb))
                acted.append(name)
                break  # one patronictl per patroni cluster: it acts for every member
        else:
            why = "; ".join("{}: {}".format(m, (r.get("stderr") or r.get("stdout") or "")
                                            .strip()[-200:]) for m, r in sorted(ran.items()))
            done.append("patroni ({}) not {}d: {}".format(target, verb, why or "no answer"))
    return done, acted


@step
def patroni_pause(cluster=None):
    """
    Step of etcd.restore: ``patronictl pause`` on the cluster's patroni clients, so that no
    primary is demoted while etcd is away (not possible when etcd is down already: said so).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.patroni_pause cluster=etcd
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    with s.operation(etcd_pillar, settings, "patroni pause") as operation:
        with s.client(etcd_pillar, settings, timeout=3) as client:
            health = _layer("health")(client)
        if not health.get("quorum", {}).get("ok"):
            operation.context["patroni_paused"] = []
            return ok("patroni not paused: etcd has no quorum (patroni cannot be paused "
                      "through a DCS that is down; it keeps what it runs)")
        done, paused = _patroni(s, settings, "pause")
        # resumed at the end: only what was paused (a DCS already down cannot pause it)
        operation.context["patroni_paused"] = paused
    return ok("; ".join(done) or "no patroni client in pillar", done=done)


@step
def patroni_resume(cluster=None):
    """
    Last step of etcd.restore: ``patronictl resume`` on the cluster's patroni clients.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.patroni_resume cluster=etcd
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    with s.operation(etcd_pillar, settings, "patroni resume") as operation:
        paused = operation.context.get("patroni_paused")
        done, resumed = _patroni(s, settings, "resume", only=paused)
    if len(resumed) < len(paused or []):
        raise StepFailed("; ".join(done))
    return ok("; ".join(done) or "nothing paused to resume", done=done)


def _stop_all(s, settings):
    minions = __utils__["etcd_settings.by_seq"](settings)
    found = s.answers(",".join(minions), "service.stop", ["etcd"], timeout=60)
    states = s.answers(",".join(minions), "etcd_cluster.local_state", timeout=10)
    running = [m for m in minions if not isinstance(states.get(m, (None,))[0], dict)
               or states[m][0]["running"]]
    if running:
        raise StepFailed("etcd is still running, or its host did not say, on {} (stop "
                         "answered: {}): nothing restored".format(
                             ", ".join(running), {m: found.get(m, (None,))[0] for m in running}))
    s.progress("etcd stopped on {}".format(", ".join(minions)))
    return minions


@step
def restore_members(cluster=None):
    """
    Step of etcd.restore: every member's etcd stopped (checked), then every member restored
    from the SAME snapshot (the one restore_preflight verified), with the pillar's membership
    and a new cluster token; the old data dirs archived first. Per member as it goes.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.restore_members cluster=etcd
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    operation = __utils__["etcd_operations.current"](settings["name"])
    if operation is None or "snapshot" not in operation.context:
        raise StepFailed("no verified snapshot chosen for this restore: run the whole "
                         "orchestration (salt-run state.orchestrate etcd.restore ...)")
    entry = operation.context["snapshot"]
    minions = _stop_all(s, settings)
    token = __utils__["etcd_settings.restored_token"](
        settings, datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S"))
    tls = s.admin_tls(etcd_pillar)
    done = []
    host = __opts__.get("interface") or "0.0.0.0"
    with __utils__["etcd_transfer.serve"](entry["path"], tls["ca_file"], host=host,
                                          port=__opts__.get("etcd_transfer_port", TRANSFER_PORT)) as served:
        for minion in minions:
            operation.check()
            s.progress("restoring {} from {}".format(minion, entry["file"]))
            ret = _restore_one(s, minion, served, token)
            done.append("{}: {}".format(minion, "; ".join(ret["done"])))
            s.progress("{} restored".format(minion))
    return ok("every member restored from {} (token {})".format(entry["file"], token),
              done=done, token=token, changes={"restored": minions})


def _restore_one(s, minion, served, token):
    """etcd_cluster.restore on ``minion``: it fetches the snapshot from the master at the
    address it knows the master by (its own ``master_ip``)."""
    master_ip = s.on_minion(minion, "config.get", "master_ip", timeout=10, expect=str)
    if not isinstance(master_ip, str) or not master_ip:
        raise StepFailed("{} does not know its master's address (config.get master_ip)".format(
            minion))
    return s.on_minion(minion, "etcd_cluster.restore", master_ip, served["port"],
                       served["path"], served["fingerprint"], served["sha256"], token,
                       timeout=600, expect=dict)


@step
def start_members(cluster=None):
    """
    Step of etcd.restore and etcd.recover: etcd started on every member at once (a restored
    cluster needs its quorum to start), then the cluster checked healthy.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.start_members cluster=etcd
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    minions = __utils__["etcd_settings.by_seq"](settings)
    found = s.answers(",".join(minions), "service.start", ["etcd"], {"no_block": True},
                      timeout=30)
    silent = [m for m in minions if m not in found]
    if silent:
        raise StepFailed("{} did not answer the start".format(", ".join(silent)))
    s.progress("etcd started on {}".format(", ".join(minions)))
    with s.client(etcd_pillar, settings) as client:
        health = _layer("wait_healthy")(client, timeout=RESTORE_HEALTH_TIMEOUT)
    why = s.unhealthy(settings, health)
    if why:
        raise StepFailed(why)
    return ok("cluster {} is healthy: {} voting members, leader {}".format(
        settings["name"], health["quorum"]["voters"], health["leader"]))


# -- recovery from a lost quorum --------------------------------------------------------------------


@step
def recover_preflight(cluster=None, survivor=None, force=False):
    """
    Step 2 of etcd.recover: the cluster has lost its quorum (a healthy one is refused), the
    survivor (``survivor``, or the member up with the highest raft index) answers with its
    data, and no other old member runs (refused while one does: stop it first).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.recover_preflight cluster=etcd
    """
    s = _steps()
    s.check_bool(force)
    if survivor:
        s.check_minion_id(survivor, "survivor")
    etcd_pillar, settings = s.cluster_context(cluster)
    if settings["safeguard"] and not force:
        raise StepFailed("cluster {} has safeguard: true: a recovery purges the other members' "
                         "old data (archived first); etcd_force: true overrides it".format(
                             settings["name"]))
    names = s.names(settings)
    with s.client(etcd_pillar, settings, timeout=3) as client:
        health = _layer("health")(client)
    if health.get("healthy"):
        raise StepFailed("cluster {} is healthy: nothing to recover".format(settings["name"]))
    if health.get("split"):
        raise StepFailed(health["error"])
    if health.get("quorum", {}).get("ok"):
        raise StepFailed("cluster {} has its quorum ({}): fix the members that are down, or "
                         "remove them (etcd.remove_member); recovery is for a lost quorum".format(
                             settings["name"], health.get("error") or "see salt-run etcd.status"))
    up = {names[e]: v["status"] for e, v in (health.get("views") or {}).items()
          if v.get("status")}
    if not up:
        raise StepFailed("no member of cluster {} answers: nothing survived to recover from; "
                         "restore the last snapshot (etcd.restore)".format(settings["name"]))
    chosen = survivor or max(up, key=lambda m: up[m]["raft_index"])
    if chosen not in up:
        raise StepFailed("survivor {} does not answer (up: {})".format(chosen, ", ".join(up)))
    others_running = sorted(m for m in up if m != chosen)
    if others_running:
        raise StepFailed(
            "{} still run{}: recovery keeps {}'s data alone and refuses while other old "
            "members run (two clusters would follow); stop etcd there first".format(
                ", ".join(others_running), "s" if len(others_running) == 1 else "", chosen))
    with s.operation(etcd_pillar, settings, "recover") as operation:
        operation.context["survivor"] = chosen
    return ok("{} (raft index {}) survives: cluster {} is rebuilt from its data".format(
        chosen, up[chosen]["raft_index"], settings["name"]), survivor=chosen)


def _survivor(settings):
    operation = __utils__["etcd_operations.current"](settings["name"])
    if operation is None or "survivor" not in operation.context:
        raise StepFailed("no survivor chosen: run the whole orchestration (salt-run "
                         "state.orchestrate etcd.recover ...)")
    return operation


@step
def survivor_snapshot(cluster=None):
    """
    Step of etcd.recover: a verified snapshot of the survivor's data, before anything changes.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.survivor_snapshot cluster=etcd
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    chosen = _survivor(settings).context["survivor"]
    entry = _take(s, etcd_pillar, settings, chosen)
    return ok("snapshot {} of {}'s data verified: revision {}, {} keys".format(
        entry["path"], chosen, entry["revision"], entry["keys"]), snapshot=entry)


@step
def force_new_cluster(cluster=None):
    """
    Step of etcd.recover: the survivor becomes a cluster of one with its data
    (``etcd_cluster.force_new_cluster`` on it: the flag used once, never left in its config).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.force_new_cluster cluster=etcd
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    operation = _survivor(settings)
    chosen = operation.context["survivor"]
    operation.check()
    s.progress("{}: etcd restarted once with --force-new-cluster".format(chosen))
    done = s.on_minion(chosen, "etcd_cluster.force_new_cluster", timeout=120, expect=dict)
    return ok("; ".join(done["done"]), changes={"force_new_cluster": chosen})


@step
def rejoin(cluster=None):
    """
    Step of etcd.recover: every other pillar member back through the add path, one at a
    time: its old data purged (archived first), added as a learner, its highstate (it joins
    with the real membership), promoted. A member whose minion does not answer is left for
    later (``etcd.add_member`` once it is back), and said so.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.rejoin cluster=etcd
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    operation = _survivor(settings)
    chosen = operation.context["survivor"]
    done, later = [], []
    for minion in __utils__["etcd_settings.by_seq"](settings):
        if minion == chosen:
            continue
        operation.check()
        new = s.member(settings, minion)
        try:
            # out of the membership since the survivor's new cluster: its old data goes,
            # archived first (etcd.purge: recover_preflight asked safeguard already)
            s.on_minion(minion, "etcd_cluster.purge", mode="purge", timeout=120, expect=dict)
        except MinionSilent:
            later.append(minion)
            s.progress("{} does not answer: left for etcd.add_member once it is back".format(
                minion))
            continue
        with s.client(etcd_pillar, settings, exclude=[minion]) as client:
            _layer("add")(client, new["name"], [new["peer_url"]], learner=True)
            s.progress("{}: purged (archived), added as a learner".format(minion))
            failures = s.apply(minion, "list", "etcd", {})
            if failures:
                raise StepFailed("highstate of {} failed: {}; done so far: {}".format(
                    minion, failures[minion] if minion in failures else failures,
                    "; ".join(done) or "nothing"))
            _layer("promote")(client, new["peer_url"], timeout=120)
        done.append(minion)
        s.progress("{}: promoted, a voter again".format(minion))
    comment = "rejoined: {}".format(", ".join(done) or "none")
    if later:
        comment += "; not answering, to add later with etcd.add_member: " + ", ".join(later)
    return ok(comment, rejoined=done, later=later, changes={"rejoined": done} if done else {})

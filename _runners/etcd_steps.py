"""
What every step of the ``etcd`` runner shares (``etcd_runner.py``: status and membership;
``etcd_backup.py``: snapshots, restore, recovery): a step's return, its checks of what it
is given, the pillar as a member sees it (validated whole), the one client for the step,
calls to minions with short explicit timeouts whose every result is checked, progress.

Not a runner itself (``__virtual__`` says so): the runner files import it by plain name and
hand it their dunders (``Steps(__opts__, __salt__, __utils__)``), so one copy serves both.
"""

import functools
import logging
import os
import time

import salt.client
import salt.utils.sdb
from salt.exceptions import CommandExecutionError, SaltClientError, SaltInvocationError

log = logging.getLogger(__name__)

# Whose pillar a step without a member reads: the CA server's default id.
DEFAULT_PILLAR_MINION = "master"
# Seconds a minion gets to answer a quick call (a ping, a local state); a dead host is
# told from a slow one by this, not by Salt's default timeout.
MINION_TIMEOUT = 8
# A publish the master's request server did not take in time (SaltClientError, seen under
# load): tried this many times, this many seconds apart.
PUBLISH_TRIES = 2
PUBLISH_RETRY_DELAY = 2


def __virtual__():
    return (False, "etcd_steps holds the etcd runner's shared helpers; it is no runner")


class StepFailed(Exception):
    """A step cannot go on: the message says why and what to do."""


class MinionSilent(StepFailed):
    """A minion did not answer in time."""


def failed(why, **data):
    """A failed step's return: ``salt.runner`` (orchestration) and ``salt-run`` see a failure."""
    log.info("etcd runner step failed: %s", why)
    return dict(data, Error=why, retcode=1, result=False)


def ok(comment, **data):
    return dict(data, result=True, comment=comment)


def step(function):
    """Run a step: StepFailed and Salt's errors become a failed step's return, and the
    operation lock this process holds is released (failhard ends the orchestration here)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (StepFailed, CommandExecutionError, SaltInvocationError) as exc:
            released = function.__globals__["__utils__"]["etcd_operations.end_all"]()
            note = " (released the lock of {})".format(", ".join(released)) if released else ""
            return failed(str(exc) + note)
        except BaseException:
            # a bug or an interruption: nothing stays locked in a long-lived master process
            function.__globals__["__utils__"]["etcd_operations.end_all"]()
            raise

    return wrapper


def of(runner):
    """The Steps of a runner module, from its loader globals (``globals()``): its
    ``__opts__``, ``__salt__``, ``__utils__``, and ``__jid_event__`` when salt-run gave it
    one (the progress events salt-run prints)."""
    return Steps(runner["__opts__"], runner["__salt__"], runner["__utils__"],
                 runner.get("__jid_event__"))


class Steps:
    """The edges of a runner step: pillar, minions, etcd. ``salt`` and ``utils`` are the
    runner's ``__salt__`` and ``__utils__``; ``event`` its ``__jid_event__`` (or None)."""

    def __init__(self, opts, salt_functions, utils, event=None):
        self.opts = opts
        self.salt = salt_functions
        self.utils = utils
        self.event = event

    def layer(self, function):
        return self.utils["etcd_membership." + function]

    # -- what a step is given -------------------------------------------------------------------

    def check_minion_id(self, value, what="member"):
        problem = self.utils["etcd_validate.minion_id_problem"](value, where=what)
        if problem:
            raise StepFailed(problem)
        return value

    @staticmethod
    def check_bool(value, what="etcd_force"):
        if value not in (True, False):
            raise StepFailed("{}: {!r}: expected true or false".format(what, value))
        return value

    def progress(self, message):
        """Say how it goes while a long step runs: a progress event, which salt-run prints
        (and printed here too when the step runs inside an orchestration, which does not)."""
        if self.event is not None:
            self.event.fire_event({"message": message}, "progress")
            if getattr(self.event, "print_func", None) is not None:
                return
        print("[etcd] " + message, flush=True)

    # -- pillar ---------------------------------------------------------------------------------

    def etcd_pillar(self, minion=None):
        """Pillar ``etcd`` as ``minion`` (default: the CA server) sees it, validated whole."""
        if minion is None:
            minion = self.opts.get("etcd_pillar_minion") or DEFAULT_PILLAR_MINION
        pillar = self.salt["pillar.show_pillar"](minion) or {}
        etcd_pillar = pillar.get("etcd")
        if not etcd_pillar:
            raise StepFailed("minion {} has no pillar etcd: give it the etcd pillar".format(minion))
        problems, _ = self.utils["etcd_validate.validate"](etcd_pillar)
        if problems:
            raise StepFailed("pillar etcd (as {} sees it) has {} problem(s), nothing done:\n- {}"
                             .format(minion, len(problems), "\n- ".join(problems)))
        return etcd_pillar

    def member_context(self, member):
        """(etcd pillar, cluster settings) of minion ``member``, which must be in a cluster."""
        if not member:
            raise StepFailed("no member given: pass the minion id, e.g. "
                             "pillar='{\"etcd_member\": \"h4\"}' to the orchestration")
        self.check_minion_id(member)
        etcd_pillar = self.etcd_pillar(member)
        cluster = self.utils["etcd_settings.cluster_of"](etcd_pillar, member)
        if cluster is None:
            raise StepFailed(
                "minion {} is in no cluster of its pillar etcd:clusters: add it under "
                "etcd:clusters:<cluster>:members with a unique seq and its address first"
                .format(member))
        return etcd_pillar, cluster

    def cluster_context(self, cluster_name=None, member=None):
        if member:
            return self.member_context(member)
        etcd_pillar = self.etcd_pillar()
        clusters = self.utils["etcd_settings.clusters"](etcd_pillar)
        if cluster_name is None:
            if len(clusters) != 1:
                raise StepFailed("pillar etcd has {} clusters ({}): name one".format(
                    len(clusters), ", ".join(sorted(clusters))))
            cluster_name = next(iter(clusters))
        try:
            return etcd_pillar, self.utils["etcd_settings.cluster_named"](etcd_pillar, cluster_name)
        except KeyError as exc:
            raise StepFailed(exc.args[0]) from None

    def member(self, cluster, minion):
        """A pillar member's etcd name and URLs."""
        return {"minion": minion,
                "name": self.utils["etcd_settings.member_name"](cluster, minion),
                "peer_url": self.utils["etcd_settings.peer_url"](cluster, minion),
                "client_url": self.utils["etcd_settings.client_url"](cluster, minion)}

    def names(self, cluster):
        return {self.utils["etcd_settings.client_url"](cluster, m): m for m in cluster["members"]}

    # -- etcd -----------------------------------------------------------------------------------

    def admin_tls(self, etcd_pillar):
        """The master's client certificate for etcd: {ca_file, cert_file, key_file}."""
        configured = self.opts.get("etcd_admin_tls")
        if configured:
            return {k: configured[k] for k in ("ca_file", "cert_file", "key_file")}
        return self.utils["etcd_settings.admin_tls_files"](self.utils["etcd_settings.pki"](etcd_pillar))

    def client(self, etcd_pillar, cluster, exclude=(), timeout=5):
        """One client for this step: the cluster's pillar members (less ``exclude``), with
        the master's admin certificate."""
        tls = self.admin_tls(etcd_pillar)
        missing = [path for path in tls.values() if not os.path.exists(path)]
        if missing:
            raise StepFailed(
                "the master has no etcd client certificate ({} missing): apply etcd.admin on "
                "the CA server (salt {} state.apply etcd.admin)".format(
                    ", ".join(missing), self.utils["etcd_settings.pki"](etcd_pillar)["ca_server"]))
        minions = [m for m in cluster["members"] if m not in exclude]
        endpoints = self.utils["etcd_settings.client_urls"](cluster, minions)
        return self.layer("connect")(
            endpoints, timeout=timeout, credentials=self.secrets(
                "root_credentials", cluster), **tls)

    def read_sdb(self, uri):
        """Salt's sdb on the master (its profiles in the master's config): a password the
        pillar gives as an ``sdb://`` URI."""
        try:
            return salt.utils.sdb.sdb_get(uri, self.opts, strict=True)
        except SaltInvocationError as exc:
            raise StepFailed("{}: {}".format(uri, exc)) from None

    def secrets(self, function, cluster):
        """``etcd_settings.<function>(cluster)`` (root_credentials, auth_users) with the
        passwords given as sdb URIs read here; a URI that gives nothing fails the step."""
        try:
            return self.utils["etcd_settings." + function](cluster, self.read_sdb)
        except ValueError as exc:
            raise StepFailed(str(exc)) from None

    @staticmethod
    def unhealthy(cluster, health):
        """Why ``health`` (the layer's) is not good enough to change the cluster, or None."""
        if health.get("healthy"):
            return None
        bad = ["{}: {}".format(n, m.get("error")) for n, m in sorted(health["members"].items())
               if not m.get("healthy") and not m.get("is_learner")]
        return "cluster {} is not healthy ({})".format(
            cluster["name"], health.get("error") or "; ".join(bad + health.get("alarms", []))
            or "no leader")

    def rolling_order(self, etcd_pillar, cluster, continue_with):
        """[(minion, leads)] of the cluster's voting members, followers first and the leader
        last (a rolling step's order); StepFailed unless the cluster is healthy."""
        with self.client(etcd_pillar, cluster) as client:
            health = self.layer("health")(client)
            problem = self.unhealthy(cluster, health)
            if problem:
                raise StepFailed("{}: nothing more is changed; continue with: {}".format(
                    problem, continue_with))
            members = client.members()
            leader = self.layer("leader_status")(client, members)["id"]
        names = self.names(cluster)
        order = sorted((m for m in members if not m["is_learner"]),
                       key=lambda m: (m["id"] == leader, m["name"]))
        return [(names[m["client_urls"][0]], m["id"] == leader) for m in order
                if m["client_urls"] and m["client_urls"][0] in names]

    # -- one operation at a time --------------------------------------------------------------

    def lock_dir(self):
        return os.path.join(self.opts["cachedir"], "etcd-formula", "locks")

    def operation(self, etcd_pillar, cluster, what, in_etcd=True):
        """The cluster's operation lock for a step (``etcd_operations.held_for``): the running
        orchestration's, or one held for this step only. The lock in etcd is taken when the
        cluster answers; a cluster that lost its quorum (or, ``in_etcd`` False, one that
        takes no write: NOSPACE) is locked on this master only."""

        return self.utils["etcd_operations.held_for"](
            cluster["name"], what, self.lock_dir(),
            (lambda: self.lock_client(etcd_pillar, cluster)) if in_etcd else (lambda: None))

    def lock_client(self, etcd_pillar, cluster):
        """A client for the lock in etcd, or None when the cluster has no quorum to grant its
        lease (a recovery, a restore of a cluster that is down): then the master's lock alone."""
        client = self.client(etcd_pillar, cluster, timeout=3)
        health = self.layer("health")(client)
        if health.get("quorum", {}).get("ok") and not health.get("split"):
            return client
        client.close()
        return None

    # -- minions --------------------------------------------------------------------------------

    def answers(self, target, fun, arg=(), kwarg=None, tgt_type="list", timeout=MINION_TIMEOUT):
        """{minion: (return, retcode)} of ``fun`` on ``target`` (the minions that answered:
        Salt marks one that did not with ``out: no_return``)."""
        for attempt in range(1, PUBLISH_TRIES + 1):
            try:
                with salt.client.get_local_client(self.opts["conf_file"]) as local:
                    # gather_job_timeout bounds the wait for a minion that is gone (Salt's
                    # default, the master's gather_job_timeout, comes on top of the timeout)
                    found = local.cmd(target, fun, arg=list(arg), kwarg=kwarg, tgt_type=tgt_type,
                                      timeout=timeout, full_return=True,
                                      gather_job_timeout=max(2, min(timeout, 10)))
                break
            except SaltClientError as exc:
                # a busy master's request server did not take the publish in time: what the
                # formula publishes is idempotent (a duplicate state.apply is refused by Salt
                # as already running), so once more, then a failed step saying so
                if attempt == PUBLISH_TRIES:
                    raise StepFailed("the master did not publish {} to {} ({}), twice: the "
                                     "step may not have run; run it again".format(
                                         fun, target, exc)) from None
                log.warning("publishing %s to %s: %s; trying again", fun, target, exc)
                time.sleep(PUBLISH_RETRY_DELAY)
        return {m: (a.get("ret"), a.get("retcode", 0)) if isinstance(a, dict) else (a, 1)
                for m, a in (found or {}).items()
                if not (isinstance(a, dict) and a.get("out") == "no_return")}

    def on_minion(self, minion, fun, *args, timeout=MINION_TIMEOUT, expect=None, **kwargs):
        """``fun`` run on ``minion``: its return; MinionSilent when it does not answer in
        ``timeout`` seconds, StepFailed when it answers an error (a retcode, ``False``, or
        not the ``expect`` type: Salt answers a missing function with a string)."""
        found = self.answers(minion, fun, args, kwargs or None, timeout=timeout)
        if minion not in found:
            raise MinionSilent("minion {} did not answer {} within {} s".format(
                minion, fun, timeout))
        ret, retcode = found[minion]
        if retcode or ret is False or (expect is not None and not isinstance(ret, expect)):
            raise StepFailed("{} on {} failed: {}".format(fun, minion, ret))
        return ret

    def ping(self, minion):
        try:
            self.on_minion(minion, "test.ping", timeout=5)
        except MinionSilent:
            raise StepFailed("minion {} does not answer (test.ping, 5 s): start it, or check "
                             "its key and connection to the master first".format(minion)) from None

    def apply(self, target, tgt_type, sls, pillar):
        """state.apply ``sls`` on ``target``: {minion: failure} of the minions that failed."""
        found = self.answers(target, "state.apply", [sls], {"pillar": pillar}, tgt_type=tgt_type,
                             timeout=120)
        if not found:
            return {target: "no minion answered"}
        failures = {}
        for minion, (answer, retcode) in found.items():
            if not isinstance(answer, dict):
                failures[minion] = answer if isinstance(answer, str) else repr(answer)
                continue
            bad = [s.get("comment", "") for s in answer.values()
                   if isinstance(s, dict) and s.get("result") is False]
            if bad or retcode:
                failures[minion] = "; ".join(bad) or "retcode {}".format(retcode)
        return failures

"""
CA rotation without downtime (``salt-run etcd.rotate_ca``, docs/operations.md): both CAs
(the clients' and the peers') replaced by new ones while every cluster of the pillar keeps
serving. etcd never re-reads its trusted CA file (it re-reads its own certificate on each
new connection), so the new CA is trusted everywhere before it signs, and the old one stays
trusted until nothing holds a certificate of it:

1. ``trust-both``: new CAs on the CA server (``etcd_ca.rotation_begin``); the bundles old+new
   on the master's admin files, on every member, one at a time (etcd.pki and a restart of
   etcd, followers first, leadership moved off the leader first; health-gated), on every
   client (patroni reloaded, vip-manager restarted);
2. ``reissue``: the new CAs sign (``etcd_ca.rotation_switch``); every leaf issued anew
   (the master's, each member's: no restart; each client's); checked on the wire: each
   member serves certificates of the new CAs;
3. ``trust-new``: the old CAs archived (``etcd_ca.rotation_finish``); the bundles new-only,
   rolled out as in 1; the rotation's record removed (``etcd_ca.rotation_end``).

A cluster built before peers had a CA of their own (its members serve peer certificates of
the clients' CA) starts from the clients' CA as the peers' CA too (``etcd_ca.rotation_begin``
with ``split``), and so ends with two CAs apart.

Each step is recorded on the CA server and looks before it changes anything: interrupted
anywhere and run again, the rotation goes on where it stopped. Holds the operation lock of
every cluster of the pillar (they share the CA). Reports per member as it goes.

The same virtual name as etcd_runner.py (``etcd``): one ``salt-run etcd.*`` namespace.
"""

import contextlib
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_steps  # noqa: E402
from etcd_steps import StepFailed, ok, step  # noqa: E402

__virtualname__ = "etcd"

# The phases, in order, and what ends each: the CA server's call that starts the next one.
PHASES = ("trust-both", "reissue", "trust-new")
# Seconds a member gets to be healthy again after its step (a restart, an election).
HEALTHY_AFTER = 60
CONTINUE = "continue with: salt-run etcd.rotate_ca"


def __virtual__():
    return __virtualname__


def _steps():
    return etcd_steps.of(globals())


def _ca(s, ca_server, function):
    """``etcd_ca.<function>`` on the CA server: its return (a dict), checked."""
    return s.on_minion(ca_server, "etcd_ca." + function, timeout=30, expect=dict)


def _apply(s, minion, sls, done):
    failures = s.apply(minion, "list", sls, {})
    if failures:
        raise StepFailed("{} on {} failed: {}; done: {}; {}".format(
            sls, minion, failures.get(minion) or failures, "; ".join(done) or "nothing",
            CONTINUE))


def _publish(s, ca_server, done):
    """The CA server's bundles published, the master's admin files made to match."""
    for sls in ("etcd.ca", "etcd.admin"):
        _apply(s, ca_server, sls, done)
    done.append("{}: etcd.ca, etcd.admin applied".format(ca_server))
    s.progress(done[-1])


def _members(s, etcd_pillar, settings, operation, sls, done, restart):
    """``sls`` on each member, one at a time, each healthy again before the next; when it
    restarts etcd (``restart``), leadership is moved off a leader first."""
    for minion, leads in s.rolling_order(etcd_pillar, settings, "salt-run etcd.rotate_ca"):
        operation.check()  # the lock is still this operation's
        with s.client(etcd_pillar, settings) as client:
            if restart and leads:
                moved = s.layer("move_leader")(client)
                s.progress("{}: leadership moved {} -> {} before its restart".format(
                    settings["name"], moved["old"], moved["new"]))
        s.progress("{} ({}): {}".format(minion, settings["name"], sls))
        _apply(s, minion, sls, done)
        with s.client(etcd_pillar, settings) as client:
            health = s.layer("wait_healthy")(client, timeout=HEALTHY_AFTER)
        problem = s.unhealthy(settings, health)
        if problem:
            raise StepFailed("{} after {} on {}: stopped there; done: {}; {}".format(
                problem, sls, minion, "; ".join(done), CONTINUE))
        done.append("{}: {}, healthy".format(minion, sls))
        s.progress(done[-1])


def _clients(s, settings, done):
    """Every client of the cluster given the bundle and a certificate of the CA server as it
    is now (patroni reloaded, vip-manager restarted when theirs changed)."""
    ret = __salt__["etcd.refresh_endpoints"](cluster=settings["name"])
    if not isinstance(ret, dict) or ret.get("result") is not True:
        raise StepFailed("the clients of {} were not all updated: {}; done: {}; {}".format(
            settings["name"], (ret or {}).get("Error", ret), "; ".join(done), CONTINUE))
    done.append("{}: clients updated ({})".format(settings["name"], ret.get("comment")))
    s.progress(done[-1])


def _served_by_new(s, etcd_pillar, settings, done):
    """Each member serves server and peer certificates of the CAs that sign now."""
    bundles = _ca(s, _pki(etcd_pillar)["ca_server"], "bundles")
    old = []
    for minion in settings["members"]:
        for what, url, which in (
                ("server", __utils__["etcd_settings.client_url"](settings, minion), "client"),
                ("peer", __utils__["etcd_settings.peer_url"](settings, minion), "peer")):
            try:
                served = __utils__["etcd_pki.served_certificate"](url)
            except OSError as exc:
                raise StepFailed("{} {} ({}) does not answer: {}; {}".format(
                    minion, what, url, exc, CONTINUE)) from None
            if not __utils__["etcd_pki.issued_by_bundle"](
                    served, __utils__["etcd_pki.first_certificate"](bundles[which])):
                old.append("{} {} ({})".format(minion, what, __utils__["etcd_pki.issuer_label"](
                    served, bundles[which])))
    if old:
        raise StepFailed("certificates not of the new CAs are still served: {}; {}".format(
            ", ".join(old), CONTINUE))
    done.append("{}: every member serves certificates of the new CAs".format(settings["name"]))
    s.progress(done[-1])


def _built_before_the_split(s, ca_server, clusters):
    """The members ("minion (cluster)") that serve a peer certificate of the clients' CA
    that the peers' CA bundle does not hold: a cluster built before peers had a CA of
    their own (the highstate refuses it: etcd_cert.peer_trust_kept)."""
    bundles = _ca(s, ca_server, "bundles")
    found = []
    for settings in clusters:
        for minion in settings["members"]:
            url = __utils__["etcd_settings.peer_url"](settings, minion)
            try:
                served = __utils__["etcd_pki.served_certificate"](url)
            except OSError as exc:
                raise StepFailed("{} peer ({}) does not answer: {}: nothing was changed; "
                                 "{}".format(minion, url, exc, CONTINUE)) from None
            if (__utils__["etcd_pki.issued_by_bundle"](served, bundles["client"])
                    and not __utils__["etcd_pki.issued_by_bundle"](served, bundles["peer"])):
                found.append("{} ({})".format(minion, settings["name"]))
    return found


def _pki(etcd_pillar):
    return __utils__["etcd_settings.pki"](etcd_pillar)


@step
def rotate_ca(until=None):
    """
    Rotate the formula's CAs (the clients' and the peers'), every cluster of the pillar
    serving throughout: the phases ``trust-both``, ``reissue``, ``trust-new`` (module
    documentation), each member one at a time and health-gated, under the operation lock of
    every cluster. Interrupted and run again, it goes on where it stopped. Refused while a
    cluster is unhealthy, and for your own CA (``ca_provided``).

    until
        Stop before this phase (``reissue``, ``trust-new``) or once it is ``done`` (default):
        to look at a cluster between phases; run again to go on.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.rotate_ca
        salt-run etcd.rotate_ca until=reissue
    """
    if until not in (None, "reissue", "trust-new", "done"):
        raise StepFailed("until: {!r}: expected reissue, trust-new or done".format(until))
    s = _steps()
    etcd_pillar = s.etcd_pillar()
    pki = _pki(etcd_pillar)
    if pki["ca_provided"]:
        raise StepFailed("pillar etcd:pki:ca_provided is true: the CA is yours; rotate it by "
                         "hand (docs/operations.md): nothing was changed")
    ca_server = pki["ca_server"]
    s.ping(ca_server)
    clusters = [__utils__["etcd_settings.cluster_named"](etcd_pillar, name)
                for name in sorted(__utils__["etcd_settings.clusters"](etcd_pillar))]
    done = []
    with contextlib.ExitStack() as held:
        operations = [held.enter_context(s.operation(etcd_pillar, c, "rotate_ca"))
                      for c in clusters]
        for settings in clusters:  # every cluster healthy before anything changes
            s.rolling_order(etcd_pillar, settings, "salt-run etcd.rotate_ca")
        phase = _ca(s, ca_server, "rotation")["phase"]
        if phase is None:
            before = _built_before_the_split(s, ca_server, clusters)
            if before:
                done.append("peer certificates of the clients' CA served by {} (built before "
                            "peers had a CA of their own): the clients' CA is the peers' CA "
                            "until the rotation gives them one apart".format(", ".join(before)))
                s.progress(done[-1])
            record = s.on_minion(ca_server, "etcd_ca.rotation_begin", timeout=30,
                                 expect=dict, split=bool(before))
            done.append("new CAs made: {}".format(", ".join(
                "{} {}".format(w, label) for w, label in sorted(record["new"].items()))))
            s.progress(done[-1])
            phase = "trust-both"
        if phase == "trust-both":
            _trust(s, etcd_pillar, ca_server, clusters, operations, done)
            if until == "reissue":
                return _stopped(done, "reissue")
            _ca(s, ca_server, "rotation_switch")
            phase = "reissue"
        if phase == "reissue":
            _publish(s, ca_server, done)
            for settings, operation in zip(clusters, operations):
                _members(s, etcd_pillar, settings, operation, "etcd.pki", done, restart=False)
                _clients(s, settings, done)
                _served_by_new(s, etcd_pillar, settings, done)
            if until == "trust-new":
                return _stopped(done, "trust-new")
            _ca(s, ca_server, "rotation_finish")
            phase = "trust-new"
        if phase == "trust-new":
            _trust(s, etcd_pillar, ca_server, clusters, operations, done)
            record = _ca(s, ca_server, "rotation_end")
            done.append("rotation done; the old CAs archived in {}".format(record.get("retired")))
            s.progress(done[-1])
    return ok("the CAs are rotated: {}. Credentials made by salt-run etcd.credentials before "
              "the rotation are refused now: run it again for each".format("; ".join(done)),
              done=done, changes={"rotated": True})


def _trust(s, etcd_pillar, ca_server, clusters, operations, done):
    """The bundles as the CA server has them now, everywhere: the master, each member (a
    restart where its bundle changed), each client."""
    _publish(s, ca_server, done)
    for settings, operation in zip(clusters, operations):
        _members(s, etcd_pillar, settings, operation, "etcd", done, restart=True)
        _clients(s, settings, done)


def _stopped(done, phase):
    return ok("stopped before phase {} as asked: {}; go on with: salt-run etcd.rotate_ca".format(
        phase, "; ".join(done)), done=done, changes={"phase": phase})

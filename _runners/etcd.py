"""
The etcd cluster seen from the salt-master: a status table, and the steps of the
``etcd.add_member`` / ``etcd.remove_member`` orchestrations (etcd/add_member.sls,
etcd/remove_member.sls; docs/operations.md).

.. code-block:: bash

    salt-run etcd.status
    salt-run state.orchestrate etcd.add_member pillar='{"etcd_member": "h4"}'
    salt-run state.orchestrate etcd.remove_member pillar='{"etcd_member": "h1"}'

Every step does one thing and is safe to run again. A step that fails returns
``{"Error": why, "retcode": 1, ...}``: Salt's ``salt.runner`` orchestration state treats
that as a failure (``salt.function`` would not notice an exception), and ``salt-run``
exits 1.

The runner talks to etcd through the ``etcd_cluster`` execution module (loaded here as a
minion would load it; sync it to the master with ``salt-run saltutil.sync_all``), with an
admin client certificate on the master (etcd/admin.sls issues it on the CA server):
``<etcd:pki:ca_dir>/admin/{ca.crt,client.crt,client.key}``, or the paths in the master
config ``etcd_admin_tls: {ca_file: ..., cert_file: ..., key_file: ...}``.

Pillar ``etcd`` is read as a member minion sees it (``pillar.show_pillar``); ``status``
without a member reads the CA server's pillar (master config ``etcd_pillar_minion``
overrides which minion that is).
"""

import copy
import datetime
import functools
import logging
import os
import socket
import ssl
import time

import salt.loader
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "etcd"

# How long a learner may take to catch up: a base, plus the db size at a (slow) transfer
# rate. etcd 3.4 here: 0.5 s at 50 MB, 8 s at 1.8 GB (etcd-facts.md); 4 MiB/s is 25x slower.
PROMOTE_BASE_SECONDS = 60
PROMOTE_BYTES_PER_SECOND = 4 * 1024**2
# Whose pillar ``status`` reads without a member: the CA server's default id.
DEFAULT_PILLAR_MINION = "master"
# Where the formula's client certificates live on the master, under etcd:pki:ca_dir.
ADMIN_SUBDIR = "admin"
# The client kinds whose endpoint lists the runner refreshes, and their SLS.
CLIENT_SLS = {
    "patroni": "etcd.clients.patroni",
    "vip_manager": "etcd.clients.vip_manager",
    "prometheus": "etcd.clients.prometheus",
}


def __virtual__():
    return __virtualname__


class StepFailed(Exception):
    """A step cannot go on: the message says why and what to do."""


# -- pure decisions (no I/O) ----------------------------------------------------------------------


def promote_deadline(db_size):
    """Seconds a learner gets to catch up and be promoted, growing with the db size."""
    return PROMOTE_BASE_SECONDS + int((db_size or 0) / PROMOTE_BYTES_PER_SECOND)


def find_member(members, peer_url):
    """The member of ``members`` (etcd_cluster.members) with ``peer_url``, or None."""
    return next((m for m in members if peer_url in m["peer_urls"]), None)


def add_plan(members, peer_url, data_dir_entries, data_dir_has_member):
    """
    What add_member must do for the member with ``peer_url``, from the real membership
    and the new host's data dir: ``"add"`` (not a member yet), ``"resume"`` (our learner,
    from an earlier run), ``"done"`` (a voter already). Raise StepFailed when another
    learner is pending, or the data dir holds something that is not this member's.
    """
    ours = find_member(members, peer_url)
    others = [m for m in members if m["is_learner"] and m is not ours]
    if others:
        other = others[0]
        raise StepFailed(
            "another learner is pending: {} ({}); etcd allows one at a time: finish its "
            "add_member or remove it (salt-run etcd.remove_learner member=<its minion>) "
            "first".format(other["name"] or other["id"], ",".join(other["peer_urls"]))
        )
    if data_dir_entries and not (ours is not None and ours["started"] and data_dir_has_member):
        raise StepFailed(
            "the data dir is not empty ({}) and belongs to no running member with peer URL "
            "{}: it holds an old or removed member, which can never rejoin; purge it "
            "(state.apply etcd.clean with clean: true, or remove the directory) and run "
            "again".format(", ".join(sorted(data_dir_entries)[:5]), peer_url)
        )
    if ours is None:
        return "add"
    return "resume" if ours["is_learner"] else "done"


def removal_plan(check, force=False):
    """
    Go on with a removal that ``etcd_cluster.removal_check`` found safe; raise StepFailed
    with its reason when it is unsafe (quorum lost, 2 -> 1, the last one) and not ``force``.
    """
    if check["refusal"] and not force:
        raise StepFailed(check["refusal"] + " (force=True removes it anyway)")
    return check


def voting_endpoints(cluster, members, exclude=()):
    """
    Client URLs of the pillar members that vote in ``members``, without the minions in
    ``exclude`` (one leaving): what clients are given. Never a learner.
    """
    voting_peer_urls = {u for m in members if not m["is_learner"] for u in m["peer_urls"]}
    minions = [
        minion
        for minion in cluster["members"]
        if minion not in exclude
        and __utils__["etcd_pillar.peer_url"](cluster, minion) in voting_peer_urls
    ]
    return __utils__["etcd_pillar.client_urls"](cluster, minions)


def client_targets(cluster):
    """{kind: (target, tgt_type)} of the clients in pillar ``clients`` (kinds of CLIENT_SLS)."""
    found = {}
    for kind, spec in (cluster.get("clients") or {}).items():
        if kind in CLIENT_SLS and spec and spec.get("target"):
            found[kind] = (spec["target"], spec.get("tgt_type", "glob"))
    return found


def status_table(status, alarms=None):
    """``etcdctl endpoint status -w table`` of etcd_cluster.status's answer, as text."""
    header = [
        "ENDPOINT", "ID", "NAME", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
        "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS",
    ]
    rows = []
    for name, entry in sorted(status.items(), key=lambda item: item[1].get("endpoint") or "~"):
        errors = list(entry.get("errors") or [])
        if entry.get("error"):
            errors.append(entry["error"])
        errors.extend(entry.get("alarms") or [])
        rows.append([
            entry.get("endpoint") or "-",
            entry.get("id", "-"),
            name,
            entry.get("version", "-"),
            _human_size(entry.get("db_size")),
            str(bool(entry.get("is_leader"))).lower(),
            str(bool(entry.get("is_learner"))).lower(),
            str(entry.get("raft_term", "-")),
            str(entry.get("raft_index", "-")),
            str(entry.get("raft_applied_index", "-")),
            ", ".join(errors),
        ])
    return _table(header, rows)


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(row):
        return "|" + "|".join(" {} ".format(str(c).center(w)) for c, w in zip(row, widths)) + "|"

    return "\n".join([line, fmt(header), line] + [fmt(r) for r in rows] + [line])


def _human_size(size):
    if size is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return "{:.0f} {}".format(size, unit) if unit == "B" else "{:.1f} {}".format(size, unit)
        size /= 1000.0
    return str(size)


# -- the edges: pillar, minions, the etcd_cluster module ------------------------------------------


def _failed(why, **data):
    """A failed step's return: ``salt.runner`` (orchestration) and ``salt-run`` see a failure."""
    log.info("etcd runner step failed: %s", why)
    return dict(data, Error=why, retcode=1, result=False)


def _ok(comment, **data):
    return dict(data, result=True, comment=comment)


def _step(function):
    """Run a step: StepFailed and Salt's errors become a failed step's return."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (StepFailed, CommandExecutionError, SaltInvocationError) as exc:
            return _failed(str(exc))

    return wrapper


def _etcd_pillar(minion=None):
    """Pillar ``etcd`` as ``minion`` (default: the CA server) sees it."""
    if minion is None:
        minion = __opts__.get("etcd_pillar_minion") or DEFAULT_PILLAR_MINION
    pillar = __salt__["pillar.show_pillar"](minion) or {}
    etcd_pillar = pillar.get("etcd")
    if not etcd_pillar:
        raise StepFailed("minion {} has no pillar etcd: give it the etcd pillar".format(minion))
    return etcd_pillar


def _member_context(member):
    """(etcd pillar, cluster settings) of minion ``member``, which must be in a cluster."""
    if not member:
        raise StepFailed(
            "no member given: pass the minion id, e.g. "
            "pillar='{\"etcd_member\": \"h4\"}' to the orchestration"
        )
    etcd_pillar = _etcd_pillar(member)
    cluster = __utils__["etcd_pillar.cluster_of"](etcd_pillar, member)
    if cluster is None:
        raise StepFailed(
            "minion {} is in no cluster of its pillar etcd:clusters: add it under "
            "etcd:clusters:<cluster>:members with a unique seq and its address first".format(
                member
            )
        )
    return etcd_pillar, cluster


def _cluster_context(cluster_name=None, member=None):
    if member:
        return _member_context(member)
    etcd_pillar = _etcd_pillar()
    clusters = __utils__["etcd_pillar.clusters"](etcd_pillar)
    if cluster_name is None:
        if len(clusters) != 1:
            raise StepFailed(
                "pillar etcd has {} clusters ({}): name one".format(
                    len(clusters), ", ".join(sorted(clusters))
                )
            )
        cluster_name = next(iter(clusters))
    try:
        return etcd_pillar, __utils__["etcd_pillar.cluster_named"](etcd_pillar, cluster_name)
    except KeyError as exc:
        raise StepFailed(exc.args[0])


def admin_tls(etcd_pillar):
    """The master's client certificate for etcd: {ca_file, cert_file, key_file}."""
    configured = __opts__.get("etcd_admin_tls")
    if configured:
        return {k: configured[k] for k in ("ca_file", "cert_file", "key_file")}
    admin_dir = os.path.join(__utils__["etcd_pillar.pki"](etcd_pillar)["ca_dir"], ADMIN_SUBDIR)
    return {
        "ca_file": os.path.join(admin_dir, "ca.crt"),
        "cert_file": os.path.join(admin_dir, "client.crt"),
        "key_file": os.path.join(admin_dir, "client.key"),
    }


def _cluster_module(etcd_pillar):
    """
    The ``etcd_cluster`` execution module, loaded with this pillar (what ``salt.cmd``
    does, with the pillar in: its defaults come from pillar).
    """
    opts = copy.deepcopy(__opts__)
    opts["pillar"] = {"etcd": etcd_pillar}
    opts.setdefault("grains", {})
    utils = salt.loader.utils(opts)
    functions = salt.loader.minion_mods(opts, utils=utils, whitelist=["etcd_cluster", "config"])
    if "etcd_cluster.members" not in functions:
        raise StepFailed(
            "the etcd_cluster module is not on the master: run salt-run saltutil.sync_all"
        )
    return functions


class _Cluster:
    """``etcd_cluster.<function>`` calls on one cluster, with the master's certificate."""

    def __init__(self, etcd_pillar, cluster, exclude=()):
        self.pillar = etcd_pillar
        self.cluster = cluster
        self.functions = _cluster_module(etcd_pillar)
        self.tls = admin_tls(etcd_pillar)
        missing = [path for path in self.tls.values() if not os.path.exists(path)]
        if missing:
            raise StepFailed(
                "the master has no etcd client certificate ({} missing): apply etcd.admin on "
                "the CA server (salt {} state.apply etcd.admin)".format(
                    ", ".join(missing), __utils__["etcd_pillar.pki"](etcd_pillar)["ca_server"]
                )
            )
        minions = [m for m in cluster["members"] if m not in exclude]
        self.endpoints = __utils__["etcd_pillar.client_urls"](cluster, minions)

    def __call__(self, function, *args, **kwargs):
        kwargs = dict(self.tls, endpoints=self.endpoints, **kwargs)
        return self.functions["etcd_cluster." + function](*args, **kwargs)


def _on_minion(minion, function, *args, **kwargs):
    """``function`` run on ``minion``: its return, or StepFailed when it does not answer."""
    answers = __salt__["salt.execute"](minion, function, arg=args, kwarg=kwargs or None)
    if minion not in (answers or {}):
        raise StepFailed("minion {} did not answer {}".format(minion, function))
    return answers[minion]


def _settings(cluster, member):
    return {
        "name": __utils__["etcd_pillar.member_name"](cluster, member),
        "peer_url": __utils__["etcd_pillar.peer_url"](cluster, member),
        "client_url": __utils__["etcd_pillar.client_url"](cluster, member),
    }


def _open(member, ask_member=False):
    """
    (cluster settings, ``member``'s names and URLs, a _Cluster) for a step on ``member``.
    ``ask_member``: its own endpoint is asked too (it is not, while joining or leaving).
    """
    etcd_pillar, cluster = _member_context(member)
    etcd = _Cluster(etcd_pillar, cluster, exclude=() if ask_member else [member])
    return cluster, _settings(cluster, member), etcd


def _data_dir(cluster, member):
    """(entries of ``member``'s data dir, whether it holds an etcd member)."""
    data_dir = cluster["data_dir"]
    entries = _on_minion(member, "file.readdir", data_dir) if _on_minion(
        member, "file.directory_exists", data_dir
    ) else []
    if isinstance(entries, str):  # an error message
        raise StepFailed("cannot read {} on {}: {}".format(data_dir, member, entries))
    entries = [e for e in entries if e not in (".", "..")]
    return entries, "member" in entries


# -- status -----------------------------------------------------------------------------------------


def _cert_expiry(url):
    """(subject CN, notAfter) of the certificate the TLS server at ``url`` presents."""
    from cryptography import x509

    host, port = url.split("://", 1)[1].rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reading the certificate, trusting nothing
    with socket.create_connection((host.strip("[]"), int(port)), timeout=3) as sock:
        with context.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.not_valid_after_utc


def _file_expiry(path):
    from cryptography import x509

    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read()).not_valid_after_utc


def _expiry_rows(cluster, tls):
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for member in sorted(cluster["members"], key=lambda m: cluster["members"][m]["seq"]):
        for what, url in (
            ("server", __utils__["etcd_pillar.client_url"](cluster, member)),
            ("peer", __utils__["etcd_pillar.peer_url"](cluster, member)),
        ):
            try:
                not_after = _cert_expiry(url)
                rows.append([member, what, url, not_after.strftime("%Y-%m-%d"),
                             str((not_after - now).days)])
            except (OSError, ValueError) as exc:
                rows.append([member, what, url, "-", "unreachable: {}".format(exc)])
    try:
        not_after = _file_expiry(tls["cert_file"])
        rows.append(["(master)", "admin client", tls["cert_file"], not_after.strftime("%Y-%m-%d"),
                     str((not_after - now).days)])
    except (OSError, ValueError) as exc:
        rows.append(["(master)", "admin client", tls["cert_file"], "-", str(exc)])
    return rows


def status(cluster=None, member=None, table=True):
    """
    The cluster's status, as ``etcdctl endpoint status -w table`` prints it, plus its
    learners, alarms and the expiry of the members' certificates (server and peer, read
    from the TLS handshake) and of the master's own client certificate.

    cluster
        Cluster name in pillar ``etcd:clusters`` (default: the only one).
    member
        Or a member minion, whose cluster (and pillar) is used.
    table
        False: the data instead of the text.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.status
        salt-run etcd.status etcd
    """
    try:
        etcd_pillar, settings = _cluster_context(cluster, member)
        etcd = _Cluster(etcd_pillar, settings)
        report = etcd("status")
        health = etcd("health")
    except (StepFailed, CommandExecutionError, SaltInvocationError) as exc:
        return _failed(str(exc))
    expiry = _expiry_rows(settings, etcd.tls)
    if not table:
        return {"status": report, "health": health, "cert_expiry": expiry}
    lines = [
        "cluster {}: {}".format(settings["name"], "healthy" if health["healthy"] else "UNHEALTHY"
                                + (" ({})".format(health["error"]) if health.get("error") else "")),
        status_table(report),
        "learners: {}".format(", ".join(health.get("learners") or []) or "none"),
        "alarms: {}".format(", ".join(health.get("alarms") or []) or "none"),
        "certificates:",
        _table(["MINION", "CERT", "WHERE", "NOT AFTER", "DAYS LEFT"], expiry),
    ]
    return "\n".join(lines)


@_step
def health(cluster=None, member=None, exclude=None):
    """
    The cluster's health (``etcd_cluster.health``), failing the step when it is not
    healthy: every voter answers, a leader, no alarm. Printed at the end of the
    orchestrations.

    cluster, member
        Which cluster: by name, or a member minion's.
    exclude
        A minion not to ask (one just removed).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.health member=h1
    """
    etcd_pillar, settings = _cluster_context(cluster, member)
    etcd = _Cluster(etcd_pillar, settings, exclude=[exclude] if exclude else ())
    answer = etcd("health")
    text = status(member=member) if member else status(cluster=settings["name"])
    if not answer["healthy"]:
        problems = [
            "{}: {}".format(name, m.get("error")) for name, m in answer["members"].items()
            if not m.get("healthy") and not m.get("is_learner")
        ]
        raise StepFailed(
            "cluster {} is not healthy: {}".format(
                settings["name"],
                "; ".join(problems + (answer.get("alarms") or []) + [answer.get("error") or ""])
                .strip("; ") or "no leader",
            )
        )
    return _ok(
        "cluster {} is healthy: {} voting members, leader {}".format(
            settings["name"], answer["quorum"]["voters"], answer["leader"]
        ),
        health=answer,
        status=text,
    )


# -- add_member -------------------------------------------------------------------------------------


@_step
def add_preflight(member):
    """
    Step 1 of add_member: ``member`` (a minion) is in its cluster's pillar with a unique
    seq (the pillar validates), the cluster is healthy, no other learner is pending (ours,
    from an earlier run, is resumed), and its data dir is empty or belongs to this very
    member.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.add_preflight h4
    """
    etcd_pillar, cluster = _member_context(member)
    errors, _ = __utils__["etcd_pillar.validate"](etcd_pillar, minion_id=member)
    if errors:
        raise StepFailed("pillar etcd of {} has {} problem(s): {}".format(
            member, len(errors), "; ".join(errors)))
    new = _settings(cluster, member)
    etcd = _Cluster(etcd_pillar, cluster, exclude=[member])
    members = etcd("members")
    ours = find_member(members, new["peer_url"])
    answer = etcd("health")
    unhealthy = [
        name for name, m in answer["members"].items()
        if not m.get("healthy") and not m.get("is_learner")
    ]
    if not answer["quorum"].get("ok") or unhealthy or answer.get("alarms") or not answer["leader"]:
        raise StepFailed(
            "cluster {} is not healthy ({}): fix it before adding a member".format(
                cluster["name"],
                "; ".join(["unhealthy: " + ", ".join(unhealthy)] if unhealthy else []
                          + (answer.get("alarms") or []) + [answer.get("error") or ""]).strip("; ")
                or "no leader",
            )
        )
    entries, has_member = _data_dir(cluster, member)
    plan = add_plan(members, new["peer_url"], entries, has_member)
    comment = {
        "add": "{} ({}) can be added to cluster {}".format(new["name"], member, cluster["name"]),
        "resume": "{} is a learner from an earlier run: resuming".format(new["name"]),
        "done": "{} is a voting member already: the remaining steps only check".format(
            new["name"]),
    }[plan]
    if ours is not None and not ours["started"]:
        comment += " (added, never started)"
    return _ok(comment, plan=plan, member=new["name"], peer_url=new["peer_url"])


@_step
def add_learner(member):
    """
    Step 2 of add_member: ``member`` added as a learner (nothing done when a member has its
    peer URL already: "Peer URLs already exists" means it was added).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.add_learner h4
    """
    cluster, new, etcd = _open(member)
    added = etcd("member_add", new["name"], new["peer_url"], learner=True)
    role = "learner" if added["is_learner"] else "voter"
    return _ok(
        "{} {} as a {} (id {})".format(
            new["name"], "has been added" if added["added"] else "was already a member", role,
            added["id"]),
        id=added["id"], added=added["added"], initial_cluster=added["initial_cluster"],
        changes={"added": added["id"]} if added["added"] else {},
    )


@_step
def promote(member, deadline=None):
    """
    Step 4 of add_member: promote ``member``'s learner as soon as etcd accepts it (it runs
    and has the leader's raft index). The deadline grows with the db size (``deadline``
    seconds overrides it); at the deadline the learner is removed from the cluster, etcd
    stopped on the host and its data dir wiped, and the step fails saying so.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.promote h4
    """
    cluster, new, etcd = _open(member)
    learner = find_member(etcd("members"), new["peer_url"])
    if learner is None:
        raise StepFailed("{} is not a member: run add_member from the start".format(new["name"]))
    if not learner["is_learner"]:
        return _ok("{} is a voting member already".format(new["name"]), promoted=False)
    if deadline is None:
        sizes = [s.get("db_size") or 0 for s in etcd("status").values()]
        deadline = promote_deadline(max(sizes or [0]))
    started = time.monotonic()
    try:
        promoted = etcd("member_promote", learner["id"], timeout=deadline)
    except CommandExecutionError as exc:
        if time.monotonic() - started < deadline:
            raise
        rollback = _rollback_learner(etcd, cluster, member, learner)
        raise StepFailed(
            "{} did not catch up within {} s ({}): {}; run add_member again once the cause "
            "is fixed".format(new["name"], deadline, exc, rollback)
        )
    return _ok(
        "{} has been promoted to a voting member after {} s".format(
            new["name"], promoted.get("waited")),
        promoted=promoted.get("promoted"), waited=promoted.get("waited"),
        caught_up=promoted.get("caught_up"), refusals=promoted.get("refusals"),
        deadline=deadline, changes={"promoted": learner["id"]},
    )


def _rollback_learner(etcd, cluster, member, learner):
    """Remove a learner that did not catch up, stop it, wipe its data: what was done."""
    done = []
    etcd("member_remove", learner["id"])
    done.append("the learner has been removed from the cluster")
    try:
        _on_minion(member, "service.stop", "etcd")
        _on_minion(member, "file.remove", cluster["data_dir"])
        done.append("etcd stopped on {} and {} wiped".format(member, cluster["data_dir"]))
    except StepFailed as exc:
        done.append("its data dir could not be wiped ({}): purge it before a re-run".format(exc))
    return ", ".join(done)


@_step
def remove_learner(member):
    """
    Remove ``member``'s learner (a pending add that will not be finished), stop its etcd
    and wipe its data dir. A voter is refused: use the remove_member orchestration.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.remove_learner h4
    """
    cluster, new, etcd = _open(member)
    learner = find_member(etcd("members"), new["peer_url"])
    if learner is None:
        return _ok("{} is not a member".format(new["name"]))
    if not learner["is_learner"]:
        raise StepFailed("{} is a voting member: use the remove_member orchestration".format(
            new["name"]))
    return _ok(_rollback_learner(etcd, cluster, member, learner),
               changes={"removed": learner["id"]})


# -- endpoint references ------------------------------------------------------------------------


def _apply(target, tgt_type, sls, pillar):
    """state.apply ``sls`` on ``target``: {minion: failure} of the minions that failed."""
    answers = __salt__["salt.execute"](
        target, "state.apply", arg=[sls], tgt_type=tgt_type, kwarg={"pillar": pillar}
    ) or {}
    if not answers:
        return {target: "no minion answered"}
    failures = {}
    for minion, answer in answers.items():
        if not isinstance(answer, dict):
            failures[minion] = answer if isinstance(answer, str) else repr(answer)
            continue
        bad = [s.get("comment", "") for s in answer.values()
               if isinstance(s, dict) and s.get("result") is False]
        if bad:
            failures[minion] = "; ".join(bad)
    return failures


@_step
def refresh_endpoints(member=None, cluster=None, exclude=None):
    """
    Steps 5 of add_member and 2 of remove_member: point every client at the voting
    members (never a learner, never ``exclude``, a member about to leave), without
    restarting etcd: the etcdctl env of the members (etcd.env), and the clients of pillar
    ``etcd:clusters:<cluster>:clients``: patroni (``etcd3`` hosts, then reload),
    vip-manager (``dcs-endpoints``, then restart), prometheus (its target file).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.refresh_endpoints member=h4
        salt-run etcd.refresh_endpoints cluster=etcd exclude=h1
    """
    etcd_pillar, settings = _cluster_context(cluster, member)
    exclude = [exclude] if exclude else []
    etcd = _Cluster(etcd_pillar, settings, exclude=exclude)
    members = etcd("members")
    endpoints = voting_endpoints(settings, members, exclude)
    if not endpoints:
        raise StepFailed("no voting member left to point clients at")
    handed = {"etcd_client": {"cluster": settings["name"], "endpoints": endpoints}}
    failures = {}
    voters = [m for m in settings["members"] if m not in exclude and
              __utils__["etcd_pillar.client_url"](settings, m) in endpoints]
    failures.update(_apply(",".join(voters), "list", "etcd.env", handed))
    refreshed = ["etcdctl env on " + ", ".join(voters)]
    for kind, (target, tgt_type) in sorted(client_targets(settings).items()):
        failures.update(
            {"{} ({})".format(m, kind): why
             for m, why in _apply(target, tgt_type, CLIENT_SLS[kind], handed).items()}
        )
        refreshed.append("{} on {}".format(kind, target))
    if failures:
        raise StepFailed("endpoint refresh failed on {}".format(
            "; ".join("{}: {}".format(m, why) for m, why in sorted(failures.items()))))
    return _ok("endpoints {} given to {}".format(",".join(endpoints), "; ".join(refreshed)),
               endpoints=endpoints)


# -- remove_member ------------------------------------------------------------------------------


@_step
def remove_preflight(member, force=False):
    """
    Step 1 of remove_member: ``member`` is in its cluster's pillar (keep it there until
    the removal is done) and removing it is safe: quorum kept with the healthy members,
    not 2 -> 1, not the last one; ``force=True`` removes it anyway.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.remove_preflight h3
    """
    cluster, leaving, etcd = _open(member, ask_member=True)
    target = find_member(etcd("members"), leaving["peer_url"])
    if target is None:
        return _ok("{} is not a member of cluster {}: the remaining steps clean up".format(
            leaving["name"], cluster["name"]), plan="gone")
    removal_plan(etcd("removal_check", target["id"]), force=bool(force))
    return _ok("{} ({}) can be removed from cluster {}".format(
        leaving["name"], "learner" if target["is_learner"] else "voter", cluster["name"]),
        plan="remove", id=target["id"])


@_step
def move_leader_off(member):
    """
    Step 3 of remove_member: when ``member`` leads, hand leadership to the healthy voter
    furthest ahead, so its removal leaves the cluster with a leader.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.move_leader_off h1
    """
    cluster, leaving, etcd = _open(member, ask_member=True)
    members = etcd("members")
    target = find_member(members, leaving["peer_url"])
    if target is None or target["is_learner"]:
        return _ok("{} does not lead".format(leaving["name"]), moved=False)
    leader = etcd("leader")
    if leader["id"] != target["id"]:
        return _ok("{} does not lead ({} does)".format(leaving["name"], leader["name"]),
                   moved=False)
    moved = etcd("move_leader")
    return _ok("leadership has moved from {} to {}".format(moved["old"], moved["new"]),
               moved=True, changes={"leader": {"old": moved["old"], "new": moved["new"]}})


@_step
def member_remove(member, force=False):
    """
    Step 4 of remove_member: ``member`` removed from the cluster's membership (etcd's
    own checks again: quorum, leader).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.member_remove h3
    """
    cluster, leaving, etcd = _open(member)
    target = find_member(etcd("members"), leaving["peer_url"])
    if target is None:
        return _ok("{} is not a member".format(leaving["name"]), removed=False)
    removed = etcd("member_remove", target["id"], force=bool(force))
    return _ok("{} has been removed from cluster {}".format(leaving["name"], cluster["name"]),
               removed=True, leader_moved_to=removed.get("leader_moved_to"),
               changes={"removed": target["id"]})


@_step
def retire(member):
    """
    Step 5 of remove_member, on the removed host: etcd stopped and disabled; its data dir
    archived (``<data_dir>.removed-<time>.tar.gz``, kept) and then purged when the
    cluster's ``safeguard`` is false (Pigsty's etcd_safeguard), kept when it is true.
    Refused while the host is still a member.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.retire h3
    """
    cluster, leaving, etcd = _open(member)
    if find_member(etcd("members"), leaving["peer_url"]) is not None:
        raise StepFailed("{} is still a member: remove it first (etcd.member_remove)".format(
            leaving["name"]))
    done = []
    _on_minion(member, "service.stop", "etcd")
    _on_minion(member, "service.disable", "etcd")
    done.append("etcd stopped and disabled on {}".format(member))
    data_dir = cluster["data_dir"]
    entries, _ = _data_dir(cluster, member)
    archive = None
    if entries:
        archive = "{}.removed-{}.tar.gz".format(
            data_dir.rstrip("/"), time.strftime("%Y%m%dT%H%M%S"))
        out = _on_minion(member, "archive.tar", "czf", archive, sources=".", cwd=data_dir)
        if not _on_minion(member, "file.file_exists", archive):
            raise StepFailed("archiving {} on {} failed ({}): data kept, not purged".format(
                data_dir, member, out))
        done.append("data dir archived to {}".format(archive))
        if cluster["safeguard"]:
            done.append("data dir kept: safeguard is true")
        else:
            _on_minion(member, "file.remove", data_dir)
            done.append("data dir {} purged".format(data_dir))
    else:
        done.append("data dir empty")
    return _ok("; ".join(done), archive=archive, changes={"retired": member})

"""
The ``etcd`` pillar checked before anything changes, and the rules every destructive step
checks again: a path the formula may delete (``path_problem``), a value that may be
rendered into an orchestration or a target (``minion_id_problem``).

``validate(etcd_pillar)`` returns ``(errors, warnings)``: every problem at once, each naming
the pillar key, the bad value and what was expected (with the close known key for a typo).
Pure functions, no I/O: ``etcd.assert`` runs it first in highstate, and every orchestration
runs it first on the master.
"""

import difflib
import ipaddress
import os
import posixpath
import re
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from etcd_settings import (  # noqa: E402
    BACKUP_DEFAULTS,
    CLIENT_DEFAULTS,
    CLUSTER_DEFAULTS,
    KEY_SIZES,
    MONITORING_DEFAULTS,
    PKI_DEFAULTS,
    version_tuple,
)

# Keys a cluster may set besides its members, and keys of one member.
MEMBER_KEYS = ("seq", "address")
TOP_KEYS = ("clusters", "pki", "pkg", "backup", "monitoring")
PKG_KEYS = ("server", "client", "version")
PKI_KEYS = tuple(PKI_DEFAULTS)
INIT_VALUES = ("auto", "new", "existing")
AUTO_COMPACTION_MODES = ("periodic", "revision")
# etcd refuses to start outside these (etcdserver/config.go, embed/config.go).
MIN_HEARTBEAT_MS = 1
ELECTION_PER_HEARTBEAT = 5
MAX_ELECTION_MS = 50000
# etcd's suggested maximum backend quota (dev-guide/limit).
SUGGESTED_MAX_QUOTA = 8 * 1024**3
CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A Go duration (auto-compaction-retention in periodic mode): 1h, 30m, 1h30m, 90s.
GO_DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def _is_int(value):
    # YAML gives bools for yes/no/true: they are ints to Python, never to a user.
    return isinstance(value, int) and not isinstance(value, bool)


def _unknown_keys(where, given, known):
    """One message per key of ``given`` not in ``known``, suggesting the close known key."""
    problems = []
    for key in sorted(given, key=str):
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
        hint = (
            "did you mean {!r}?".format(close[0])
            if close
            else "known keys: {}".format(", ".join(sorted(known)))
        )
        problems.append("{}: unknown key {!r}: {}".format(where, key, hint))
    return problems




def _check_int(problems, where, value, minimum=None, maximum=None, expected=None):
    """Append a message unless ``value`` is an integer within [minimum, maximum]."""
    if _is_int(value) and (minimum is None or value >= minimum) and (
        maximum is None or value <= maximum
    ):
        return True
    if expected is None:
        if minimum is not None and maximum is not None:
            expected = "an integer from {} to {}".format(minimum, maximum)
        elif minimum is not None:
            expected = "an integer >= {}".format(minimum)
        else:
            expected = "an integer"
    problems.append("{}: {!r}: expected {}".format(where, value, expected))
    return False


def _check_bool(problems, where, value):
    if not isinstance(value, bool):
        problems.append("{}: {!r}: expected true or false".format(where, value))


# Directories the formula never takes for etcd's data (it chowns and may delete that dir):
# the system's own, exactly, and anything below the trees that belong to the system.
SYSTEM_DIRS = frozenset((
    "/", "/bin", "/boot", "/data", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64",
    "/libx32", "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys",
    "/tmp", "/usr", "/var", "/var/backups", "/var/cache", "/var/lib", "/var/local",
    "/var/lock", "/var/log", "/var/mail", "/var/opt", "/var/run", "/var/spool", "/var/tmp",
))
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
                "/proc", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var/tmp", "/var/run",
                "/var/log", "/var/cache")
MIN_PATH_DEPTH = 2  # /data/etcd (Pigsty's default) is the shallowest accepted


def path_problem(value, example="/var/lib/etcd/data", trees=True):
    """
    Why ``value`` is not a directory the formula may own and delete, or None: it must be a
    normalised absolute path (no ``..``, ``.``, ``//``), at least MIN_PATH_DEPTH deep, not
    a system directory nor (``trees``) inside a system tree. The one rule for every path
    the formula deletes (data dirs, archives, backups); destructive steps check it again.
    ``trees=False`` for a directory the formula only writes into (the CA's, under /etc).
    """
    if not isinstance(value, str) or not value:
        return "{!r}: expected an absolute path, e.g. {}".format(value, example)
    if not posixpath.isabs(value):
        return "{!r}: expected an absolute path, e.g. {}".format(value, example)
    parts = value.rstrip("/").split("/")[1:]
    if any(part in ("", ".", "..") for part in parts) or posixpath.normpath(value) != value.rstrip("/"):
        return "{!r}: expected a normalised path (no '..', '.' or '//'), e.g. {}".format(
            value, example)
    path = value.rstrip("/") or "/"
    if path in SYSTEM_DIRS or (trees and any(path.startswith(t + "/") for t in SYSTEM_TREES)):
        return "{!r}: a system directory (or inside one): expected a directory of etcd's own, " \
               "e.g. {}".format(value, example)
    if len(parts) < MIN_PATH_DEPTH:
        return "{!r}: expected a directory at least {} levels deep, e.g. {}".format(
            value, MIN_PATH_DEPTH, example)
    return None


def _check_path(problems, where, value, example="/var/lib/etcd/data", trees=True):
    problem = path_problem(value, example, trees)
    if problem:
        problems.append("{}: {}".format(where, problem))


# A plain minion id: what an orchestration argument may be, never a target expression.
MINION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def minion_id_problem(value, where="etcd_member"):
    """
    Why ``value`` is not a plain minion id (letters, digits, '.', '_', '-'; no glob,
    list, compound or other target expression, no whitespace), or None. Checked before any
    orchestration renders it.
    """
    if isinstance(value, str) and MINION_ID_RE.fullmatch(value):
        return None
    return ("{}: {!r}: expected one plain minion id (letters, digits, '.', '_', '-'), not a "
            "target expression, a list or anything with whitespace".format(where, value))


# An etcd or Debian package version ("3.5.30", "3.5.30-2", "1:3.5.30-2+b1"): it reaches a
# package manager and a rendered SLS, so nothing else passes.
VERSION_RE = re.compile(r"^(?:[0-9]+:)?[0-9]+\.[0-9]+\.[0-9]+(?:-[A-Za-z0-9.+~]+)?$")


def version_problem(value, where="etcd_version"):
    """Why ``value`` is not an etcd version (3.5.30) or a package version (3.5.30-2), or None."""
    if isinstance(value, str) and VERSION_RE.fullmatch(value):
        return None
    return ("{}: {!r}: expected an etcd version like 3.5.30 or a package version like "
            "3.5.30-2".format(where, value))


def _member_address(where, address, problems):
    """The member's address as an ip_address, or None after appending why it is bad."""
    try:
        ip = ipaddress.ip_address(str(address).strip("[]")) if isinstance(address, str) else None
    except ValueError:
        ip = None
    if ip is None:
        problems.append(
            "{}: {!r}: expected the member's IP address (etcd peers dial it; "
            "certs carry it as an IP SAN), e.g. 10.10.10.10".format(where, address)
        )
        return None
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        problems.append(
            "{}: {!r}: expected a unicast address other peers can reach, not an unspecified, "
            "loopback or multicast one (the member listens on 127.0.0.1 anyway)".format(where, address)
        )
        return None
    return ip


def _validate_members(where, members, errors):
    """
    Check one cluster's members; return {minion id: ip} of those with a good address.
    """
    if not isinstance(members, dict) or not members:
        errors.append(
            "{}: {!r}: expected a mapping of minion id -> {{seq: N, address: IP}} with at least "
            "one member".format(where, members)
        )
        return {}
    addresses = {}
    seqs = {}
    for minion_id, member in members.items():
        mwhere = "{}:{}".format(where, minion_id)
        if minion_id_problem(minion_id, where=where) is not None:
            errors.append("{}: {!r}: expected a plain minion id (letters, digits, '.', '_', "
                          "'-'): the formula targets members by their id".format(where, minion_id))
        if not isinstance(member, dict):
            errors.append(
                "{}: {!r}: expected {{seq: N, address: IP}}".format(mwhere, member)
            )
            continue
        errors.extend(_unknown_keys(mwhere, member, MEMBER_KEYS))
        if "seq" not in member:
            errors.append(
                "{}:seq: missing: every member needs a seq (etcd_seq), a positive integer "
                "unique in its cluster".format(mwhere)
            )
        elif _check_int(errors, mwhere + ":seq", member["seq"], minimum=1,
                        expected="a positive integer (etcd_seq)"):
            seqs.setdefault(member["seq"], []).append(minion_id)
        if "address" not in member:
            errors.append("{}:address: missing: expected the member's IP address".format(mwhere))
        else:
            ip = _member_address(mwhere + ":address", member["address"], errors)
            if ip is not None:
                addresses[minion_id] = ip
    for seq, minions in sorted(seqs.items()):
        if len(minions) > 1:
            errors.append(
                "{}: seq {} is used by {}: expected a seq unique in its cluster (member names are "
                "<cluster>-<seq>)".format(where, seq, ", ".join(sorted(minions, key=str)))
            )
    by_ip = {}
    for minion_id, ip in addresses.items():
        by_ip.setdefault(ip, []).append(minion_id)
    for ip, minions in by_ip.items():
        if len(minions) > 1:
            errors.append(
                "{}: address {} is used by {}: expected one address per member".format(
                    where, ip, ", ".join(sorted(minions, key=str))
                )
            )
    return addresses


# Client kinds (etcd/clients/<kind>.sls) and their keys (defaults: etcd_settings.CLIENT_DEFAULTS).
CLIENT_KEYS = {kind: tuple(defaults) + ("kind",) for kind, defaults in CLIENT_DEFAULTS.items()}
# The client kinds that get a client certificate from the formula (etcd.client).
CERTIFICATE_KINDS = ("patroni", "vip_manager")
# The target types a minion evaluates with match.<type> (etcd/clients/map.jinja): not
# nodegroup or range, which only the master knows.
TGT_TYPES = ("glob", "pcre", "list", "grain", "grain_pcre", "pillar", "pillar_pcre",
             "compound", "ipcidr")


def _validate_clients(where, clients, enable_v2, errors):
    """Check ``clients``: name -> {kind, target, tgt_type, ...} (see CLIENT_KEYS)."""
    if not isinstance(clients, dict):
        errors.append("{}: {!r}: expected a mapping of client name -> {{kind: {}, target: "
                      "...}}".format(where, clients, "|".join(sorted(CLIENT_KEYS))))
        return
    for name, spec in clients.items():
        kwhere = "{}:{}".format(where, name)
        if not isinstance(spec, dict):
            errors.append("{}: {!r}: expected {{target: <minions>, tgt_type: list}}".format(
                kwhere, spec))
            continue
        kind = spec.get("kind", name)
        if kind not in CLIENT_KEYS:
            close = difflib.get_close_matches(str(kind), list(CLIENT_KEYS), n=1, cutoff=0.6)
            errors.append("{}{}: {!r}: expected a client kind ({}){}".format(
                kwhere, ":kind" if "kind" in spec else "", kind, ", ".join(sorted(CLIENT_KEYS)),
                ": did you mean {!r}?".format(close[0]) if close else ""))
            continue
        errors.extend(_unknown_keys(kwhere, spec, CLIENT_KEYS[kind]))
        if not isinstance(spec.get("target"), (str, list)) or not spec.get("target"):
            errors.append("{}:target: {!r}: expected a target expression naming the {} "
                          "minions".format(kwhere, spec.get("target"), kind))
        tgt_type = spec.get("tgt_type", "glob")
        if tgt_type not in TGT_TYPES:
            errors.append("{}:tgt_type: {!r}: expected one of {} (a minion evaluates it: "
                          "nodegroup and range are the master's)".format(
                              kwhere, tgt_type, ", ".join(TGT_TYPES)))
        elif (kind in CERTIFICATE_KINDS and spec.get("target")
              and not (isinstance(spec.get("target"), list) or tgt_type == "list")):
            errors.append("{}:target: {!r} ({}): expected the exact minion ids of the {} hosts "
                          "(a list, or tgt_type: list): the CA issues their client "
                          "certificates to exact ids only, never to a pattern".format(
                              kwhere, spec.get("target"), tgt_type, kind))
        if kind == "vip_manager":
            version = spec.get("version", 1)
            if not _is_int(version) or version < 1:
                errors.append("{}:version: {!r}: expected 1 (vip-manager 1.x, etcd v2 API) "
                              "or 2 and later (v3 API)".format(kwhere, version))
            elif version == 1 and enable_v2 is not True:
                errors.append("{}:version: 1: vip-manager 1.x speaks etcd's v2 API only: "
                              "expected enable_v2: true on the cluster (etcd < 3.6), or "
                              "version: 2".format(kwhere))


def _secret_problem(where, value, required):
    """Why a secret is not usable, never showing it (None when it is)."""
    if value is None:
        return "{}: missing: expected a password (a string; pillar or sdb)".format(where) \
            if required else None
    if not isinstance(value, str) or not value or "\n" in value:
        return "{}: (hidden) of type {}: expected a non-empty one-line string".format(
            where, type(value).__name__)
    return None


def _validate_auth(where, settings, errors, warnings):
    """etcd RBAC: root's password and, with auth on, what each client logs in with."""
    auth_on = settings["auth"] is True
    problem = _secret_problem(where + ":root_password", settings.get("root_password"), auth_on)
    if problem:
        errors.append(problem + (" (auth: true needs it)" if auth_on else ""))
    clients = settings.get("clients")
    if not isinstance(clients, dict):
        return
    for name, spec in clients.items():
        if not isinstance(spec, dict):
            continue
        kwhere = "{}:clients:{}".format(where, name)
        kind = spec.get("kind", name)
        if kind == "patroni":
            scope = spec.get("scope")
            if scope is not None and (not isinstance(scope, str) or not re.match(
                    r"^[A-Za-z0-9_.-]+$", scope)):
                errors.append("{}:scope: {!r}: expected patroni's scope (letters, digits, "
                              "'.', '_', '-')".format(kwhere, scope))
            namespace = spec.get("namespace", "/service")
            if not isinstance(namespace, str) or not namespace.startswith("/"):
                errors.append("{}:namespace: {!r}: expected patroni's namespace, a path such "
                              "as /service".format(kwhere, namespace))
            if auth_on and not scope:
                errors.append("{}:scope: missing: with auth: true patroni's etcd user gets "
                              "readwrite on /<namespace>/<scope>/ only: name its scope".format(kwhere))
            problem = _secret_problem(kwhere + ":password", spec.get("password"), auth_on)
            if problem:
                errors.append(problem)
        elif kind == "vip_manager":
            version = spec.get("version", 1)
            if auth_on and _is_int(version) and version >= 2:
                problem = _secret_problem(kwhere + ":password", spec.get("password"), True)
                if problem:
                    errors.append(problem)
                if not spec.get("trigger_key"):
                    errors.append("{}:trigger_key: missing: with auth: true vip-manager's etcd "
                                  "user may read its trigger key only: name it".format(kwhere))
            elif auth_on and version == 1:
                warnings.append("{}: vip-manager 1.x reads etcd's v2 API, which etcd's "
                                "authentication does not cover, and patroni writes its leader "
                                "keys there for it (its etcd: section, no user): any client "
                                "certificate of the CA can change them, auth: true protects "
                                "nothing of patroni's (use vip-manager 2.x or later, version: "
                                "2)".format(kwhere))


def _validate_cluster(name, cluster, etcd_version, errors, warnings):
    """
    Check one cluster's settings; return its port names -> port numbers that are valid.
    """
    where = "etcd:clusters:{}".format(name)
    if not isinstance(name, str) or not CLUSTER_NAME_RE.match(name):
        errors.append(
            "{}: bad cluster name {!r}: expected letters, digits, '-', '_' or '.' "
            "(etcd_cluster; member names are <cluster>-<seq>)".format(where, name)
        )
    errors.extend(_unknown_keys(where, cluster, tuple(CLUSTER_DEFAULTS)))
    settings = dict(CLUSTER_DEFAULTS)
    settings.update(cluster)

    members = settings["members"]
    if isinstance(members, dict) and members and len(members) % 2 == 0:
        warnings.append(
            "{}:members: {} members: an even count tolerates no more failures than one member "
            "less; use an odd count (1, 3, 5)".format(where, len(members))
        )

    ports = {}
    for key in ("client_port", "peer_port", "metrics_port"):
        if _check_int(errors, "{}:{}".format(where, key), settings[key], 1, 65535):
            ports[key] = settings[key]
    by_port = {}
    for key, port in ports.items():
        by_port.setdefault(port, []).append(key)
    for port, keys in sorted(by_port.items()):
        if len(keys) > 1:
            errors.append(
                "{}: port {} is set for {}: expected a different port for each".format(
                    where, port, " and ".join(keys)
                )
            )

    heartbeat_ok = _check_int(
        errors, where + ":heartbeat_interval", settings["heartbeat_interval"], MIN_HEARTBEAT_MS,
        expected="an integer >= {} (ms, etcd_heartbeat_interval)".format(MIN_HEARTBEAT_MS),
    )
    election = settings["election_timeout"]
    if _check_int(
        errors, where + ":election_timeout", election, 1, MAX_ELECTION_MS,
        expected="an integer from 1 to {} (ms, etcd_election_timeout)".format(MAX_ELECTION_MS),
    ) and heartbeat_ok:
        heartbeat = settings["heartbeat_interval"]
        if election < ELECTION_PER_HEARTBEAT * heartbeat:
            errors.append(
                "{}:election_timeout: {}: expected at least {} times heartbeat_interval ({}), "
                "i.e. >= {} ms (etcd refuses to start otherwise)".format(
                    where, election, ELECTION_PER_HEARTBEAT, heartbeat,
                    ELECTION_PER_HEARTBEAT * heartbeat,
                )
            )

    if settings["init"] not in INIT_VALUES:
        errors.append(
            "{}:init: {!r}: expected one of {} (etcd_init)".format(
                where, settings["init"], ", ".join(INIT_VALUES)
            )
        )
    _check_path(errors, where + ":data_dir", settings["data_dir"])
    _validate_clients(where + ":clients", settings["clients"], settings["enable_v2"], errors)
    for key in ("safeguard", "clean", "enable_v2", "metrics_on_address", "auth"):
        _check_bool(errors, "{}:{}".format(where, key), settings[key])
    _validate_auth(where, settings, errors, warnings)
    if settings["enable_v2"] is True:
        version = version_tuple(etcd_version)
        if version is not None and version >= (3, 6):
            errors.append(
                "{}:enable_v2: true: etcd {} has no v2 API (removed in 3.6): expected false".format(
                    where, etcd_version
                )
            )
    if _check_int(errors, where + ":quota_backend_bytes", settings["quota_backend_bytes"], 1,
                  expected="a positive integer (bytes)"):
        if settings["quota_backend_bytes"] > SUGGESTED_MAX_QUOTA:
            warnings.append(
                "{}:quota_backend_bytes: {}: above etcd's suggested maximum of 8 GiB ({})".format(
                    where, settings["quota_backend_bytes"], SUGGESTED_MAX_QUOTA
                )
            )
    _check_int(errors, where + ":snapshot_count", settings["snapshot_count"], 1,
               expected="a positive integer")
    _check_int(errors, where + ":incarnation", settings["incarnation"], 1,
               expected="a positive integer")
    if settings["health_interval"] is not None:
        _check_int(errors, where + ":health_interval", settings["health_interval"], 5,
                   expected="seconds, at least 5 (or null: no health events)")
    _check_int(errors, where + ":defrag_min_bytes", settings["defrag_min_bytes"], 0,
               expected="an integer >= 0 (bytes: smaller dbs are never defragmented)")
    for key in ("defrag_in_use_ratio", "nospace_margin"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            errors.append("{}:{}: {!r}: expected a fraction between 0 and 1 (e.g. 0.5)".format(
                where, key, value))

    mode = settings["auto_compaction_mode"]
    retention = settings["auto_compaction_retention"]
    if mode not in AUTO_COMPACTION_MODES:
        errors.append(
            "{}:auto_compaction_mode: {!r}: expected one of {}".format(
                where, mode, ", ".join(AUTO_COMPACTION_MODES)
            )
        )
    elif mode == "revision" and not (_is_int(retention) and retention >= 0):
        errors.append(
            "{}:auto_compaction_retention: {!r}: expected a number of revisions to keep "
            "(auto_compaction_mode is revision)".format(where, retention)
        )
    elif mode == "periodic" and not (
        (_is_int(retention) and retention >= 0)
        or (isinstance(retention, str) and GO_DURATION_RE.match(retention))
    ):
        errors.append(
            "{}:auto_compaction_retention: {!r}: expected a duration like 1h or 30m, "
            "or a number of hours (auto_compaction_mode is periodic)".format(where, retention)
        )
    return ports


def _validate_pki(pki_pillar, errors):
    where = "etcd:pki"
    if not isinstance(pki_pillar, dict):
        errors.append("{}: {!r}: expected a mapping".format(where, pki_pillar))
        return dict(PKI_DEFAULTS)
    errors.extend(_unknown_keys(where, pki_pillar, PKI_KEYS))
    settings = dict(PKI_DEFAULTS)
    settings.update(pki_pillar)
    if minion_id_problem(settings["ca_server"]) is not None:
        errors.append(
            "{}:ca_server: {!r}: expected the minion id of the CA server".format(
                where, settings["ca_server"]
            )
        )
    _check_path(errors, where + ":ca_dir", settings["ca_dir"], "/etc/pki/etcd-ca", trees=False)
    _check_bool(errors, where + ":ca_provided", settings["ca_provided"])
    _check_int(errors, where + ":ca_days_valid", settings["ca_days_valid"], 1)
    if _check_int(errors, where + ":days_valid", settings["days_valid"], 1) and _check_int(
        errors, where + ":days_remaining", settings["days_remaining"], 0
    ):
        if settings["days_remaining"] >= settings["days_valid"]:
            errors.append(
                "{}:days_remaining: {}: expected fewer than days_valid ({}), or every run "
                "would renew the certificates".format(
                    where, settings["days_remaining"], settings["days_valid"]
                )
            )
    client_days = settings["client_days_valid"]
    if client_days is not None and _check_int(errors, where + ":client_days_valid", client_days, 1,
                                              expected="days (a positive integer), or null"):
        if _is_int(settings["days_remaining"]) and client_days <= settings["days_remaining"]:
            errors.append("{}:client_days_valid: {}: expected more than days_remaining ({}), or "
                          "every run would renew the client certificates".format(
                              where, client_days, settings["days_remaining"]))
    for algo, size in (("ca_key_algo", "ca_key_size"), ("key_algo", "key_size")):
        _check_key(errors, where, settings, algo, size)
    return settings


def _check_key(errors, where, settings, algo_key, size_key):
    if settings[algo_key] not in KEY_SIZES:
        errors.append(
            "{}:{}: {!r}: expected one of {}".format(
                where, algo_key, settings[algo_key], ", ".join(sorted(KEY_SIZES))
            )
        )
    elif settings[size_key] not in KEY_SIZES[settings[algo_key]]:
        errors.append(
            "{}:{}: {!r}: expected one of {} for {} {}".format(
                where, size_key, settings[size_key],
                ", ".join(str(s) for s in KEY_SIZES[settings[algo_key]]) or "none (null)",
                algo_key, settings[algo_key],
            )
        )


def _validate_monitoring(monitoring_pillar, errors):
    where = "etcd:monitoring"
    if monitoring_pillar is None:
        return
    if not isinstance(monitoring_pillar, dict):
        errors.append("{}: {!r}: expected a mapping (textfile_dir)".format(where, monitoring_pillar))
        return
    errors.extend(_unknown_keys(where, monitoring_pillar, tuple(MONITORING_DEFAULTS)))
    directory = monitoring_pillar.get("textfile_dir", MONITORING_DEFAULTS["textfile_dir"])
    if directory is not None and (not isinstance(directory, str) or not directory.startswith("/")):
        errors.append("{}:textfile_dir: {!r}: expected an absolute path (node_exporter's "
                      "--collector.textfile.directory), or null".format(where, directory))


def _validate_backup(backup_pillar, errors):
    where = "etcd:backup"
    if not isinstance(backup_pillar, dict):
        errors.append("{}: {!r}: expected a mapping".format(where, backup_pillar))
        return
    errors.extend(_unknown_keys(where, backup_pillar, tuple(BACKUP_DEFAULTS)))
    settings = dict(BACKUP_DEFAULTS, **backup_pillar)
    _check_path(errors, where + ":dir", settings["dir"], "/var/backups/etcd")
    _check_int(errors, where + ":keep", settings["keep"], 1, expected="a positive integer")
    _check_int(errors, where + ":max_age_days", settings["max_age_days"], 1,
               expected="a positive integer (days)")
    _check_int(errors, where + ":max_age_hours", settings["max_age_hours"], 1,
               expected="a positive integer (hours)")
    if settings["interval_hours"] is not None:
        _check_int(errors, where + ":interval_hours", settings["interval_hours"], 1,
                   expected="a positive integer (hours between snapshots), or null")
    command = settings["offsite_command"]
    if command is not None and not (isinstance(command, list) and command
                                    and all(isinstance(a, str) and a for a in command)):
        errors.append("{}:offsite_command: {!r}: expected a command as a list of arguments, "
                      "e.g. [rsync, -a, '{{file}}', 'backup-host:/srv/etcd/'], or null".format(
                          where, command))


def _validate_pkg(pkg_pillar, errors):
    where = "etcd:pkg"
    if not isinstance(pkg_pillar, dict):
        errors.append("{}: {!r}: expected a mapping".format(where, pkg_pillar))
        return
    errors.extend(_unknown_keys(where, pkg_pillar, PKG_KEYS))
    for key in ("server", "client"):
        if key in pkg_pillar and not (isinstance(pkg_pillar[key], str) and pkg_pillar[key]):
            errors.append("{}:{}: {!r}: expected a package name".format(where, key, pkg_pillar[key]))
    version = pkg_pillar.get("version")
    if version is not None and version_tuple(version) is None:
        errors.append(
            "{}:version: {!r}: expected an etcd package version like 3.5.16-4, or null".format(
                where, version
            )
        )


def plain(value):
    """``value`` with Salt's masked pillar containers (3008: their repr shows ``**********``)
    made plain dicts and lists again, so messages show the offending value."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def validate(etcd_pillar, minion_id=None, etcd_version=None):
    """
    Every problem of the ``etcd`` pillar at once: ``(errors, warnings)``, two lists of
    messages, each naming the pillar key, the bad value and what was expected.

    ``minion_id``: also an error when that minion is in no cluster. ``etcd_version``: the
    etcd that runs or will run (default: ``etcd:pkg:version``), for version-bound settings.
    """
    etcd_pillar = plain(etcd_pillar)
    errors, warnings = [], []
    if not isinstance(etcd_pillar, dict):
        return (
            ["etcd: {!r}: expected a mapping with clusters (and pki, pkg)".format(etcd_pillar)],
            warnings,
        )
    errors.extend(_unknown_keys("etcd", etcd_pillar, TOP_KEYS))
    _validate_monitoring(etcd_pillar.get("monitoring"), errors)
    pkg_pillar = etcd_pillar.get("pkg") or {}
    _validate_pkg(pkg_pillar, errors)
    if etcd_version is None and isinstance(pkg_pillar, dict):
        etcd_version = pkg_pillar.get("version")
    pki_settings = _validate_pki(etcd_pillar.get("pki") or {}, errors)
    _validate_backup(etcd_pillar.get("backup") or {}, errors)

    clusters_pillar = etcd_pillar.get("clusters")
    if not isinstance(clusters_pillar, dict) or not clusters_pillar:
        errors.append(
            "etcd:clusters: {!r}: expected a mapping of cluster name -> {{members: ...}} with at "
            "least one cluster".format(clusters_pillar)
        )
        clusters_pillar = {}

    member_of = {}  # minion id -> [cluster names]
    listeners = {}  # (ip, port) -> ["<cluster>:<minion>:<port key>"]
    for name, cluster in clusters_pillar.items():
        if not isinstance(cluster, dict):
            errors.append(
                "etcd:clusters:{}: {!r}: expected a mapping with members".format(name, cluster)
            )
            continue
        ports = _validate_cluster(name, cluster, etcd_version, errors, warnings)
        addresses = _validate_members(
            "etcd:clusters:{}:members".format(name), cluster.get("members"), errors
        )
        members = cluster.get("members") if isinstance(cluster.get("members"), dict) else {}
        for member in members:
            member_of.setdefault(member, []).append(name)
        for member, ip in addresses.items():
            for key, port in ports.items():
                listeners.setdefault((ip, port), []).append("{}:{}:{}".format(name, member, key))

    for member, names in sorted(member_of.items(), key=lambda item: str(item[0])):
        if len(names) > 1:
            errors.append(
                "etcd:clusters: minion {} is a member of {}: expected one cluster per "
                "minion".format(member, ", ".join(sorted(names)))
            )
    if pki_settings["ca_server"] in member_of:
        errors.append(
            "etcd:pki:ca_server: {!r} is an etcd member: expected a minion that is in no cluster "
            "(the CA key must never land on an etcd member)".format(pki_settings["ca_server"])
        )
    # within a cluster, shared addresses and ports are reported above: here, across clusters
    for (ip, port), users in sorted(listeners.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        if len({user.split(":")[0] for user in users}) > 1:
            errors.append(
                "etcd:clusters: {}:{} is used by {}: expected each address:port once".format(
                    ip, port, " and ".join(users)
                )
            )
    if minion_id is not None and minion_id not in member_of:
        errors.append(
            "etcd:clusters: minion {} is in no cluster: expected it under "
            "etcd:clusters:<cluster>:members (clusters: {})".format(
                minion_id, ", ".join(sorted(str(n) for n in clusters_pillar)) or "none"
            )
        )
    return errors, warnings



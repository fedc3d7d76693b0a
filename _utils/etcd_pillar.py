"""
The cluster definition: defaults, and pure functions that read the ``etcd`` pillar.

Everything here is a plain function of its arguments (no Salt dunders, no I/O), so the
execution module on a minion, a runner on the master and the SLS files (through
``etcd_cluster.settings``) all derive the same URLs, names and settings from the same pillar.

These defaults are the single source of the cluster settings' defaults: they live in Python,
not in ``defaults.yaml``, because a runner on the master must resolve them without a
fileserver round-trip.
"""

import copy
import difflib
import hashlib
import ipaddress
import posixpath
import re

# Cluster-level settings, with the Pigsty parameter each one stands for.
CLUSTER_DEFAULTS = {
    "members": {},  # minion id -> {seq (etcd_seq), address}
    "safeguard": False,  # etcd_safeguard: never purge a running member
    "clean": False,  # etcd_clean: purge an existing member's data when (re)initialising
    "data_dir": "/var/lib/etcd/data",  # etcd_data
    "client_port": 2379,  # etcd_port
    "peer_port": 2380,  # etcd_peer_port
    "metrics_port": 2381,  # plain-HTTP /metrics and /health, so scrapers need no client cert
    "init": "auto",  # etcd_init: auto (derived from what runs) | new | existing
    "election_timeout": 1000,  # etcd_election_timeout (ms)
    "heartbeat_interval": 100,  # etcd_heartbeat_interval (ms)
    "quota_backend_bytes": 2 * 1024**3,
    "auto_compaction_mode": "periodic",
    "auto_compaction_retention": "1h",
    "snapshot_count": 10000,
    "incarnation": 1,  # part of initial-cluster-token: bump it to re-create a cluster
    "enable_v2": False,  # only for vip-manager 1.x; etcd 3.6 has no v2 store
    # kind -> {target, tgt_type, ...}: the minions whose endpoint lists salt-run
    # etcd.refresh_endpoints keeps to the voting members (etcd/clients/<kind>.sls)
    "clients": {},
}

PKI_DEFAULTS = {
    "ca_server": "master",  # minion id holding the CA key; never an etcd member
    "ca_dir": "/etc/pki/etcd-ca",
    "days_valid": 825,
    "days_remaining": 30,
    "ca_days_valid": 3650,  # the CA certificate's validity, when the formula generates it
    "ca_provided": False,  # true: the user put ca.key and ca.crt in ca_dir; never written then
    "key_algo": "ec",  # member keys (and a generated CA key): ec or rsa
    "key_size": 256,  # ec: 256, 384, 521; rsa: 2048, 3072, 4096
}

# The key sizes each key algorithm accepts (Salt's x509_v2).
KEY_SIZES = {"ec": (256, 384, 521), "rsa": (2048, 3072, 4096)}

# Where things live on an etcd member.
PATHS = {
    "config_dir": "/etc/etcd",
    "config_file": "/etc/etcd/etcd.conf.yml",
    "pki_dir": "/etc/etcd/pki",
    "ca_file": "/etc/etcd/pki/ca.crt",
    "client_cert_file": "/etc/etcd/pki/client.crt",
    "client_key_file": "/etc/etcd/pki/client.key",
    "peer_cert_file": "/etc/etcd/pki/peer.crt",
    "peer_key_file": "/etc/etcd/pki/peer.key",
    "server_cert_file": "/etc/etcd/pki/server.crt",
    "server_key_file": "/etc/etcd/pki/server.key",
    "unit_file": "/etc/systemd/system/etcd.service",
    "env_file": "/etc/profile.d/etcdctl.sh",
}


def clusters(etcd_pillar):
    """
    Every cluster of the pillar, each merged over CLUSTER_DEFAULTS.
    """
    merged = {}
    for name, cluster in ((etcd_pillar or {}).get("clusters") or {}).items():
        settings = copy.deepcopy(CLUSTER_DEFAULTS)
        settings.update(copy.deepcopy(cluster or {}))
        settings["name"] = name
        merged[name] = settings
    return merged


def pki(etcd_pillar):
    """
    The PKI settings merged over PKI_DEFAULTS.
    """
    settings = dict(PKI_DEFAULTS)
    settings.update((etcd_pillar or {}).get("pki") or {})
    return settings


def cluster_of(etcd_pillar, minion_id):
    """
    The merged settings of the one cluster ``minion_id`` is a member of, or None.
    """
    for cluster in clusters(etcd_pillar).values():
        if minion_id in (cluster.get("members") or {}):
            return cluster
    return None


def cluster_named(etcd_pillar, name):
    """
    The merged settings of cluster ``name``; KeyError naming the known ones if absent.
    """
    found = clusters(etcd_pillar)
    if name not in found:
        raise KeyError(
            "no etcd cluster named {!r} in pillar (known: {})".format(
                name, ", ".join(sorted(found)) or "none"
            )
        )
    return found[name]


def member_name(cluster, minion_id):
    """
    etcd's member name: ``<cluster>-<seq>``, as Pigsty names them.
    """
    return "{}-{}".format(cluster["name"], cluster["members"][minion_id]["seq"])


def _url(address, port, scheme="https"):
    host = "[{}]".format(address) if ":" in str(address) else address
    return "{}://{}:{}".format(scheme, host, port)


def peer_url(cluster, minion_id):
    return _url(cluster["members"][minion_id]["address"], cluster["peer_port"])


def client_url(cluster, minion_id):
    return _url(cluster["members"][minion_id]["address"], cluster["client_port"])


def client_urls(cluster, minion_ids=None):
    """
    Client URLs of the pillar members (all of them, or ``minion_ids``), ordered by seq.
    """
    members = cluster["members"]
    wanted = [m for m in members if minion_ids is None or m in minion_ids]
    return [client_url(cluster, m) for m in sorted(wanted, key=lambda m: members[m]["seq"])]


def voting_client_urls(cluster, members=None):
    """
    Client URLs of the pillar members that vote, by seq: those whose peer URL is a voter's
    in ``members`` (the real membership, as ``etcd_cluster.members`` lists it). All the
    pillar members when ``members`` is None (no cluster to ask) or names none of them.
    A learner serves no client request: clients must not be given it.
    """
    if members is None:
        return client_urls(cluster)
    voting_peer_urls = {url for m in members if not m["is_learner"] for url in m["peer_urls"]}
    voting = [m for m in cluster["members"] if peer_url(cluster, m) in voting_peer_urls]
    return client_urls(cluster, voting) if voting else client_urls(cluster)


def initial_cluster_token(cluster):
    """
    A token unique to this cluster's incarnation: the same on every member (they bootstrap
    independently), different when the cluster is re-created with a bumped ``incarnation``.
    """
    digest = hashlib.sha256(
        "{}:{}".format(cluster["name"], cluster["incarnation"]).encode()
    ).hexdigest()[:8]
    return "{}-{}".format(cluster["name"], digest)


# -- the member's etcd config file ----------------------------------------------------------------

# Set when a member first starts; etcd ignores them once its data dir holds a member.
INITIAL_KEYS = ("initial-cluster", "initial-cluster-state", "initial-cluster-token")


def initial_settings(config):
    """The INITIAL_KEYS values of a config file's settings, or None if any is missing."""
    if not isinstance(config, dict) or not all(key in config for key in INITIAL_KEYS):
        return None
    return {key: config[key] for key in INITIAL_KEYS}


def joining_initial_cluster(members, member_name, peer_url):
    """
    ``initial-cluster`` for a member joining a running cluster: the real membership
    (``members`` as ``etcd_cluster.members`` lists them), this member named ``member_name``.
    ValueError when this member (``peer_url``) was never added, or another member never
    started (its name is unknown then).
    """
    parts, found = [], False
    for member in members:
        name = member["name"]
        if peer_url in member["peer_urls"]:
            name, found = member_name, True
        if not name:
            raise ValueError(
                "member {} ({}) was added but never started: start or remove it first".format(
                    member["id"], ",".join(member["peer_urls"])
                )
            )
        parts.extend("{}={}".format(name, url) for url in member["peer_urls"])
    if not found:
        raise ValueError(
            "the running cluster has no member with peer URL {}: add it first "
            "(etcd_member.present), then apply again".format(peer_url)
        )
    return ",".join(parts)


def member_config(settings, initial, etcd_version=None):
    """
    The content of the member's etcd config file (etcd's YAML keys, in a stable order):
    ``settings`` as ``member_settings`` gives them, ``initial`` the INITIAL_KEYS values.
    """
    paths = settings["paths"]
    address = settings["address"]
    config = {
        "name": settings["member_name"],
        "data-dir": settings["data_dir"],
        "listen-peer-urls": settings["peer_url"],
        "listen-client-urls": "{},{}".format(
            settings["client_url"], _url("127.0.0.1", settings["client_port"])
        ),
        "listen-metrics-urls": "{},{}".format(
            _url(address, settings["metrics_port"], "http"),
            _url("127.0.0.1", settings["metrics_port"], "http"),
        ),
        "advertise-client-urls": settings["client_url"],
        "initial-advertise-peer-urls": settings["peer_url"],
    }
    config.update((key, initial[key]) for key in INITIAL_KEYS)
    config.update(
        {
            "heartbeat-interval": settings["heartbeat_interval"],
            "election-timeout": settings["election_timeout"],
            "quota-backend-bytes": settings["quota_backend_bytes"],
            "auto-compaction-mode": settings["auto_compaction_mode"],
            # etcd reads it as a string: a bare YAML number would not load
            "auto-compaction-retention": str(settings["auto_compaction_retention"]),
            "snapshot-count": settings["snapshot_count"],
            "client-transport-security": {
                "cert-file": paths["server_cert_file"],
                "key-file": paths["server_key_file"],
                "trusted-ca-file": paths["ca_file"],
                "client-cert-auth": True,
                "auto-tls": False,
            },
            "peer-transport-security": {
                "cert-file": paths["peer_cert_file"],
                "key-file": paths["peer_key_file"],
                "trusted-ca-file": paths["ca_file"],
                "client-cert-auth": True,
                "auto-tls": False,
            },
            # off by default when etcd reads a config file (3.4): the formula's client speaks it
            "enable-grpc-gateway": True,
            "logger": "zap",
            "log-outputs": ["stderr"],
        }
    )
    version = version_tuple(etcd_version)
    if settings.get("enable_v2") and (version is None or version < (3, 6)):
        config["enable-v2"] = True
    return config


# -- validation -----------------------------------------------------------------------------------

# Keys a cluster may set besides its members, and keys of one member.
MEMBER_KEYS = ("seq", "address")
TOP_KEYS = ("clusters", "pki", "pkg")
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


def version_tuple(version):
    """
    (major, minor) of an etcd or Debian package version ("3.5.16-4", "1:3.6.0"), or None.
    """
    match = re.match(r"^(?:[0-9]+:)?([0-9]+)\.([0-9]+)", str(version or ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


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


def _check_abs_path(problems, where, value):
    if not isinstance(value, str) or not posixpath.isabs(value) or posixpath.normpath(value) == "/":
        problems.append(
            "{}: {!r}: expected an absolute path (not /), e.g. /var/lib/etcd/data".format(where, value)
        )


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


# Client kinds (etcd/clients/<kind>.sls) and their keys (defaults: etcd/clients/defaults.yaml).
CLIENT_KEYS = {
    "patroni": ("target", "tgt_type", "config", "service", "user", "cacert", "cert", "key"),
    "vip_manager": ("target", "tgt_type", "version", "config", "service", "user", "cacert", "cert",
                    "key", "ip", "netmask", "interface", "trigger_key", "trigger_value"),
    "prometheus": ("target", "tgt_type", "targets_file"),
}
TGT_TYPES = ("glob", "pcre", "list", "grain", "grain_pcre", "pillar", "pillar_pcre",
             "nodegroup", "range", "compound", "ipcidr")


def _validate_clients(where, clients, enable_v2, errors):
    """Check ``clients``: kind -> {target, tgt_type, ...} (see CLIENT_KEYS)."""
    if not isinstance(clients, dict):
        errors.append("{}: {!r}: expected a mapping of client kind ({}) -> {{target: ...}}".format(
            where, clients, ", ".join(sorted(CLIENT_KEYS))))
        return
    errors.extend(_unknown_keys(where, clients, tuple(CLIENT_KEYS)))
    for kind, spec in clients.items():
        if kind not in CLIENT_KEYS:
            continue
        kwhere = "{}:{}".format(where, kind)
        if not isinstance(spec, dict):
            errors.append("{}: {!r}: expected {{target: <minions>, tgt_type: glob}}".format(
                kwhere, spec))
            continue
        errors.extend(_unknown_keys(kwhere, spec, CLIENT_KEYS[kind]))
        if not isinstance(spec.get("target"), str) or not spec.get("target"):
            errors.append("{}:target: {!r}: expected a target expression naming the {} "
                          "minions".format(kwhere, spec.get("target"), kind))
        if spec.get("tgt_type", "glob") not in TGT_TYPES:
            errors.append("{}:tgt_type: {!r}: expected one of {}".format(
                kwhere, spec.get("tgt_type"), ", ".join(TGT_TYPES)))
        if kind == "vip_manager":
            version = spec.get("version", 1)
            if version not in (1, 2):
                errors.append("{}:version: {!r}: expected 1 (vip-manager 1.x, etcd v2 API) "
                              "or 2 (2.x, v3 API)".format(kwhere, version))
            elif version == 1 and enable_v2 is not True:
                errors.append("{}:version: 1: vip-manager 1.x speaks etcd's v2 API only: "
                              "expected enable_v2: true on the cluster (etcd < 3.6), or "
                              "version: 2".format(kwhere))


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
    _check_abs_path(errors, where + ":data_dir", settings["data_dir"])
    _validate_clients(where + ":clients", settings["clients"], settings["enable_v2"], errors)
    for key in ("safeguard", "clean", "enable_v2"):
        _check_bool(errors, "{}:{}".format(where, key), settings[key])
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
    if not isinstance(settings["ca_server"], str) or not settings["ca_server"]:
        errors.append(
            "{}:ca_server: {!r}: expected the minion id of the CA server".format(
                where, settings["ca_server"]
            )
        )
    _check_abs_path(errors, where + ":ca_dir", settings["ca_dir"])
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
    if settings["key_algo"] not in KEY_SIZES:
        errors.append(
            "{}:key_algo: {!r}: expected one of {}".format(
                where, settings["key_algo"], ", ".join(sorted(KEY_SIZES))
            )
        )
    elif settings["key_size"] not in KEY_SIZES[settings["key_algo"]]:
        errors.append(
            "{}:key_size: {!r}: expected one of {} for key_algo {}".format(
                where, settings["key_size"],
                ", ".join(str(s) for s in KEY_SIZES[settings["key_algo"]]) or "none (null)",
                settings["key_algo"],
            )
        )
    return settings


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


def validate(etcd_pillar, minion_id=None, etcd_version=None):
    """
    Every problem of the ``etcd`` pillar at once: ``(errors, warnings)``, two lists of
    messages, each naming the pillar key, the bad value and what was expected.

    ``minion_id``: also an error when that minion is in no cluster. ``etcd_version``: the
    etcd that runs or will run (default: ``etcd:pkg:version``), for version-bound settings.
    """
    errors, warnings = [], []
    if not isinstance(etcd_pillar, dict):
        return (
            ["etcd: {!r}: expected a mapping with clusters (and pki, pkg)".format(etcd_pillar)],
            warnings,
        )
    errors.extend(_unknown_keys("etcd", etcd_pillar, TOP_KEYS))
    pkg_pillar = etcd_pillar.get("pkg") or {}
    _validate_pkg(pkg_pillar, errors)
    if etcd_version is None and isinstance(pkg_pillar, dict):
        etcd_version = pkg_pillar.get("version")
    pki_settings = _validate_pki(etcd_pillar.get("pki") or {}, errors)

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


def initial_cluster(cluster, minion_ids=None):
    """
    etcd's ``initial-cluster`` for the pillar members (all, or ``minion_ids``):
    ``<member name>=<peer URL>,...`` ordered by seq.
    """
    members = cluster["members"]
    wanted = [m for m in members if minion_ids is None or m in minion_ids]
    return ",".join(
        "{}={}".format(member_name(cluster, m), peer_url(cluster, m))
        for m in sorted(wanted, key=lambda m: members[m]["seq"])
    )


def client_tls_files():
    """The CA and client certificate a member's tools use to reach its etcd."""
    return {
        "ca_file": PATHS["ca_file"],
        "cert_file": PATHS["client_cert_file"],
        "key_file": PATHS["client_key_file"],
    }


def member_settings(etcd_pillar, minion_id):
    """
    Everything ``minion_id``'s etcd member is configured from: its cluster's merged settings
    plus its own names and URLs, the cluster's endpoints, PKI settings and file paths.
    None when the minion is a member of no cluster, or when the pillar is too broken to
    resolve it (a seq that is no number, a member without address...): the SLS files still
    render then, and ``etcd.assert`` fails naming every problem (``validate``).
    """
    try:
        return _member_settings(etcd_pillar, minion_id)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _member_settings(etcd_pillar, minion_id):
    cluster = cluster_of(etcd_pillar, minion_id)
    if cluster is None:
        return None
    settings = copy.deepcopy(cluster)
    member = cluster["members"][minion_id]
    settings.update(
        {
            "minion_id": minion_id,
            "seq": member["seq"],
            "address": member["address"],
            "member_name": member_name(cluster, minion_id),
            "peer_url": peer_url(cluster, minion_id),
            "client_url": client_url(cluster, minion_id),
            "endpoints": client_urls(cluster),
            "initial_cluster": initial_cluster(cluster),
            "initial_cluster_token": initial_cluster_token(cluster),
            "pki": pki(etcd_pillar),
            "paths": dict(PATHS),
        }
    )
    return settings

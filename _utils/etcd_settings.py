"""
The cluster definition: every default of the formula, and pure functions that derive a
member's (or a client's) settings from the ``etcd`` pillar.

Everything here is a plain function of its arguments (no Salt dunders, no I/O), so the
execution module on a minion, the runner on the master and the SLS files (through
``etcd_cluster.settings`` and ``etcd_cluster.client_settings``) all derive the same URLs,
names and paths from the same pillar. The defaults live here, in Python, not in
``defaults.yaml``: the runner must resolve them without a fileserver round-trip, and a
Jinja file that repeated one would drift.
"""

import copy
import hashlib
import json
import posixpath
import re

# Cluster-level settings, with the Pigsty parameter each one stands for.
CLUSTER_DEFAULTS = {
    "members": {},  # minion id -> {seq (etcd_seq), address}
    "safeguard": False,  # etcd_safeguard: never purge a member, running or not
    "clean": False,  # etcd_clean: etcd.clean may purge a stopped member that left the cluster
    "data_dir": "/var/lib/etcd/data",  # etcd_data
    "client_port": 2379,  # etcd_port
    "peer_port": 2380,  # etcd_peer_port
    "metrics_port": 2381,  # plain-HTTP /metrics and /health, so scrapers need no client cert
    "metrics_on_address": False,  # /metrics on the member's address too (a prometheus elsewhere)
    "init": "auto",  # etcd_init: auto (derived, on proof) | new (this run: no cluster exists) | existing
    "election_timeout": 1000,  # etcd_election_timeout (ms)
    "heartbeat_interval": 100,  # etcd_heartbeat_interval (ms)
    "quota_backend_bytes": 2 * 1024**3,
    "auto_compaction_mode": "periodic",
    "auto_compaction_retention": "1h",
    "snapshot_count": 10000,
    "incarnation": 1,  # part of initial-cluster-token: bump it to re-create a cluster
    "enable_v2": False,  # only for vip-manager 1.x; etcd 3.6 has no v2 store
    # etcd RBAC (salt-run etcd.auth applies it): users and roles from this pillar, then
    # authentication on. root_password: the root user's (members' etcdctl, the runner).
    "auth": False,
    "root_password": None,
    # salt-run etcd.defrag defragments a member whose db is at least defrag_min_bytes and
    # less than defrag_in_use_ratio in use (etcd_mvcc_db_total_size_in_use_in_bytes / size)
    "defrag_in_use_ratio": 0.5,
    "defrag_min_bytes": 100 * 1024**2,
    # etcd.nospace disarms NOSPACE only once every member's db is this much under the quota
    "nospace_margin": 0.2,
    # seconds between etcd_health.watch runs on each member (etcd/health.sls); null: none
    "health_interval": 60,
    # name -> {kind, target, tgt_type, ...}: the minions whose endpoint lists salt-run
    # etcd.refresh_endpoints keeps to the voting members (etcd/clients/<kind>.sls)
    "clients": {},
}

PKI_DEFAULTS = {
    "ca_server": "master",  # minion id holding the CA key; never an etcd member
    "ca_dir": "/etc/pki/etcd-ca",
    "days_valid": 825,
    "days_remaining": 30,
    "client_days_valid": None,  # patroni's and vip-manager's certificates: shorter (days); null: days_valid
    "ca_days_valid": 3650,  # the CA certificate's validity, when the formula generates it
    "ca_provided": False,  # true: the user put ca.key and ca.crt in ca_dir; never written then
    "key_algo": "ec",  # member and client keys: ec or rsa
    "key_size": 256,  # ec: 256, 384, 521; rsa: 2048, 3072, 4096
    "ca_key_algo": "ec",  # the CA key's own settings, used once, when the formula creates it
    "ca_key_size": 384,
}

# The formula's own metrics (etcd_metrics): files for node_exporter's textfile collector.
MONITORING_DEFAULTS = {
    # Debian's prometheus-node-exporter reads this directory; null: no metrics files
    "textfile_dir": "/var/lib/prometheus/node-exporter",
}

# Snapshots, on the salt-master (salt-run etcd.snapshot; etcd/backup.sls schedules it).
BACKUP_DEFAULTS = {
    "dir": "/var/backups/etcd",  # 0700; <dir>/<cluster>/<cluster>-<time>.db, 0600, and manifest.json
    "keep": 7,  # verified snapshots kept per cluster (the newest)
    "max_age_days": 30,  # and none older than this (the newest is always kept)
    "interval_hours": 24,  # etcd/backup.sls schedules salt-run etcd.snapshot this often; null: never
    "offsite_command": None,  # argv run after each verified snapshot, "{file}" replaced by its path
    "max_age_hours": 26,  # salt-run etcd.status warns when the last good snapshot is older
}

# The key sizes each key algorithm accepts.
KEY_SIZES = {"ec": (256, 384, 521), "rsa": (2048, 3072, 4096)}

# Each client kind's settings (etcd/clients/<kind>.sls), under what the pillar sets.
CLIENT_DEFAULTS = {
    "patroni": {
        "target": None,
        "tgt_type": "glob",
        "config": "/etc/patroni/config.yml",  # Debian's patroni.service reads this file
        "service": "patroni",  # reloaded (SIGHUP) after a change
        "user": "postgres",  # patroni's user: owns its key (etcd.client)
        "cacert": "/etc/patroni/etcd/ca.crt",  # its own files: a member's client key is root's
        "cert": "/etc/patroni/etcd/client.crt",
        "key": "/etc/patroni/etcd/client.key",
        # with auth: its etcd user (default patroni-<scope>), readwrite on /<namespace>/<scope>/
        "scope": None,  # patroni's scope (its config's `scope`)
        "namespace": "/service",  # patroni's namespace
        "username": None,
        "password": None,
    },
    "vip_manager": {
        "target": None,
        "tgt_type": "glob",
        "version": 1,  # 1: vip-manager 1.x (etcd v2 API, enable_v2); 2: 2.x and later (v3)
        "config": None,  # /etc/default/vip-manager (1), /etc/default/vip-manager.yml (2)
        "service": "vip-manager",  # restarted after a change
        "user": "root",  # the packaged unit runs it as root
        "ip": None,  # the VIP; with interface and trigger_key, the whole config is written
        "netmask": 24,
        "interface": None,
        "trigger_key": None,  # patroni's leader key: /<namespace>/<scope>/leader
        "trigger_value": None,  # default: the minion id (patroni's `name` there)
        "cacert": "/etc/etcd/pki/ca.crt",
        "cert": "/etc/etcd/pki/client.crt",
        "key": "/etc/etcd/pki/client.key",
        # with auth (version 2 and later): its etcd user (default vip-manager-<client name>),
        # read on trigger_key only
        "username": None,
        "password": None,
    },
    "prometheus": {
        "target": None,
        "tgt_type": "glob",
        "targets_file": "/etc/prometheus/etcd_targets.yml",  # a file_sd_configs file
        "rules_dir": "/etc/prometheus/rules",  # etcd-alerts.yml, etcd-recording.yml go here
        "service": "prometheus",  # reloaded after a rules change
    },
}

# Where things live on an etcd member.
PATHS = {
    "config_dir": "/etc/etcd",
    "config_file": "/etc/etcd/etcd.conf.yml",
    "pki_dir": "/etc/etcd/pki",
    "ca_file": "/etc/etcd/pki/ca.crt",  # the clients' CA: the client port trusts it
    "peer_ca_file": "/etc/etcd/pki/peer-ca.crt",  # the peers' own CA: the peer port trusts only it
    # root's etcd credentials (user:password, 0600 root): etcdctl's ETCDCTL_USER on the members
    "root_credentials_file": "/etc/etcd/root.credentials",
    "client_cert_file": "/etc/etcd/pki/client.crt",
    "client_key_file": "/etc/etcd/pki/client.key",
    "peer_cert_file": "/etc/etcd/pki/peer.crt",
    "peer_key_file": "/etc/etcd/pki/peer.key",
    "server_cert_file": "/etc/etcd/pki/server.crt",
    "server_key_file": "/etc/etcd/pki/server.key",
    "unit_file": "/etc/systemd/system/etcd.service",
    "env_file": "/etc/profile.d/etcdctl.sh",
}

# The master's client certificate for etcd (etcd/admin.sls), under etcd:pki:ca_dir.
ADMIN_SUBDIR = "admin"
# The locks in etcd (etcd_client.lock): a member's restart, one at a time; an operation
# of the runner (add, remove, restore...), one at a time per cluster.
RESTART_LOCK = "restart/{}"
OPERATION_LOCK = "operation/{}"


def clusters(etcd_pillar):
    """Every cluster of the pillar, each merged over CLUSTER_DEFAULTS."""
    merged = {}
    for name, cluster in ((etcd_pillar or {}).get("clusters") or {}).items():
        settings = copy.deepcopy(CLUSTER_DEFAULTS)
        settings.update(copy.deepcopy(cluster or {}))
        settings["name"] = name
        merged[name] = settings
    return merged


def pki(etcd_pillar):
    """The PKI settings merged over PKI_DEFAULTS."""
    settings = dict(PKI_DEFAULTS)
    settings.update((etcd_pillar or {}).get("pki") or {})
    return settings


def cluster_of(etcd_pillar, minion_id):
    """The merged settings of the one cluster ``minion_id`` is a member of, or None."""
    for cluster in clusters(etcd_pillar).values():
        if minion_id in (cluster.get("members") or {}):
            return cluster
    return None


def cluster_named(etcd_pillar, name):
    """The merged settings of cluster ``name``; KeyError naming the known ones if absent."""
    found = clusters(etcd_pillar)
    if name not in found:
        raise KeyError(
            "no etcd cluster named {!r} in pillar (known: {})".format(
                name, ", ".join(sorted(found)) or "none"
            )
        )
    return found[name]


def member_name(cluster, minion_id):
    """etcd's member name: ``<cluster>-<seq>``, as Pigsty names them."""
    return "{}-{}".format(cluster["name"], cluster["members"][minion_id]["seq"])


def url(address, port, scheme="https"):
    host = "[{}]".format(address) if ":" in str(address) else address
    return "{}://{}:{}".format(scheme, host, port)


def peer_url(cluster, minion_id):
    return url(cluster["members"][minion_id]["address"], cluster["peer_port"])


def client_url(cluster, minion_id):
    return url(cluster["members"][minion_id]["address"], cluster["client_port"])


def by_seq(cluster, minion_ids=None):
    """The pillar members (all, or ``minion_ids``), ordered by seq."""
    members = cluster["members"]
    wanted = [m for m in members if minion_ids is None or m in minion_ids]
    return sorted(wanted, key=lambda m: members[m]["seq"])


def client_urls(cluster, minion_ids=None):
    """Client URLs of the pillar members (all of them, or ``minion_ids``), ordered by seq."""
    return [client_url(cluster, m) for m in by_seq(cluster, minion_ids)]


def minion_of(cluster, peer_urls):
    """The pillar member whose peer URL is among ``peer_urls``, or None."""
    for minion in cluster["members"]:
        if peer_url(cluster, minion) in peer_urls:
            return minion
    return None


def voting_minions(cluster, members, exclude=()):
    """The pillar members that vote in ``members`` (the real membership), without the
    minions in ``exclude`` (one leaving), ordered by seq. A learner serves no client request:
    clients are never given one."""
    voting_peer_urls = {u for m in members if not m["is_learner"] for u in m["peer_urls"]}
    return by_seq(cluster, [m for m in cluster["members"] if m not in exclude
                            and peer_url(cluster, m) in voting_peer_urls])


def voting_client_urls(cluster, members=None, exclude=()):
    """
    Client URLs of the pillar members that vote, by seq (see ``voting_minions``). All the
    pillar members when ``members`` is None (no cluster to ask) or names none of them.
    """
    if members is None:
        return client_urls(cluster, [m for m in cluster["members"] if m not in exclude])
    voting = voting_minions(cluster, members, exclude)
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


def initial_cluster(cluster, minion_ids=None):
    """
    etcd's ``initial-cluster`` for the pillar members (all, or ``minion_ids``):
    ``<member name>=<peer URL>,...`` ordered by seq.
    """
    return ",".join(
        "{}={}".format(member_name(cluster, m), peer_url(cluster, m))
        for m in by_seq(cluster, minion_ids)
    )


def client_tls_files():
    """The CA and client certificate a member's tools use to reach its etcd."""
    return {
        "ca_file": PATHS["ca_file"],
        "cert_file": PATHS["client_cert_file"],
        "key_file": PATHS["client_key_file"],
    }


def peer_tls_files():
    """The CA and peer certificate a member dials the other members' peer ports with."""
    return {
        "ca_file": PATHS["peer_ca_file"],
        "cert_file": PATHS["peer_cert_file"],
        "key_file": PATHS["peer_key_file"],
    }


def admin_dir(pki_settings):
    return posixpath.join(pki_settings["ca_dir"], ADMIN_SUBDIR)


def admin_tls_files(pki_settings):
    """The master's client certificate for etcd (etcd/admin.sls): {ca_file, cert_file, key_file}."""
    directory = admin_dir(pki_settings)
    return {
        "ca_file": posixpath.join(directory, "ca.crt"),
        "cert_file": posixpath.join(directory, "client.crt"),
        "key_file": posixpath.join(directory, "client.key"),
    }


def monitoring(etcd_pillar):
    """The monitoring settings merged over MONITORING_DEFAULTS."""
    settings = dict(MONITORING_DEFAULTS)
    settings.update((etcd_pillar or {}).get("monitoring") or {})
    return settings


def backup(etcd_pillar):
    """The backup settings merged over BACKUP_DEFAULTS."""
    settings = dict(BACKUP_DEFAULTS)
    settings.update((etcd_pillar or {}).get("backup") or {})
    return settings


def backup_dir(etcd_pillar, cluster_name):
    """Where cluster ``cluster_name``'s snapshots live on the master."""
    return posixpath.join(backup(etcd_pillar)["dir"], cluster_name)


def restored_token(cluster, restore_id):
    """The initial-cluster-token of a cluster restored from a snapshot: the pillar's, and the
    restore's own (a restore always makes a new cluster: a new token)."""
    return "{}-r{}".format(initial_cluster_token(cluster), restore_id)


def token_matches(token, cluster):
    """Whether a member's ``token`` belongs to the pillar's cluster incarnation (as
    bootstrapped, or restored from a snapshot since)."""
    expected = initial_cluster_token(cluster)
    return token == expected or str(token).startswith(expected + "-r")


def restart_lock(cluster_name):
    """The name of the lock a member holds while it restarts."""
    return RESTART_LOCK.format(cluster_name)


def operation_lock(cluster_name):
    """The name of the lock an orchestration holds from its first step to its last."""
    return OPERATION_LOCK.format(cluster_name)


def digest(value):
    """A stable digest of a pillar value (to key caches by what they were derived from)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def member_settings(etcd_pillar, minion_id):
    """
    Everything ``minion_id``'s etcd member is configured from: its cluster's merged settings
    plus its own names and URLs, the cluster's endpoints, PKI settings and file paths.
    None when the minion is a member of no cluster, or when the pillar is too broken to
    resolve it (a seq that is no number, a member without address...): the SLS files still
    render then, and ``etcd.assert`` fails naming every problem (``etcd_validate``).
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
            "peer_urls": {m: peer_url(cluster, m) for m in cluster["members"]},
            "initial_cluster": initial_cluster(cluster),
            "initial_cluster_token": initial_cluster_token(cluster),
            "pki": pki(etcd_pillar),
            "paths": dict(PATHS),
        }
    )
    return settings


def client_specs(cluster):
    """{client name: spec} of the cluster's ``clients``, each merged over its kind's
    CLIENT_DEFAULTS (``kind`` defaults to the name: ``patroni``, ``vip_manager``,
    ``prometheus``)."""
    specs = {}
    for name, given in (cluster.get("clients") or {}).items():
        given = dict(given or {})
        kind = given.pop("kind", name)
        spec = copy.deepcopy(CLIENT_DEFAULTS.get(kind, {}))
        spec.update(given)
        spec.update(name=name, kind=kind)
        specs[name] = spec
    return specs


# Pillar keys whose values are secrets: never in what the formula prints or renders.
SECRET_KEYS = ("root_password", "password")
HIDDEN = "(hidden)"


def masked(value):
    """``value`` (settings, a client spec...) with every secret replaced by "(hidden)" (a
    secret that is not set stays None): what a CLI call returns or an SLS renders."""
    if isinstance(value, dict):
        return {k: (HIDDEN if k in SECRET_KEYS and v is not None else masked(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


SDB_PREFIX = "sdb://"


def secret(value, read_sdb=None):
    """A secret of the pillar as the formula hands it on: the value itself, or, for an
    ``sdb://<profile>/<key>`` URI (Vault, the environment...), what ``read_sdb(uri)`` (Salt's
    sdb, called by the caller: the runner on the master, a member's state) gives, so the
    password need be in no pillar. Patroni's and vip-manager's states read theirs with
    config.get, which resolves sdb URIs itself. Raises ValueError naming the URI (never a
    value) when there is nothing there."""
    if not (isinstance(value, str) and value.startswith(SDB_PREFIX)):
        return value
    found = read_sdb(value) if read_sdb else None
    if not isinstance(found, str) or not found or found == value:
        raise ValueError("{}: sdb gives no password there (is the sdb profile in this "
                         "{}'s config?)".format(value, "caller" if read_sdb is None else
                                                 "Salt daemon"))
    return found


def root_credentials(cluster, read_sdb=None):
    """(root, its password) for the cluster's etcd, or None when the pillar has none
    (``read_sdb``: see ``secret``)."""
    password = secret(cluster.get("root_password"), read_sdb)
    return ("root", str(password)) if password else None


def local_root_credentials(path=None):
    """(root, password) from this member's root credentials file (``user:password``, root's
    0600: etcdctl's ETCDCTL_USER), or None when it has none (or this process cannot read it)."""
    try:
        with open(path or PATHS["root_credentials_file"]) as handle:
            user, _, password = handle.read().strip().partition(":")
    except OSError:
        return None
    return (user, password) if user and password else None


def auth_users(cluster, read_sdb=None):
    """
    The etcd users and roles the pillar gives the cluster (``salt-run etcd.auth``):
    {user: {"password", "roles": [role]}}, {role: [(READ|WRITE|READWRITE, key, range_end)]}.
    root (role root: everything) is the formula's own user (the runner, members' etcdctl);
    each patroni client its user with readwrite on /<namespace>/<scope>/ only; a
    vip-manager 2.x+ client read on its trigger key only. Passwords given as sdb URIs are
    read with ``read_sdb`` (see ``secret``).
    """
    users = {"root": {"password": secret(cluster.get("root_password"), read_sdb),
                      "roles": ["root"]}}
    roles = {"root": []}
    for name, spec in sorted(client_specs(cluster).items()):
        if spec["kind"] == "patroni" and spec.get("scope"):
            user = spec.get("username") or "patroni-" + str(spec["scope"])
            prefix = "{}/{}/".format(str(spec.get("namespace") or "/service").rstrip("/"),
                                     spec["scope"])
            roles[user] = [("READWRITE", prefix, prefix_end(prefix))]
        elif spec["kind"] == "vip_manager" and int(spec.get("version") or 1) >= 2 \
                and spec.get("trigger_key"):
            user = spec.get("username") or "vip-manager-" + name
            roles[user] = [("READ", str(spec["trigger_key"]), "")]
        else:
            continue
        users[user] = {"password": secret(spec.get("password"), read_sdb), "roles": [user]}
    return users, roles


def prefix_end(prefix):
    """The range end of every key under ``prefix`` (etcdctl's --prefix)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def client_target(spec):
    """(target, tgt_type) of a client spec as Salt's targeting takes them: a YAML list is
    the exact ids, comma-joined, of tgt_type list (a list under glob would match nothing);
    (None, None) when the spec names no minion."""
    target = spec.get("target")
    if not target:
        return None, None
    if isinstance(target, list):
        return ",".join(str(t) for t in target), "list"
    return target, spec.get("tgt_type", "glob")


def client_settings(etcd_pillar, cluster_name=None, endpoints=None):
    """
    What etcd/clients/*.sls render from (etcd/clients/map.jinja): the cluster (``cluster_name``,
    else the first with clients, else the first), its ``endpoints`` (given: the voting
    members the runner read from the running cluster; else every pillar member), ``hosts``
    (host:port), ``metrics_port``, ``enable_v2``, ``pki``; ``clients``: every client spec
    (``client_specs``) with those cluster values in it; ``kinds``: for each kind the first
    spec of that kind (its defaults when the cluster has none), so an SLS finds its kind's
    settings by kind.
    """
    found = clusters(etcd_pillar)
    if cluster_name is None:
        with_clients = [n for n in sorted(found) if found[n].get("clients")]
        cluster_name = (with_clients or sorted(found) or [None])[0]
    cluster = found.get(cluster_name)
    if cluster is None:
        return {}
    endpoints = list(endpoints or client_urls(cluster))
    shared = {
        "cluster": cluster_name,
        "endpoints": endpoints,
        "hosts": [e.split("://", 1)[-1] for e in endpoints],
        "metrics_port": cluster["metrics_port"],
        "enable_v2": cluster["enable_v2"],
        "pki": pki(etcd_pillar),
    }
    specs = {name: dict(spec, **shared) for name, spec in client_specs(cluster).items()}
    by_kind = {}
    for kind, defaults in CLIENT_DEFAULTS.items():
        of_kind = [specs[n] for n in sorted(specs) if specs[n]["kind"] == kind]
        by_kind[kind] = of_kind[0] if of_kind else dict(
            copy.deepcopy(defaults), name=kind, kind=kind, **shared)
    return dict(shared, clients=specs, kinds=by_kind)


def version_tuple(version):
    """(major, minor) of an etcd or Debian package version ("3.5.16-4", "1:3.6.0"), or None."""
    match = re.match(r"^(?:[0-9]+:)?([0-9]+)\.([0-9]+)", str(version or ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_parts(version):
    """(major, minor, patch) of an etcd or Debian package version ("3.5.16-4"), or None."""
    match = re.match(r"^(?:[0-9]+:)?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?", str(version or ""))
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)

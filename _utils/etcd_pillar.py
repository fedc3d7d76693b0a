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
import hashlib

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
}

PKI_DEFAULTS = {
    "ca_server": "master",  # minion id holding the CA key; never an etcd member
    "ca_dir": "/etc/pki/etcd-ca",
    "days_valid": 825,
    "days_remaining": 30,
}

# Where things live on an etcd member.
PATHS = {
    "config_dir": "/etc/etcd",
    "config_file": "/etc/etcd/etcd.conf.yml",
    "pki_dir": "/etc/etcd/pki",
    "ca_file": "/etc/etcd/pki/ca.crt",
    "client_cert_file": "/etc/etcd/pki/client.crt",
    "client_key_file": "/etc/etcd/pki/client.key",
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


def _url(address, port):
    host = "[{}]".format(address) if ":" in str(address) else address
    return "https://{}:{}".format(host, port)


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


def initial_cluster_token(cluster):
    """
    A token unique to this cluster's incarnation: the same on every member (they bootstrap
    independently), different when the cluster is re-created with a bumped ``incarnation``.
    """
    digest = hashlib.sha256(
        "{}:{}".format(cluster["name"], cluster["incarnation"]).encode()
    ).hexdigest()[:8]
    return "{}-{}".format(cluster["name"], digest)

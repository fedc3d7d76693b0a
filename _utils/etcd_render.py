"""
A member's etcd config file (etcd's YAML, read with ``--config-file``): what it says, from
the member's settings (``etcd_settings.member_settings``), and which changes of it a
running member may not take by a restart.

Pure functions, no I/O: ``etcd_config.managed`` calls them.
"""

import os
import sys

import yaml

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from etcd_settings import url, version_parts, version_tuple  # noqa: E402

HEADER = "# Managed by Salt (etcd formula, etcd_config.managed): local changes are overwritten.\n"

# TLS: ECDHE with AEAD ciphers only (no CBC, no SHA-1: etcd's defaults accept them on 1.2).
CIPHER_SUITES = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
]
# etcd knows tls-min-version from 3.5.8 (3.4 would not start with it).
TLS_MIN_VERSION_SINCE = (3, 5, 8)

# Set when a member first starts; etcd ignores them once its data dir holds a member.
INITIAL_KEYS = ("initial-cluster", "initial-cluster-state", "initial-cluster-token")

# What a member is to the others and where its data lives: once the data dir holds a
# member, a change of any of these by a restart breaks it (etcd restarts on an empty data
# dir, or with peer URLs the others do not know). Key -> the pillar key behind it.
IDENTITY_KEYS = {
    "name": "members:<id>:seq (the member name is <cluster>-<seq>)",
    "data-dir": "data_dir",
    "initial-advertise-peer-urls": "members:<id>:address or peer_port",
    "listen-peer-urls": "members:<id>:address or peer_port",
}


def initial_settings(config):
    """The INITIAL_KEYS values of a config file's settings, or None if any is missing."""
    if not isinstance(config, dict) or not all(key in config for key in INITIAL_KEYS):
        return None
    return {key: config[key] for key in INITIAL_KEYS}


def initial(initial_cluster, state, token):
    """The INITIAL_KEYS values."""
    return {
        "initial-cluster": initial_cluster,
        "initial-cluster-state": state,
        "initial-cluster-token": token,
    }


def joining_initial_cluster(members, member_name, peer_url):
    """
    ``initial-cluster`` for a member joining a running cluster: the real membership
    (``members`` as the client lists them), this member named ``member_name``.
    ValueError when this member (``peer_url``) is not in it, or another member never
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
        parts.extend("{}={}".format(name, peer) for peer in member["peer_urls"])
    if not found:
        raise ValueError(
            "the running cluster has no member with peer URL {}: add it first, then apply "
            "again".format(peer_url)
        )
    return ",".join(parts)


def member_config(settings, initial_values, etcd_version=None):
    """
    The content of the member's etcd config file (etcd's YAML keys, in a stable order):
    ``settings`` as ``member_settings`` gives them, ``initial_values`` the INITIAL_KEYS values.
    """
    paths = settings["paths"]
    address = settings["address"]
    config = {
        "name": settings["member_name"],
        "data-dir": settings["data_dir"],
        "listen-peer-urls": settings["peer_url"],
        "listen-client-urls": "{},{}".format(
            settings["client_url"], url("127.0.0.1", settings["client_port"])
        ),
        # loopback only unless the pillar says a prometheus elsewhere scrapes it
        "listen-metrics-urls": ",".join(
            ([url(address, settings["metrics_port"], "http")]
             if settings.get("metrics_on_address") else [])
            + [url("127.0.0.1", settings["metrics_port"], "http")]),
        "advertise-client-urls": settings["client_url"],
        "initial-advertise-peer-urls": settings["peer_url"],
    }
    config.update((key, initial_values[key]) for key in INITIAL_KEYS)
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
                # peers apart from clients: the peers' own CA, so that no client
                # certificate is accepted here (etcd 3.4 reads no allowed-cn from a config file)
                "trusted-ca-file": paths["peer_ca_file"],
                "client-cert-auth": True,
                "auto-tls": False,
            },
            "cipher-suites": list(CIPHER_SUITES),
            # the histograms of request latency (the etcdGRPCRequestsSlow alert reads them)
            "metrics": "extensive",
            # off by default when etcd reads a config file (3.4): the formula's client speaks it
            "enable-grpc-gateway": True,
            "logger": "zap",
            "log-outputs": ["stderr"],
        }
    )
    version = version_tuple(etcd_version)
    if settings.get("enable_v2") and (version is None or version < (3, 6)):
        config["enable-v2"] = True
    parts = version_parts(etcd_version)
    if parts is not None and parts >= TLS_MIN_VERSION_SINCE:
        config["tls-min-version"] = "TLS1.2"
    return config


def config_text(config):
    """The config file's text for ``config`` (``member_config``'s)."""
    return HEADER + yaml.safe_dump(config, default_flow_style=False, sort_keys=False)


def identity_changes(current, wanted):
    """
    The IDENTITY_KEYS whose value differs between the ``current`` config file's settings and
    the ``wanted`` ones: {key: (old, new)}. Empty when the file is absent or unreadable.
    """
    if not isinstance(current, dict) or not current:
        return {}
    return {
        key: (current.get(key), wanted.get(key))
        for key in IDENTITY_KEYS
        if key in current and current.get(key) != wanted.get(key)
    }


def identity_refusal(member_name, changes):
    """The message refusing ``changes`` (identity_changes) of a member that holds data."""
    what = "; ".join(
        "{} {} -> {} (pillar {})".format(key, old, new, IDENTITY_KEYS[key])
        for key, (old, new) in sorted(changes.items())
    )
    return (
        "member {} holds data, and the pillar changes what it is to the cluster or where its "
        "data lives: {}. A restart would start it on an empty data dir or with peer URLs the "
        "others do not know, so nothing was changed. To apply it, replace the member, one at "
        "a time: salt-run state.orchestrate etcd.remove_member pillar='{{\"etcd_member\": "
        "\"<its minion>\"}}', then etcd.add_member the same way (its data comes back from the "
        "others); or revert the pillar".format(member_name, what)
    )


def env_file(endpoints, paths):
    """The etcdctl environment of root on a member (``/etc/profile.d/etcdctl.sh``): the
    voting members' client URLs (a learner serves no client request), the member's client
    certificate, and the ``e`` / ``em`` aliases of Pigsty's SOP. Written by highstate
    (``etcd_config.env_managed``) and by the runner's endpoint refresh
    (``etcd_cluster.write_env``), the same text."""
    return "\n".join([
        "# Managed by Salt (etcd formula, etcd/env.sls): etcdctl for root on this member.",
        "# The endpoints are the cluster's voting members (a learner serves no client request).",
        "export ETCDCTL_API=3",
        "export ETCDCTL_ENDPOINTS={}".format(",".join(endpoints)),
        "export ETCDCTL_CACERT={}".format(paths["ca_file"]),
        "export ETCDCTL_CERT={}".format(paths["client_cert_file"]),
        "export ETCDCTL_KEY={}".format(paths["client_key_file"]),
        "# root's etcd user (authentication on): from a file only root can read",
        "if [ -r {0} ]; then ETCDCTL_USER=$(cat {0}); export ETCDCTL_USER; fi".format(
            paths["root_credentials_file"]),
        'alias e="etcdctl"',
        'alias em="etcdctl member"',
        "",
    ])

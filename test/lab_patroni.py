"""
A real patroni (with PostgreSQL) on a lab host that is no etcd member, as the integration
tests that need a DCS client start it: its base config (the DCS section is the formula's,
etcd.clients.patroni writes it), its REST API, and waits.
"""

import time

import requests
import yaml
from lab_cli import lab
from lab_pillar import ip

PATRONI_CONFIG = "/etc/patroni/config.yml"


def http():
    """A session that ignores proxy and CA variables of the environment: lab addresses only."""
    session = requests.Session()
    session.trust_env = False
    return session


def base_config(host, scope, pg_bin, password="lab-only"):
    """What the test's DBA writes: a single-node patroni; the DCS section is the formula's.
    ``password``: PostgreSQL's superuser and replication passwords."""
    return {
        "scope": scope, "namespace": "/service/", "name": host,
        "restapi": {"listen": ip(host) + ":8008", "connect_address": ip(host) + ":8008"},
        "bootstrap": {"dcs": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
                      "initdb": ["encoding=UTF8"]},
        "postgresql": {
            "listen": "127.0.0.1:5432", "connect_address": ip(host) + ":5432",
            "data_dir": "/var/lib/postgresql/patroni", "bin_dir": pg_bin,
            "pgpass": "/var/lib/postgresql/.pgpass-patroni",
            "authentication": {"superuser": {"username": "postgres", "password": password},
                               "replication": {"username": "replicator",
                                               "password": password}},
            "parameters": {"unix_socket_directories": "/var/run/postgresql"},
        },
    }


def write_base_config(host, scope, password="lab-only"):
    """The DBA's config on ``host``, through stdin (its passwords in no process's argv)."""
    pg_bin = "/usr/lib/postgresql/{}/bin".format(
        lab("exec", host, "--", "ls", "/usr/lib/postgresql").stdout.split()[-1])
    text = yaml.safe_dump(base_config(host, scope, pg_bin, password), default_flow_style=False)
    res = lab("exec", host, "--", "sh", "-c", "mkdir -p /etc/patroni && umask 077 && cat > " +
              PATRONI_CONFIG, input=text)
    assert res.returncode == 0, res.stderr


def api(host, path=""):
    """Patroni's REST API on ``host``: (HTTP status, JSON body)."""
    res = http().get("http://{}:8008/{}".format(ip(host), path), timeout=5)
    return res.status_code, res.json()


def wait_for(what, check, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError("{}: not within {} s (last: {!r})".format(what, timeout, last))
        time.sleep(1)


def leads(host):
    """Whether patroni on ``host`` runs as the primary of its scope."""
    status, body = api(host)
    return status == 200 and body.get("role") in ("master", "primary") and \
        body.get("state") == "running"

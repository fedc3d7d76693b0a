"""
The trust model on the lab (docs/pillar.md, "Who holds which certificate"), on 3 members and 12
patroni client minions applied at once from nothing (issue 14's scale: no master worker waits
on the CA server, so nothing waits on a Salt timeout), then each refusal an operator relies on:

- peer trust is not client trust: a client certificate opens no peer port, a peer one no
  client port;
- the CA server signs what the pillar gives the requesting minion, whatever it asks: a
  non-member gets no peer certificate, a minion asking for another's identity gets its own;
- only AEAD ciphers; metrics on loopback unless the pillar says otherwise;
- a change of key_algo makes new keys and certificates and leaves the CAs byte-identical;
- no private key in the master's job cache, and none in any process's argv.

Needs a lab of 16 hosts (the 16th: a member added and removed with authentication on) with
this module's pillar (the module fixture brings the session's lab
up again that way).
"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import yaml
from lab_cli import ADMIN_TLS, LAB, lab, last_json, orchestrate, salt
from lab_patroni import PATRONI_CONFIG, api, wait_for, write_base_config
from lab_pillar import CA_DIR, ip, write_base, write_etcd
from writer import Writer, formula_client

PILLAR_DIR = os.environ.get("ETCD_TRUST_PILLAR_DIR", "/tmp/etcd-formula-trust-pillar")
MEMBERS = ["h1", "h2", "h3"]
CLIENTS = ["h{}".format(n) for n in range(4, 16)]
SPARE = "h16"  # neither member nor client: added, then removed, with authentication on
MASTER_LOG = "/run/etcd-formula-lab/master/var/log/salt/master"
JOB_CACHE = "/run/etcd-formula-lab/master/var/cache/salt/master/jobs"
PATRONI_CERT = "/etc/patroni/etcd/client.crt"
PATRONI_KEY = "/etc/patroni/etcd/client.key"


# secrets made for this run only: the tests look for them where they must never be
ROOT_PASSWORD = "lab-root-" + secrets.token_hex(8)
PATRONI_PASSWORDS = ["lab-patroni-" + secrets.token_hex(8) for _ in range(2)]
POSTGRES_PASSWORD = "lab-postgres-" + secrets.token_hex(8)  # in patroni's config, from its DBA
SCOPE = "pg-auth"
PATRONI_HOST = CLIENTS[0]
LEADER_KEY = "/service/{}/leader".format(SCOPE)
# what the pillar says now (the RBAC tests change it as they go): patroni has no etcd user
# until authentication is turned on, as under the formula's first version
CURRENT = {"auth": False, "patroni_password": None, "members": MEMBERS}


def write_pillar(extra=()):
    write_base(PILLAR_DIR)
    password = ["    password: " + CURRENT["patroni_password"]] if CURRENT["patroni_password"] else []
    write_etcd(PILLAR_DIR, CURRENT["members"], [
        "auth: {}".format("true" if CURRENT["auth"] else "false"),
        "root_password: " + ROOT_PASSWORD,
        "clients:", "  patroni:", "    target: [{}]".format(", ".join(CLIENTS)),
        "    scope: " + SCOPE] + password + list(extra))


class ArgvWatch(threading.Thread):
    """Every process's argv on this machine, read 5 times a second for the whole module: the
    lab hosts' processes are in it (their PID namespaces are this one's children), so a
    secret or a private key handed to a short-lived command is seen, not only what still
    runs when a test looks. ``secrets`` is read anew each round (passwords made later)."""

    def __init__(self, secrets):
        super().__init__(daemon=True)
        self.secrets, self.found, self.rounds = secrets, [], 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.wait(0.2):
            wanted = [s for s in self.secrets() if s] + ["PRIVATE KEY"]
            for pid in os.listdir("/proc"):
                try:
                    with open("/proc/{}/cmdline".format(pid), "rb") as handle:
                        argv = handle.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue  # not a process, or one that just ended
                self.found += [(pid, argv[:300]) for s in wanted if s in argv]
            self.rounds += 1


@pytest.fixture(scope="module")
def argv_watch():
    watch = ArgvWatch(lambda: [ROOT_PASSWORD, POSTGRES_PASSWORD] + PATRONI_PASSWORDS + GENERATED)
    watch.start()
    yield watch
    watch.stopping.set()
    watch.join()


def failures(ret, expected):
    if not isinstance(ret, dict) or sorted(ret) != sorted(expected):
        return ["answers from {} instead of {}".format(
            sorted(ret) if isinstance(ret, dict) else ret, sorted(expected))]
    return ["{}: {}: {}".format(m, sid, s.get("comment")) for m, states in ret.items()
            for sid, s in (states.items() if isinstance(states, dict)
                           else [("-", {"result": False, "comment": states})])
            if not s.get("result")]


def on(host, *cmd):
    return lab("exec", host, "--", *cmd)


def curl(host, url, *tls):
    """curl's exit code from ``host`` (0: the TLS handshake and request went through)."""
    return on(host, "curl", "--http1.1", "-s", "-o", "/dev/null", "--max-time", "5", *tls,
              url).returncode


def served_cert(host, port):
    out = on("h1", "sh", "-c", "openssl s_client -connect {}:{} </dev/null 2>/dev/null | "
             "openssl x509 -noout -fingerprint -sha256".format(ip(host), port))
    return out.stdout.strip()


def fingerprint(host, path):
    return on(host, "openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
              path).stdout.strip()


def highstate(hosts):
    """state.apply on ``hosts`` in the background: the Popen (its stdout: salt's JSON)."""
    return subprocess.Popen([os.path.join(os.path.dirname(os.path.dirname(__file__)), "lab"),
                             "salt", "--out=json", "--static", "-L", ",".join(hosts),
                             "state.apply", "-t", "900"], stdout=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def built(lab, argv_watch):
    """15 fresh hosts: the CA, then the 3 members (highstate) and the 12 patroni clients
    (etcd.client) applied at the same time, h1's highstate ahead of the others' by the time
    its etcd takes to start (it waits for its peers then): members applied one after another
    make one cluster (the race the CI run of 0e23462 lost: a member that found the first
    one's bootstrap under way joined it as "existing", which etcd refuses until a quorum
    elected a leader, and the quorum needed it)."""
    write_pillar()
    lab.relaunch(hosts=16, pillar=PILLAR_DIR)
    assert lab.run("sync").returncode == 0
    salt("*", "saltutil.refresh_pillar", "wait=True")
    ret = salt("master", "state.apply", "etcd.ca,etcd.admin")
    assert failures(ret, ["master"]) == []
    before = len(open(MASTER_LOG, errors="replace").read())
    first = highstate(MEMBERS[:1])
    deadline = time.monotonic() + 300
    while on(MEMBERS[0], "sh", "-c", "ss -Hltn 'sport = :2380' | grep -q .").returncode != 0:
        assert first.poll() is None, "h1's highstate ended before its etcd listened: {}".format(
            first.communicate()[0][-3000:])
        assert time.monotonic() < deadline, "h1's etcd did not listen on its peer port in 300 s"
        time.sleep(0.5)
    others = highstate(MEMBERS[1:])
    clients = salt("-L", ",".join(CLIENTS), "state.apply", "etcd.client", "-t", "900")
    members_ret = json.loads(first.communicate(timeout=900)[0])
    members_ret.update(json.loads(others.communicate(timeout=900)[0]))
    log = open(MASTER_LOG, errors="replace").read()[before:]
    timeouts = [line for line in log.splitlines() if "Request timed out" in line]
    return {"members": members_ret, "clients": clients, "timeouts": timeouts, "log": log}


# -- many minions at once --------------------------------------------------------------------------


def test_members_and_clients_applied_at_once_all_get_their_certificates(built):
    assert failures(built["members"], MEMBERS) == []
    assert failures(built["clients"], CLIENTS) == []
    for host in CLIENTS:
        out = on(host, "openssl", "verify", "-CAfile", "/etc/patroni/etcd/ca.crt", PATRONI_CERT)
        assert out.returncode == 0, (host, out.stdout, out.stderr)
        san = on(host, "openssl", "x509", "-noout", "-ext", "subjectAltName", "-subject",
                 "-in", PATRONI_CERT).stdout
        assert "URI:urn:etcd-formula:patroni:etcd:{}".format(host) in san
        assert "CN" not in san.split("subject=", 1)[1]
        mode = on(host, "stat", "-c", "%a %U", PATRONI_KEY).stdout.split()
        assert mode == ["600", "postgres"]


def test_members_applied_one_after_another_bootstrap_one_cluster(built):
    derived = {h: next(s["comment"] for s in built["members"][h].values()
                       if s["__id__"] == "etcd-config-file-managed") for h in MEMBERS}
    assert "initial-cluster-state new (every other member answered" in derived["h1"], derived
    # h1's etcd was up, bootstrapping, when h2 and h3 decided. The first of them to decide
    # found no leader (h1 alone has no quorum) and started as h1 did; the second may have
    # decided after those two elected a leader, and then joined the registered cluster (the
    # CI run of 9992117 saw h3 new, then h2 existing): both are one cluster
    joined = {h: re.search(r"initial-cluster-state (new \(an initial member|existing \(a "
                           r"registered member) of cluster (\w+)", derived[h]) for h in MEMBERS[1:]}
    assert all(joined.values()), derived
    assert "new (an initial member" in {m.group(1) for m in joined.values()}, derived
    assert len({m.group(2) for m in joined.values()}) == 1, derived
    with formula_client(["https://{}:2379".format(ip(h)) for h in MEMBERS], ADMIN_TLS) as c:
        statuses = [c.status("https://{}:2379".format(ip(h))) for h in MEMBERS]
        assert len({st["cluster_id"] for st in statuses}) == 1, statuses
        assert sorted(m["name"] for m in c.members() if not m["is_learner"]) == [
            "etcd-1", "etcd-2", "etcd-3"]


def test_nothing_waited_on_a_salt_timeout(built):
    # the lab's Salt timeout is 30 s: a signing that held a master worker shows as a 30 s wait
    assert built["timeouts"] == [], built["log"][-6000:]
    slow = {(m, sid): s["duration"] for m, states in list(built["members"].items())
            + list(built["clients"].items()) for sid, s in states.items()
            if s.get("duration", 0) >= 30000}
    assert slow == {}


def test_a_client_certificate_reads_etcd_on_the_client_port(built):
    assert curl(CLIENTS[0], "https://{}:2379/health".format(ip("h1")), "--cacert",
                "/etc/patroni/etcd/ca.crt", "--cert", PATRONI_CERT, "--key", PATRONI_KEY) == 0


def test_every_certificate_the_ca_issued_is_listed_with_its_days_left(built):
    res = lab("salt-run", "--out=json", "etcd.certificates", "table=False")
    ret = last_json(res.stdout)
    assert res.returncode == 0 and ret.get("result") is True, res.stdout[-2000:]
    holders = {(row[0], row[1]) for row in ret["certificates"]}
    assert {(m, u) for m in MEMBERS for u in ("peer", "server", "client")} <= holders
    assert {(c, "patroni") for c in CLIENTS} <= holders and ("master", "admin") in holders
    assert all(row[3] > 800 for row in ret["certificates"])  # days_valid 825, all fresh
    text = lab("salt-run", "etcd.certificates").stdout
    assert "DAYS LEFT" in text and "urn:etcd-formula:patroni:etcd:" + CLIENTS[0] in text


# -- peer trust is not client trust ---------------------------------------------------------------


def test_no_client_certificate_opens_a_peer_port(built):
    peer = "https://{}:2380/members".format(ip("h2"))
    ca = ("--cacert", "/etc/etcd/pki/peer-ca.crt")
    # the members' own peer certificate is let in (the check is not refusing everything)
    for tls in ((), ("--tls-max", "1.2")):
        assert curl("h1", peer, *ca, "--cert", "/etc/etcd/pki/peer.crt",
                    "--key", "/etc/etcd/pki/peer.key", *tls) == 0, tls
    for cert, key in (("client.crt", "client.key"), ("server.crt", "server.key")):
        assert curl("h1", peer, *ca, "--cert", "/etc/etcd/pki/" + cert,
                    "--key", "/etc/etcd/pki/" + key) != 0, cert
    patroni = ("--cacert", "/etc/patroni/etcd/ca.crt", "-k", "--cert", PATRONI_CERT,
               "--key", PATRONI_KEY)
    # the patroni host reaches the peer port; its certificate is refused in the TLS
    # handshake: under TLS 1.2 inside the handshake itself (curl: 35); under TLS 1.3 the
    # server checks the client's certificate after the client has finished its side, so
    # curl sees the server's alert on its first send (55) or read (56)
    assert on(CLIENTS[0], "bash", "-c", "</dev/tcp/{}/2380".format(ip("h2"))).returncode == 0
    assert curl(CLIENTS[0], peer, *patroni, "--tls-max", "1.2") == 35
    assert curl(CLIENTS[0], peer, *patroni) in (35, 55, 56)


def test_no_peer_certificate_opens_a_client_port(built):
    url = "https://{}:2379/health".format(ip("h2"))
    assert curl("h1", url, "--cacert", "/etc/etcd/pki/ca.crt", "--cert",
                "/etc/etcd/pki/client.crt", "--key", "/etc/etcd/pki/client.key") == 0
    assert curl("h1", url, "--cacert", "/etc/etcd/pki/ca.crt", "--cert",
                "/etc/etcd/pki/peer.crt", "--key", "/etc/etcd/pki/peer.key") != 0


# -- the CA signs what the pillar gives the requester ----------------------------------------------


def csr(host, cn):
    """A CSR made on ``host`` asking for CN ``cn`` and a SAN of h1's (the key stays there)."""
    out = on(host, "sh", "-c", "umask 077; openssl req -new -newkey ec -pkeyopt "
             "ec_paramgen_curve:P-256 -nodes -keyout /tmp/attack.key -subj /CN={0} "
             "-addext subjectAltName=IP:{1},DNS:h1 2>/dev/null".format(cn, ip("h1")))
    assert out.returncode == 0, out.stderr
    return out.stdout


SALT_CALL = "/opt/etcd-formula/venv/bin/salt-call"


def ask(host, usage, request_pem, request_id):
    """What the CA server answers ``host`` asking for ``usage`` with the event members use
    (as a minion's owner could send it by hand)."""
    request = json.dumps({"ca_server": "master", "request_id": request_id,
                          "requests": [{"usage": usage, "csr": request_pem}]})
    out = on(host, SALT_CALL, "--out=json", "event.fire_master", request, "etcd/cert/request")
    assert out.returncode == 0 and json.loads(out.stdout)["local"] is True, out.stdout
    for _ in range(120):
        out = on(host, SALT_CALL, "--out=json", "mine.get", "master", "etcd_issued_" + host)
        answer = (json.loads(out.stdout)["local"] or {}).get("master") or {}
        if answer.get("request_id") == request_id:
            return answer
        time.sleep(0.5)
    raise AssertionError("the CA server did not answer {}'s request {}".format(host, request_id))


def test_a_non_member_asking_for_a_peer_certificate_is_refused(built):
    answer = ask(CLIENTS[0], "peer", csr(CLIENTS[0], "etcd-peer"), "attack-peer")
    assert answer["certificates"] == {}
    assert CLIENTS[0] in answer["refused"]["peer"] and "member" in answer["refused"]["peer"]


def test_a_request_carrying_another_members_identity_gets_the_requesters_own(built):
    answer = ask("h2", "client", csr("h2", "root"), "attack-client")
    assert set(answer["certificates"]) == {"client"}
    out = on("h2", "sh", "-c", "printf '%s' \"$0\" | openssl x509 -noout -subject -ext "
             "subjectAltName", answer["certificates"]["client"])
    assert "urn:etcd-formula:member:etcd:h2" in out.stdout
    assert "root" not in out.stdout and ip("h1") not in out.stdout and "DNS:h1" not in out.stdout


# -- TLS and the metrics port ------------------------------------------------------------------------


def test_cbc_ciphers_are_refused_and_aead_ones_accepted(built):
    # with the member's client certificate: the port refuses a handshake without one anyway
    base = ("openssl s_client -connect {}:2379 -tls1_2 -cipher {} -cert /etc/etcd/pki/client.crt "
            "-key /etc/etcd/pki/client.key -CAfile /etc/etcd/pki/ca.crt </dev/null >/dev/null 2>&1")
    assert on("h1", "sh", "-c", base.format(ip("h2"), "ECDHE-ECDSA-AES128-GCM-SHA256")).returncode == 0
    assert on("h1", "sh", "-c", base.format(ip("h2"), "ECDHE-ECDSA-AES128-SHA")).returncode != 0
    # the peer port too, with the member's peer certificate
    peer = base.replace(":2379", ":2380").replace("client.", "peer.").replace("/ca.crt", "/peer-ca.crt")
    assert on("h1", "sh", "-c", peer.format(ip("h2"), "ECDHE-ECDSA-AES128-GCM-SHA256")).returncode == 0
    assert on("h1", "sh", "-c", peer.format(ip("h2"), "ECDHE-ECDSA-AES256-SHA")).returncode != 0


def test_metrics_listen_on_loopback_only_by_default(built):
    assert on("h2", "curl", "-s", "--max-time", "3", "http://127.0.0.1:2381/health").returncode == 0
    assert curl("h1", "http://{}:2381/health".format(ip("h2"))) != 0


# -- no secret leaks ---------------------------------------------------------------------------------


def files_containing(paths, text):
    """The files under ``paths`` that contain ``text``, read here: a grep would put ``text``
    in its own argv, where the argv watch would rightly find it."""
    found, needle = [], text.encode()
    for top in paths:
        walked = ([(os.path.dirname(top), [], [os.path.basename(top)])] if os.path.isfile(top)
                  else os.walk(top))
        for directory, _, names in walked:
            for name in names:
                path = os.path.join(directory, name)
                with open(path, "rb") as handle:
                    if needle in handle.read():
                        found.append(path)
    return found


def test_no_private_key_in_the_job_cache_or_in_any_argv(built):
    assert os.path.isdir(JOB_CACHE) and os.listdir(JOB_CACHE)  # the returns are there
    assert files_containing([JOB_CACHE], "PRIVATE KEY") == []
    for host in MEMBERS + CLIENTS[:2]:
        # the pattern is written so that grep's own argv does not match it
        out = on(host, "sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | "
                 "grep -c 'PRIVATE[ ]KEY' || true")
        assert out.stdout.strip() == "0", host


# -- key changes and a signer that fails --------------------------------------------------------------


def test_a_key_algo_change_renews_keys_and_certificates_and_never_the_cas(built):
    cas = {name: open(os.path.join(CA_DIR, name), "rb").read()
           for name in ("ca.key", "ca.crt", "peer-ca.key", "peer-ca.crt")}
    before = fingerprint(CLIENTS[0], PATRONI_CERT)
    write_pillar()
    with open(os.path.join(PILLAR_DIR, "etcd.sls")) as handle:
        text = handle.read()
    with open(os.path.join(PILLAR_DIR, "etcd.sls"), "w") as handle:
        handle.write(text.replace("  pki:\n", "  pki:\n    key_algo: rsa\n    key_size: 2048\n", 1))
    try:
        salt("*", "saltutil.refresh_pillar", "wait=True")
        ret = salt("master", "state.apply", "etcd.ca,etcd.admin")
        assert failures(ret, ["master"]) == []
        ret = salt(CLIENTS[0], "state.apply", "etcd.client")
        assert failures(ret, [CLIENTS[0]]) == []
        assert fingerprint(CLIENTS[0], PATRONI_CERT) != before
        text = on(CLIENTS[0], "openssl", "pkey", "-in", PATRONI_KEY, "-noout", "-text").stdout
        assert "2048 bit" in text
        assert {name: open(os.path.join(CA_DIR, name), "rb").read() for name in cas} == cas
    finally:
        write_pillar()
        salt("*", "saltutil.refresh_pillar", "wait=True")


def test_a_signer_that_fails_leaves_the_old_pair_in_place(built):
    host = CLIENTS[1]
    on(host, "rm", "-f", PATRONI_CERT)  # a certificate to issue again, with a new key
    on(host, "cp", "-p", PATRONI_KEY, "/root/kept.key")
    ca_key = os.path.join(CA_DIR, "ca.key")
    os.rename(ca_key, ca_key + ".away")  # the CA server cannot sign
    try:
        ret = salt(host, "state.apply", "etcd.client")
    finally:
        os.rename(ca_key + ".away", ca_key)
    (comment,) = [s["comment"] for sid, s in ret[host].items()
                  if "etcd-client-certificates-managed" in sid]
    assert "refused" in comment and "ca.key" in comment, comment
    assert on(host, "cmp", PATRONI_KEY, "/root/kept.key").returncode == 0
    assert on(host, "test", "-e", PATRONI_CERT).returncode != 0
    ret = salt(host, "state.apply", "etcd.client")
    assert failures(ret, [host]) == []
    # the key is of the wanted kind: kept, and a certificate for it issued
    assert on(host, "cmp", PATRONI_KEY, "/root/kept.key").returncode == 0
    assert on(host, "openssl", "verify", "-CAfile", "/etc/patroni/etcd/ca.crt",
              PATRONI_CERT).returncode == 0
    pub = [on(host, "sh", "-c", cmd).stdout for cmd in (
        "openssl x509 -noout -pubkey -in " + PATRONI_CERT, "openssl pkey -pubout -in " + PATRONI_KEY)]
    assert pub[0] == pub[1] and "PUBLIC KEY" in pub[0]


# -- etcd RBAC: a user per client, authentication on a running cluster ----------------------------


def endpoints():
    return ["https://{}:2379".format(ip(h)) for h in MEMBERS]


def as_user(user, password):
    return formula_client(endpoints(), ADMIN_TLS, timeout=5, credentials=(user, password))


def patroni_dcs():
    """The etcd3 section of patroni's config on its host."""
    config = yaml.safe_load(on(PATRONI_HOST, "cat", PATRONI_CONFIG).stdout)
    return config.get("etcd3") or config.get("etcd")


def leader_key_version():
    """(holder, create revision) of patroni's leader key, read as the formula's admin."""
    credentials = ("root", ROOT_PASSWORD) if CURRENT["auth"] else None
    with formula_client(endpoints(), ADMIN_TLS, timeout=5, credentials=credentials) as c:
        kv = c.get_versioned(LEADER_KEY)
    return kv["value"], kv["create_revision"]


def patroni_state():
    status, body = api(PATRONI_HOST)
    return status, body.get("role"), body.get("state"), body.get("timeline")


@pytest.fixture(scope="module")
def patroni(built):
    """A real patroni (scope pg-auth) on the first client host, leading its one-node
    cluster, with no etcd user in its DCS section (a cluster made before the formula had
    RBAC): turning authentication on must give it one first."""
    write_base_config(PATRONI_HOST, SCOPE, POSTGRES_PASSWORD)
    ret = salt(PATRONI_HOST, "state.apply", "etcd.clients.patroni")
    assert failures(ret, [PATRONI_HOST]) == []
    assert "username" not in patroni_dcs(), patroni_dcs()
    assert on(PATRONI_HOST, "systemctl", "start", "patroni").returncode == 0
    # 200 too: just after its bootstrap patroni says "master, running" a moment before its
    # API answers 200 for the leader (the HA loop has not yet seen its own leader key)
    wait_for("patroni leads " + SCOPE, lambda: patroni_state()[:3] in (
        (200, "master", "running"), (200, "primary", "running")), 120)
    return patroni_state()


def salt_run_auth():
    res = lab("salt-run", "--out=json", "etcd.auth")
    ret = last_json(res.stdout)
    assert res.returncode == 0 and ret.get("result") is True, res.stdout[-3000:]
    return ret


def apply_auth_under_a_writer():
    """salt-run etcd.auth beside a writer that logs in as root: (its return, the writer's
    report, when it ended)."""
    write_pillar()
    salt("*", "saltutil.refresh_pillar", "wait=True")
    with Writer(endpoints(), ADMIN_TLS, credentials=("root", ROOT_PASSWORD)) as writer:
        ret = salt_run_auth()
        ended = time.time()
        time.sleep(1)
    report = writer.report()
    print("etcd.auth under a writer: {}".format(report))
    return ret, report, ended


def test_roots_etcdctl_works_on_the_members_with_authentication_off(patroni):
    out = on("h1", "bash", "-lic", "e put a 10 && e get a && e del a")
    assert out.returncode == 0 and "10" in out.stdout, out.stdout + out.stderr
    assert on("h1", "stat", "-c", "%a %U", "/etc/etcd/root.credentials").stdout.split() == ["600", "root"]


def test_enabling_authentication_on_a_running_cluster_costs_patroni_nothing(patroni):
    leader_before = leader_key_version()
    CURRENT["auth"], CURRENT["patroni_password"] = True, PATRONI_PASSWORDS[0]
    ret, report, ended = apply_auth_under_a_writer()
    assert ret["enabled"] is True
    # patroni was given its user (and reloaded) before authentication went on
    given = ret["done"].index("patroni on {}: credentials given".format(",".join(CLIENTS)))
    assert given < ret["done"].index("authentication enabled"), ret["done"]
    assert {"user root added", "user patroni-pg-auth added"} <= set(ret["done"])
    assert patroni_dcs()["username"] == "patroni-pg-auth"
    assert report["failed"] == 0, report["first_failures"]
    # patroni went on as primary of the same timeline (a failover bumps it), and reached
    # etcd after authentication was on, with its own user
    wait_for("patroni reaches etcd with authentication on",
             lambda: api(PATRONI_HOST)[1].get("dcs_last_seen", 0) > ended, 60)
    assert patroni_state() == patroni
    # the leader key was never lost: the same holder, never deleted and made again
    assert leader_key_version() == leader_before == (PATRONI_HOST, leader_before[1])
    with as_user("root", ROOT_PASSWORD) as root:
        assert root.auth_enabled() is True


def test_patronis_user_may_use_its_own_prefix_only(patroni):
    with as_user("patroni-pg-auth", CURRENT["patroni_password"]) as user:
        import etcd_errors  # the formula's, on the path formula_client put it on

        assert user.get(LEADER_KEY) == PATRONI_HOST
        user.put("/service/{}/probe".format(SCOPE), "1")
        with pytest.raises(etcd_errors.EtcdPermissionDenied):
            user.put("/service/pg-other/leader", "taken")
        with pytest.raises(etcd_errors.EtcdPermissionDenied):
            user._post("kv/deleterange", {"key": "AA==", "range_end": "AA=="})  # everything
        with pytest.raises(etcd_errors.EtcdPermissionDenied):
            user.member_remove(user.members()[0]["id"])
        with pytest.raises(etcd_errors.EtcdPermissionDenied):
            user.auth_disable()
    with as_user("root", ROOT_PASSWORD) as root:
        assert root.get(LEADER_KEY) == PATRONI_HOST and len(root.members()) == 3


def test_a_members_certificate_without_the_password_cannot_delete(patroni):
    bare = ("etcdctl --endpoints=https://{}:2379 --cacert=/etc/etcd/pki/ca.crt "
            "--cert=/etc/etcd/pki/client.crt --key=/etc/etcd/pki/client.key del {}").format(
                ip("h1"), LEADER_KEY)
    out = on("h1", "env", "-u", "ETCDCTL_USER", "sh", "-c", bare)
    assert out.returncode != 0, out.stdout
    # root's etcdctl (its credentials file) still does what the seeds' habits expect
    out = on("h1", "bash", "-lic", "e put a 10 && e get a && e del a && em list")
    assert out.returncode == 0 and "10" in out.stdout, out.stdout + out.stderr
    with as_user("root", ROOT_PASSWORD) as root:
        assert root.get(LEADER_KEY) == PATRONI_HOST


def test_a_password_change_in_pillar_rotates_it_in_etcd_and_in_patroni(patroni):
    old, CURRENT["patroni_password"] = CURRENT["patroni_password"], PATRONI_PASSWORDS[1]
    ret, report, ended = apply_auth_under_a_writer()
    assert "user patroni-pg-auth: password changed" in ret["done"]
    assert report["failed"] == 0, report["first_failures"]
    with as_user("root", ROOT_PASSWORD) as root:
        assert root.password_works("patroni-pg-auth", PATRONI_PASSWORDS[1]) is True
        assert root.password_works("patroni-pg-auth", old) is False
    # patroni was reloaded onto the new password: it reaches etcd after the change, same leader
    wait_for("patroni reaches etcd with its new password",
             lambda: api(PATRONI_HOST)[1].get("dcs_last_seen", 0) > ended + 11, 60)
    assert patroni_state() == patroni
    # nothing left to do: a second run changes no user and no role
    again = salt_run_auth()
    assert [line for line in again["done"] if "credentials given" not in line] == []


GENERATED = []  # passwords the formula made (salt-run etcd.credentials): looked for below


def etcdctl_with(env_file, *args):
    """etcdctl on this machine with the env file of salt-run etcd.credentials."""
    return subprocess.run(["sh", "-c", '. "$0" && etcdctl "$@"', env_file, *args],
                          capture_output=True, text=True, timeout=30)


def test_credentials_for_a_client_outside_salt_open_their_prefix_only(patroni):
    res = lab("salt-run", "--out=json", "etcd.credentials", "name=app", "prefix=/app/")
    ret = last_json(res.stdout)
    assert res.returncode == 0 and ret.get("result") is True, res.stdout[-2000:]
    where = ret["directory"]
    assert oct(os.stat(where).st_mode & 0o777) == "0o700"
    for entry in ("ca.crt", "client.crt", "client.key", "etcdctl.env"):
        assert oct(os.stat(os.path.join(where, entry)).st_mode & 0o777) == "0o600", entry
    env = os.path.join(where, "etcdctl.env")
    GENERATED.append(open(env).read().split("ETCDCTL_USER='ext-app:", 1)[1].split("'")[0])
    assert etcdctl_with(env, "put", "/app/x", "1").returncode == 0
    assert etcdctl_with(env, "get", "/app/x", "--print-value-only").stdout.strip() == "1"
    denied = etcdctl_with(env, "put", LEADER_KEY, "taken")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    kept = tempfile.mkdtemp(prefix="etcd-revoked-")  # what a client that had them still has
    for entry in ("ca.crt", "client.crt", "client.key"):
        shutil.copy(os.path.join(where, entry), kept)
    with open(os.path.join(kept, "etcdctl.env"), "w") as handle:
        handle.write(open(env).read().replace(where, kept))
    res = lab("salt-run", "--out=json", "etcd.revoke_credentials", "name=app")
    ret = last_json(res.stdout)
    assert res.returncode == 0 and "user ext-app deleted" in ret["done"], res.stdout[-2000:]
    assert not os.path.exists(where)
    try:
        refused = etcdctl_with(os.path.join(kept, "etcdctl.env"), "put", "/app/y", "2")
        assert refused.returncode != 0 and "authentication failed" in refused.stderr, refused.stderr
    finally:
        shutil.rmtree(kept)
    with as_user("root", ROOT_PASSWORD) as root:
        assert "ext-app" not in root.users() and root.get(LEADER_KEY) == PATRONI_HOST
        assert root.get("/app/y") is None


# -- CA rotation: both CAs replaced while the cluster and patroni serve ------------------------------

OLD = "/root/old-ca"  # on h1: what a holder of the old CA's certificates still has


def rotate(*args):
    res = lab("salt-run", "--out=json", "etcd.rotate_ca", *args)
    ret = last_json(res.stdout)
    assert res.returncode == 0 and ret.get("result") is True, res.stdout[-3000:]
    return ret


def phase():
    return salt("master", "etcd_ca.rotation")["master"]["phase"]


def kill_rotation_at(marker):
    """Start ``salt-run etcd.rotate_ca`` and SIGKILL it (the salt-run process this test
    started, by its PID) once it printed ``marker``: the lines it printed."""
    wrapper = subprocess.Popen([LAB, "salt-run", "etcd.rotate_ca"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in wrapper.stdout:
            seen.append(line.rstrip())
            if marker in line:
                children = subprocess.run(["pgrep", "-P", str(wrapper.pid)], capture_output=True,
                                          text=True).stdout.split()
                for pid in children:
                    os.kill(int(pid), signal.SIGKILL)
                break
        else:
            return []
    finally:
        wrapper.wait(timeout=60)
    return seen


def rotate_after_the_lock_expired():
    """The killed run's lock in etcd outlives it by its lease (etcd_operations.LOCK_TTL), and
    a highstate it had started on a member may still be running there: until then the next
    run is refused for one of these, and says so."""
    deadline = time.monotonic() + 90
    while True:
        res = lab("salt-run", "--out=json", "etcd.rotate_ca")
        ret = last_json(res.stdout)
        if res.returncode == 0 and ret.get("result") is True:
            return ret
        why = ret.get("Error", "")
        assert ("lock" in why or "is running as PID" in why) and time.monotonic() < deadline, \
            res.stdout[-3000:]
        time.sleep(2)


def cert_count(host, path):
    return int(on(host, "grep", "-c", "BEGIN CERTIFICATE", path).stdout.strip() or 0)


def test_a_ca_rotation_stopped_and_killed_goes_on_and_costs_patroni_nothing(patroni):
    assert on("h1", "sh", "-c", "mkdir -p {0} && cp /etc/etcd/pki/ca.crt /etc/etcd/pki/client.crt "
              "/etc/etcd/pki/client.key /etc/etcd/pki/peer.crt /etc/etcd/pki/peer.key "
              "/etc/etcd/pki/peer-ca.crt {0}/".format(OLD)).returncode == 0
    old_labels = salt("master", "etcd_ca.bundles")["master"]["labels"]
    started = time.time()
    with Writer(endpoints(), ADMIN_TLS, credentials=("root", ROOT_PASSWORD)) as writer:
        # stopped after the bundle step: every member and client trusts both CAs
        first = rotate("until=reissue")
        assert first["changes"] == {"phase": "reissue"} and phase() == "trust-both"
        for host, path in [(m, "/etc/etcd/pki/ca.crt") for m in MEMBERS] + [
                (m, "/etc/etcd/pki/peer-ca.crt") for m in MEMBERS] + [
                (c, "/etc/patroni/etcd/ca.crt") for c in CLIENTS]:
            assert cert_count(host, path) == 2, (host, path)
        # stopped after the reissue step: every leaf of the new CAs, the old still trusted
        second = rotate("until=trust-new")
        assert second["changes"] == {"phase": "trust-new"} and phase() == "reissue"
        assert any("every member serves certificates of the new CAs" in d for d in second["done"])
        # killed in the last rolling restart (after the reissue step and the archive of the
        # old CAs): the run after it goes on from there
        killed = kill_rotation_at(": etcd, healthy")
        assert killed and phase() == "trust-new", killed
        last = rotate_after_the_lock_expired()
        assert last["changes"] == {"rotated": True} and phase() is None
        ended = time.time()
        time.sleep(1)
    report = writer.report()
    print("CA rotation under a writer ({:.0f} s): {}".format(ended - started, report))
    assert report["failed"] == 0, report["first_failures"]
    # patroni kept its leader and timeline, and reaches etcd with its new certificate
    wait_for("patroni reaches etcd after the rotation",
             lambda: api(PATRONI_HOST)[1].get("dcs_last_seen", 0) > ended, 60)
    assert patroni_state() == patroni
    new_labels = salt("master", "etcd_ca.bundles")["master"]["labels"]
    for which in ("client", "peer"):
        assert len(new_labels[which]) == 1 and new_labels[which][0] not in old_labels[which]
    # every certificate the CA lists is of the new CAs
    ret = last_json(lab("salt-run", "--out=json", "etcd.certificates", "table=False").stdout)
    issuers = {row[4] for row in ret["certificates"]}
    assert issuers <= set(new_labels["client"] + new_labels["peer"]), issuers


def test_after_the_rotation_nothing_of_the_old_ca_is_trusted_anywhere(patroni):
    h2 = ip("h2")
    # the old client certificate opens no client port, the old peer one no peer port
    assert curl("h1", "https://{}:2379/health".format(h2), "--cacert", "/etc/etcd/pki/ca.crt",
                "--cert", OLD + "/client.crt", "--key", OLD + "/client.key") != 0
    assert curl("h1", "https://{}:2380/members".format(h2), "--cacert", "/etc/etcd/pki/peer-ca.crt",
                "--cert", OLD + "/peer.crt", "--key", OLD + "/peer.key") != 0
    # the new ones do; and the servers' certificates are not the old CA's
    assert curl("h1", "https://{}:2379/health".format(h2), "--cacert", "/etc/etcd/pki/ca.crt",
                "--cert", "/etc/etcd/pki/client.crt", "--key", "/etc/etcd/pki/client.key") == 0
    assert curl("h1", "https://{}:2379/health".format(h2), "--cacert", OLD + "/ca.crt",
                "--cert", "/etc/etcd/pki/client.crt", "--key", "/etc/etcd/pki/client.key") != 0
    # one CA in every bundle: the members', the clients', the master's
    for host in MEMBERS:
        assert cert_count(host, "/etc/etcd/pki/ca.crt") == cert_count(host, "/etc/etcd/pki/peer-ca.crt") == 1
    for host in CLIENTS:
        assert cert_count(host, "/etc/patroni/etcd/ca.crt") == 1, host
    assert open(ADMIN_TLS["ca_file"]).read().count("BEGIN CERTIFICATE") == 1
    # the old CA keys are archived on the CA server (0600), never deleted
    archived = subprocess.run(["find", os.path.join(CA_DIR, "retired"), "-name", "*.key",
                               "-perm", "600"], capture_output=True, text=True).stdout.split()
    assert len(archived) == 2, archived
    on("h1", "rm", "-rf", OLD)
    # and highstate changes nothing now
    ret = salt("-L", ",".join(MEMBERS), "state.apply", "test=True")
    assert all(s.get("result") is True for states in ret.values() for s in states.values()), ret


def test_a_member_added_and_removed_with_authentication_on_costs_patroni_nothing(patroni):
    leader_before = leader_key_version()
    CURRENT["members"] = MEMBERS + [SPARE]
    write_pillar()
    salt("*", "saltutil.refresh_pillar", "wait=True")
    try:
        with Writer(endpoints(), ADMIN_TLS, credentials=("root", ROOT_PASSWORD)) as writer:
            done = orchestrate("etcd.add_member", {"etcd_member": SPARE})
            assert done.rc == 0, done.errors
            with as_user("root", ROOT_PASSWORD) as root:
                assert sorted(m["name"] for m in root.members() if not m["is_learner"]) == [
                    "etcd-1", "etcd-16", "etcd-2", "etcd-3"]
            # the new member got root's credentials file: root's etcdctl works there
            out = on(SPARE, "bash", "-lic", "e put a 10 && e get a && e del a && em list")
            assert out.returncode == 0 and "etcd-16" in out.stdout, out.stdout + out.stderr
            done = orchestrate("etcd.remove_member", {"etcd_member": SPARE})
            assert done.rc == 0, done.errors
            time.sleep(1)
        report = writer.report()
    finally:
        CURRENT["members"] = MEMBERS
        write_pillar()
        salt("*", "saltutil.refresh_pillar", "wait=True")
    print("add and remove with authentication on, under a writer: {}".format(report))
    assert report["failed"] == 0, report["first_failures"]
    with as_user("root", ROOT_PASSWORD) as root:
        assert sorted(m["name"] for m in root.members()) == ["etcd-1", "etcd-2", "etcd-3"]
    assert on(SPARE, "systemctl", "is-active", "etcd").stdout.strip() != "active"
    assert patroni_state() == patroni
    assert leader_key_version() == leader_before


def test_no_password_in_the_job_cache_logs_journals_or_any_argv(patroni):
    hidden = [ROOT_PASSWORD, POSTGRES_PASSWORD] + PATRONI_PASSWORDS + GENERATED
    assert os.path.isdir(JOB_CACHE) and os.listdir(JOB_CACHE)
    for secret in hidden:
        assert files_containing([JOB_CACHE, MASTER_LOG], secret) == [], secret
    # each secret's first character in brackets: the pattern in grep's (and sh's) own argv
    # never matches itself (the secrets are letters, digits, '-' and '_': nothing to escape)
    assert all(re.match(r"^[A-Za-z0-9_-]+$", s) for s in hidden)
    pattern = "|".join("[{}]{}".format(s[0], s[1:]) for s in hidden)
    for host in MEMBERS + [PATRONI_HOST, SPARE]:
        out = on(host, "sh", "-c", "journalctl --no-pager -o cat | grep -cE '{0}'; "
                 "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -cE '{0}'; "
                 "cat /var/log/salt/minion 2>/dev/null | grep -cE '{0}'".format(pattern))
        assert out.stdout.split() == ["0", "0", "0"], (host, out.stdout)
    argv = subprocess.run(["sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | "
                           "grep -cE '{}' || true".format(pattern)], capture_output=True, text=True)
    assert argv.stdout.strip() == "0"


# -- a cluster built before peers had a CA of their own, moved to one by the rotation -------------

def ca_file(name):
    return os.path.join(CA_DIR, name)


def make_the_cluster_of_one_ca():
    """The state a cluster built by the formula's first version is in: its peer certificates
    are the clients' CA's and its peer ports trust that CA only. Reached here with the
    rotation itself (its next peers' CA is the clients' CA), so patroni keeps serving; then
    a new peers' CA made by etcd.ca, as the current formula's first highstate of the CA
    server makes it, that no member trusts."""
    os.makedirs(ca_file("next"), mode=0o700)
    for name in ("ca.key", "ca.crt"):
        shutil.copy2(ca_file(name), ca_file("next/" + name))
        shutil.copy2(ca_file(name), ca_file("next/peer-" + name))
    record = salt("master", "etcd_ca.bundles")["master"]["labels"]
    with open(ca_file("rotation.json"), "w") as handle:
        json.dump({"phase": "trust-both", "started": time.strftime("%Y%m%dT%H%M%SZ-one-ca"),
                   "old": {w: record[w][0] for w in record}, "new": {}}, handle)
    os.chmod(ca_file("rotation.json"), 0o600)
    rotate()
    assert phase() is None
    one = salt("master", "etcd_ca.bundles")["master"]["labels"]
    assert one["client"] == one["peer"] and len(one["peer"]) == 1, one
    os.makedirs(ca_file("retired/one-ca"), mode=0o700)
    for name in ("peer-ca.key", "peer-ca.crt"):
        os.replace(ca_file(name), ca_file("retired/one-ca/" + name))
    assert failures(salt("master", "state.apply", "etcd.ca"), ["master"]) == []


def h1_peer_side():
    """h1's peer certificate and bundle, and its etcd's PID."""
    return (fingerprint("h1", "/etc/etcd/pki/peer.crt"),
            on("h1", "sha256sum", "/etc/etcd/pki/peer-ca.crt").stdout,
            on("h1", "systemctl", "show", "-p", "ExecMainPID", "etcd").stdout)


def test_a_cluster_of_one_ca_is_refused_by_highstate_and_split_by_the_rotation(patroni):
    h2 = ip("h2")
    peer_port = "https://{}:2380/members".format(h2)
    # -k: the refusal asserted below is the server's, not curl's view of the peer certificate
    patroni_tls = ("-k", "--cert", PATRONI_CERT, "--key", PATRONI_KEY)
    make_the_cluster_of_one_ca()
    # what a cluster of one CA allows: patroni's client certificate opens a peer port
    assert curl(PATRONI_HOST, peer_port, *patroni_tls) == 0
    # highstate refuses it before any file changes: no bundle, no certificate, no restart
    before = h1_peer_side()
    ret = salt("h1", "state.apply")["h1"]
    refusal = [s["comment"] for s in ret.values() if s.get("result") is False]
    assert any("was issued by the clients' CA" in c and "salt-run etcd.rotate_ca" in c
               for c in refusal), refusal
    assert h1_peer_side() == before
    # the rotation moves it to a peers' CA of its own, patroni and a writer serving
    started = time.time()
    with Writer(endpoints(), ADMIN_TLS, credentials=("root", ROOT_PASSWORD)) as writer:
        ret = rotate()
        ended = time.time()
        time.sleep(1)
    report = writer.report()
    print("a cluster of one CA split by the rotation ({:.0f} s): {}".format(ended - started,
                                                                         report))
    assert report["failed"] == 0, report["first_failures"]
    assert any("built before peers had a CA of their own" in d for d in ret["done"]), ret["done"]
    wait_for("patroni reaches etcd after the split",
             lambda: api(PATRONI_HOST)[1].get("dcs_last_seen", 0) > ended, 60)
    assert patroni_state() == patroni
    labels = salt("master", "etcd_ca.bundles")["master"]["labels"]
    assert len(labels["client"]) == len(labels["peer"]) == 1 and labels["client"] != labels["peer"]
    # peer trust is not client trust any more: patroni's certificate opens no peer port; the
    # members' own peer certificates do, and they are the peers' CA's
    assert curl(PATRONI_HOST, peer_port, *patroni_tls) != 0
    assert curl("h1", peer_port, "--cacert", "/etc/etcd/pki/peer-ca.crt", "--cert",
                "/etc/etcd/pki/peer.crt", "--key", "/etc/etcd/pki/peer.key") == 0
    for host in MEMBERS:
        assert on(host, "openssl", "verify", "-CAfile", "/etc/etcd/pki/peer-ca.crt",
                  "/etc/etcd/pki/peer.crt").returncode == 0, host
        assert on(host, "openssl", "verify", "-CAfile", "/etc/etcd/pki/ca.crt",
                  "/etc/etcd/pki/peer.crt").returncode != 0, host
    # the unused peers' CA and the one CA are archived (keys 0600), never deleted
    archived = subprocess.run(["find", ca_file("retired"), "-name", "*.key", "-perm", "600"],
                              capture_output=True, text=True).stdout.split()
    assert any(p.endswith("-unused/peer-ca.key") for p in archived), archived
    # and highstate changes nothing now
    ret = salt("-L", ",".join(MEMBERS), "state.apply", "test=True")
    assert all(s.get("result") is True for states in ret.values() for s in states.values()), ret


def test_no_secret_nor_private_key_was_in_any_processs_argv_at_any_time(argv_watch):
    # last: the whole module ran under the watch (highstate of 15 hosts, authentication on,
    # a password rotation, credentials, CA rotations, a member added and removed, the split
    # of a cluster of one CA)
    assert argv_watch.rounds > 100 and argv_watch.is_alive()
    assert argv_watch.found == [], argv_watch.found[:5]

"""
etcd's clients on the lab: real patroni (with PostgreSQL) and Debian's vip-manager 1.0.2 on h5,
which is no etcd member (and prometheus's etcd target list there), kept on the voting members by the add_member / remove_member
orchestrations (etcd/clients/*.sls, salt-run etcd.refresh_endpoints).

The cluster h1..h3 (enable_v2: vip-manager 1.x speaks etcd's v2 API only, so patroni is given
the v2 `etcd:` section and both use the same key space) is built by highstate; h5 gets its
client certificates from the formula (etcd.client), a single-node patroni (scope pg-test) and
vip-manager watching patroni's leader key. The lab's hosts lack CAP_NET_ADMIN, so vip-manager
cannot put the VIP on eth0 ("Operation not permitted"): that it read the key through the
refreshed endpoints is checked in its journal ("desired true": the key holds h5).

Needs a lab of 5 hosts with this module's pillar: the module fixture brings the session's lab
up again that way (a developer's lab that is up with another pillar makes it fail instead).
"""

import datetime
import os
import time

import pytest
import yaml
from lab_cli import ADMIN_TLS, lab, last_json, orchestrate, salt
from lab_patroni import api, http, wait_for, write_base_config
from lab_pillar import ip, write_base, write_etcd

PILLAR_DIR = os.environ.get("ETCD_CLIENTS_PILLAR_DIR", "/tmp/etcd-formula-clients-pillar")
ADMIN_CERT = (ADMIN_TLS["cert_file"], ADMIN_TLS["key_file"])
ADMIN_CA = ADMIN_TLS["ca_file"]
CLIENT = "h5"
SCOPE = "pg-test"
LEADER_KEY = "/service/{}/leader".format(SCOPE)
VIP = "10.77.0.100"
PATRONI_CONFIG = "/etc/patroni/config.yml"
VIP_CONFIG = "/etc/default/vip-manager"
PROMETHEUS_TARGETS = "/etc/prometheus/etcd_targets.yml"


def endpoint(host):
    return "https://{}:2379".format(ip(host))




def on_client(*cmd):
    return lab("exec", CLIENT, "--", *cmd)


def write_pillar_file_only(members):
    """Cluster etcd of ``members`` with its clients on h5 (vip-manager 1.x: enable_v2), and
    prometheus's etcd target list there."""
    write_etcd(PILLAR_DIR, members, [
        "enable_v2: true",
        "metrics_on_address: true",  # prometheus on h5 scrapes them
        "clients:",
        "  patroni:",
        "    target: [{}]".format(CLIENT),
        "  vip_manager:",
        "    target: [{}]".format(CLIENT),
        "    version: 1",
        "    ip: " + VIP,
        "    netmask: 24",
        "    interface: eth0",
        "    trigger_key: " + LEADER_KEY,
        "  prometheus:",
        "    target: " + CLIENT,
    ])


def write_pillar(members):
    write_pillar_file_only(members)
    salt("*", "saltutil.refresh_pillar", "wait=True")


def leader_key(hosts):
    """Patroni's leader key read through etcd's v2 API (vip-manager 1.x's view) at each host."""
    values = {}
    for host in hosts:
        res = http().get("{}/v2/keys{}".format(endpoint(host), LEADER_KEY), cert=ADMIN_CERT,
                         verify=ADMIN_CA, timeout=5)
        values[host] = res.json().get("node", {}).get("value") if res.ok else res.status_code
    return values


def read_client_yaml(path):
    out = on_client("cat", path)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def vip_manager_env():
    out = on_client("cat", VIP_CONFIG)
    assert out.returncode == 0, out.stderr
    env = {}
    for line in out.stdout.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip('"')
    return env


def vip_manager_run():
    """(MainPID, journal of the current vip-manager process only)."""
    pid = on_client("systemctl", "show", "-p", "MainPID", "--value", "vip-manager").stdout.strip()
    journal = on_client("journalctl", "--no-pager", "-o", "cat", "_PID=" + pid).stdout
    return pid, journal


def refresh_endpoints():
    res = lab("salt-run", "--out=json", "etcd.refresh_endpoints", "cluster=etcd")
    ret = last_json(res.stdout)
    assert res.returncode == 0 and ret.get("result"), ret
    return ret


@pytest.fixture(scope="module")
def clients_lab(lab):
    """The session's lab with 5 fresh hosts and this module's pillar: cluster h1..h3 by
    highstate, patroni (the leader of scope pg-test) and vip-manager 1.0.2 running on h5."""
    write_base(PILLAR_DIR)
    write_pillar_file_only(["h1", "h2", "h3"])
    lab.relaunch(hosts=5, pillar=PILLAR_DIR)
    assert lab.run("sync").returncode == 0
    salt("*", "saltutil.refresh_pillar", "wait=True")
    ret = salt("master", "state.apply", "etcd.ca,etcd.admin")
    assert all(s["result"] for s in ret["master"].values()), ret
    ret = salt("-L", "h1,h2,h3", "state.apply", "-t", "900")
    bad = ["{}: {}".format(m, s["comment"]) for m, states in ret.items()
           for s in (states.values() if isinstance(states, dict) else [{"result": False,
                                                                         "comment": states}])
           if not s["result"]]
    assert not bad and len(ret) == 3, bad or ret

    write_base_config(CLIENT, SCOPE)
    # What add_member / remove_member do for clients, once by hand for the first setup:
    # client certs (etcd.client), patroni's DCS section, vip-manager's settings.
    refresh_endpoints()
    started = on_client("systemctl", "start", "patroni")
    assert started.returncode == 0, started.stderr
    wait_for("patroni leads scope " + SCOPE,
             lambda: api(CLIENT)[1].get("role") in ("master", "primary")
             and api(CLIENT)[1].get("state") == "running", 120)
    started = on_client("systemctl", "start", "vip-manager")
    assert started.returncode == 0, started.stderr
    wait_for("vip-manager reads the leader key", lambda: "desired true" in vip_manager_run()[1],
             30)
    yield


def test_the_client_host_gets_its_own_client_certificates_signed_by_the_cluster_ca(clients_lab):
    patroni = read_client_yaml(PATRONI_CONFIG)["etcd"]
    files = on_client("stat", "-c", "%n %U %a", patroni["key"], patroni["cert"]).stdout.split("\n")
    assert files[0].split()[1:] == ["postgres", "600"], files  # patroni runs as postgres
    verify = on_client("openssl", "verify", "-purpose", "sslclient", "-CAfile", patroni["cacert"],
                       patroni["cert"])
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_refresh_with_nothing_changed_restarts_and_reloads_nothing(clients_lab):
    pid_before, _ = vip_manager_run()
    patroni_pid = on_client("systemctl", "show", "-p", "MainPID", "--value", "patroni").stdout
    configs = ["stat", "-c", "%n %Y %s", PATRONI_CONFIG, VIP_CONFIG]
    configs_before = on_client(*configs).stdout
    time.sleep(1.1)  # a rewrite would show in the mtime (seconds)
    ret = refresh_endpoints()
    assert ret["endpoints"] == [endpoint(h) for h in ("h1", "h2", "h3")]
    assert on_client(*configs).stdout == configs_before
    assert vip_manager_run()[0] == pid_before
    assert on_client("systemctl", "show", "-p", "MainPID", "--value", "patroni").stdout == \
        patroni_pid


def test_replacing_a_member_keeps_patroni_and_vip_manager_on_the_voting_members(clients_lab):
    new_voters = ["h2", "h3", "h4"]
    assert set(leader_key(["h1", "h2", "h3"]).values()) == {CLIENT}
    write_pillar(["h1", "h2", "h3", "h4"])
    done = orchestrate("etcd.add_member", {"etcd_member": "h4"})
    assert done.rc == 0, done.errors
    vip_pid_after_add = vip_manager_run()[0]
    done = orchestrate("etcd.remove_member", {"etcd_member": "h1"})
    assert done.rc == 0, done.errors
    removed_at = time.time()
    write_pillar(new_voters)  # the minion leaves the pillar once its removal is done
    assert lab("exec", "h1", "--", "systemctl", "is-active", "etcd").stdout.strip() != "active"

    # the configs list exactly the voting members, learners and the removed one never
    dcs = read_client_yaml(PATRONI_CONFIG)
    assert "etcd3" not in dcs  # v2 and v3 are separate key spaces: vip-manager 1.x reads v2
    assert dcs["etcd"]["hosts"] == ["{}:2379".format(ip(h)) for h in new_voters]
    env = vip_manager_env()
    assert env["VIP_ENDPOINT"] == ",".join(endpoint(h) for h in new_voters)
    assert on_client("systemctl", "is-active", "vip-manager").stdout.strip() == "active"
    targets = read_client_yaml(PROMETHEUS_TARGETS)
    assert [t["targets"] for t in targets] == [["{}:2381".format(ip(h)) for h in new_voters]]

    # patroni still holds its leader key, in etcd and in its own view, and talks to etcd
    # after h1 is gone (dcs_last_seen: its last successful DCS round trip)
    assert leader_key(new_voters) == {h: CLIENT for h in new_voters}
    wait_for("patroni reaches etcd after h1's removal",
             lambda: api(CLIENT)[1].get("dcs_last_seen", 0) > removed_at, 40)
    status, body = api(CLIENT)
    assert status == 200 and body["role"] in ("master", "primary") and body["state"] == "running"
    assert api(CLIENT, "leader")[0] == 200
    assert leader_key(new_voters) == {h: CLIENT for h in new_voters}

    # vip-manager was restarted onto the new list (once per refresh that changed it) and the
    # running process reads the trigger key through it: the key holds its trigger value
    pid, journal = vip_manager_run()
    assert pid != vip_pid_after_add
    used = [line for line in journal.splitlines() if "dcs-endpoints :" in line]
    assert used and used[-1].split("dcs-endpoints :")[1].strip() == "[{}]".format(
        " ".join(endpoint(h) for h in new_voters))
    # a new process starts with "desired false" and says "desired true" only once it has read
    # the key (through exactly h2..h4: the endpoints it was started with)
    wait_for("vip-manager reads the leader key through h2..h4",
             lambda: "desired true" in vip_manager_run()[1], 30)


def test_prometheus_gets_the_formulas_rules_checked_by_promtool(clients_lab):
    for name in ("etcd-alerts.yml", "etcd-recording.yml"):
        shipped = open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "etcd", "files", "prometheus", name)).read()
        assert on_client("cat", "/etc/prometheus/rules/" + name).stdout == shipped
    out = on_client("promtool", "check", "rules", "/etc/prometheus/rules/etcd-alerts.yml",
                    "/etc/prometheus/rules/etcd-recording.yml")
    assert out.returncode == 0, out.stdout + out.stderr


PROMETHEUS_CONFIG = """\
# Written by test_clients: what docs/operations.md asks of prometheus.yml, with short
# intervals so that the drill takes a minute or two.
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: ['/etc/prometheus/rules/etcd-*.yml']
scrape_configs:
  - job_name: etcd
    file_sd_configs: [{files: ['/etc/prometheus/etcd_targets.yml']}]
"""


def prometheus(path):
    """GET prometheus's HTTP API on h5 (its default port, on the lab bridge): the data."""
    res = http().get("http://{}:9090/api/v1/{}".format(ip(CLIENT), path), timeout=5)
    res.raise_for_status()
    return res.json()["data"]


def alerts():
    """{alert name: set of states} of the alerts prometheus holds now."""
    found = {}
    for alert in prometheus("alerts")["alerts"]:
        found.setdefault(alert["labels"]["alertname"], set()).add(alert["state"])
    return found


def test_a_real_prometheus_fires_no_leader_when_quorum_is_lost_and_resolves_it(clients_lab):
    """The shipped rules, the target list and the labels as the formula writes them, on a real
    prometheus scraping the voting members: 2 of 3 members stopped -> etcdNoLeader firing
    (and etcdInsufficientMembers pending: its `for` is 3 minutes); both back -> resolved.
    (Last in this module: patroni loses its DCS meanwhile.)"""
    voters = ["h2", "h3", "h4"]  # after the replacement above
    wrote = lab("exec", CLIENT, "--", "sh", "-c",
                "cat > /etc/prometheus/prometheus.yml && systemctl restart prometheus",
                input=PROMETHEUS_CONFIG)
    assert wrote.returncode == 0, wrote.stderr
    def evaluated(group):
        return datetime.datetime.fromisoformat(group["lastEvaluation"]).timestamp()

    wait_for("prometheus scrapes the 3 voters", lambda: sorted(
        t["labels"]["instance"] for t in prometheus("targets")["activeTargets"]
        if t["health"] == "up" and t["labels"].get("etcd_cluster") == "etcd")
        == sorted("{}:2381".format(ip(h)) for h in voters), 60)
    wait_for("the rules are loaded", lambda: any(
        r["name"] == "etcdNoLeader" for g in prometheus("rules")["groups"] for r in g["rules"]),
        30)
    all_up = time.time()
    # an evaluation after the next scrape of all three (the hosts share the machine's clock),
    # of the groups holding the alerts below: the recording group runs once a minute and the
    # alerts do not read it
    watched = {"etcdNoLeader", "etcdInsufficientMembers", "etcdMembersDown"}
    def alert_groups():
        groups = [g for g in prometheus("rules")["groups"]
                  if watched & {r["name"] for r in g["rules"]}]
        assert groups, "no rule group holds {}".format(sorted(watched))
        return groups
    wait_for("the alert rules evaluated on a full scrape", lambda: all(
        evaluated(g) > all_up + 5 for g in alert_groups()), 60)
    assert not watched & set(alerts())

    for host in voters[:2]:
        assert lab("exec", host, "--", "systemctl", "stop", "etcd").returncode == 0
    try:
        wait_for("etcdNoLeader firing", lambda: "firing" in alerts().get("etcdNoLeader", ()),
                 150)
        assert "pending" in alerts().get("etcdInsufficientMembers", set()), alerts()
    finally:
        for host in voters[:2]:
            lab("exec", host, "--", "systemctl", "start", "--no-block", "etcd")
    wait_for("the alerts resolved", lambda: not {
        "etcdNoLeader", "etcdInsufficientMembers"} & set(alerts()), 120)

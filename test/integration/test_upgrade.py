"""
Rolling upgrades on the lab (docs/operations.md, "Rolling upgrade"): a cluster built by
highstate with the image's etcd upgraded in place (Debian 12: 3.4.23 -> 3.5.16, Debian 13's
package; Debian 13: 3.5.16 -> 3.5.30, unstable's; from the lab's local repository: `test/lab
repo`) by `salt-run etcd.upgrade`, beside a writer and a real patroni: 0 failed writes, no failover, every member
on the new version and the cluster version moved; before it, refused plans (a downgrade, a
skipped minor, a version that is no version) that change nothing; after it, highstate
changes nothing.

Needs a lab of 4 hosts with this module's pillar (the module fixture brings the session's lab
up again that way).
"""

import os
import time

import pytest
from lab_cli import ADMIN_TLS, build_cluster, lab, last_json, salt
from lab_patroni import api, wait_for, write_base_config
from lab_pillar import ip, write_base, write_etcd
from writer import Writer, formula_client

PILLAR_DIR = os.environ.get("ETCD_UPGRADE_PILLAR_DIR", "/tmp/etcd-formula-upgrade-pillar")
MEMBERS = ["h1", "h2", "h3"]
PATRONI_HOST = "h4"
SCOPE = "pg-upgrade"
# from the image's etcd to the newest the lab's repository has for it: Debian 12 hosts
# 3.4.23 -> 3.5.16 (a minor upgrade: Debian 13's package), Debian 13 hosts 3.5.16 -> 3.5.30
TARGETS = {"3.4": "3.5.16", "3.5": "3.5.30"}
REPO_LIST = "/etc/apt/sources.list.d/etcd-formula-lab.list"


def endpoints():
    return ["https://{}:2379".format(ip(h)) for h in MEMBERS]


def on(host, *cmd):
    return lab("exec", host, "--", *cmd)


def versions():
    """{member: (server version, cluster version)}."""
    with formula_client(endpoints(), ADMIN_TLS, timeout=5) as client:
        return {h: tuple(client.versions("https://{}:2379".format(ip(h))).values())
                for h in MEMBERS}


def patroni_state():
    status, body = api(PATRONI_HOST)
    return status, body.get("role"), body.get("state"), body.get("timeline")


def upgrade(version):
    res = lab("salt-run", "--out=json", "etcd.upgrade", "version=" + version)
    return res.returncode, last_json(res.stdout), res.stdout


@pytest.fixture(scope="module")
def cluster(lab):
    write_base(PILLAR_DIR)
    write_etcd(PILLAR_DIR, MEMBERS, ["clients:", "  patroni:",
                                     "    target: [{}]".format(PATRONI_HOST),
                                     "    scope: " + SCOPE])
    lab.relaunch(hosts=4, pillar=PILLAR_DIR)
    build_cluster(lab, MEMBERS)
    # the site's package repository: here the lab's, with Debian unstable's etcd
    for host in MEMBERS:
        out = on(host, "sh", "-c", "echo 'deb [trusted=yes] file:/srv/etcd-formula-repo ./' > {0} "
                 "&& apt-get update -qq -o Dir::Etc::sourcelist={0} -o Dir::Etc::sourceparts=- "
                 "-o APT::Get::List-Cleanup=0".format(REPO_LIST))
        assert out.returncode == 0, out.stdout + out.stderr
    write_base_config(PATRONI_HOST, SCOPE)
    ret = salt(PATRONI_HOST, "state.apply", "etcd.clients.patroni")
    assert all(s["result"] for s in ret[PATRONI_HOST].values()), ret
    assert on(PATRONI_HOST, "systemctl", "start", "patroni").returncode == 0
    wait_for("patroni leads " + SCOPE, lambda: patroni_state()[:3] in (
        (200, "master", "running"), (200, "primary", "running")), 120)
    before = versions()
    return {"before": before, "patroni": patroni_state(),
            "target": TARGETS[before["h1"][0].rsplit(".", 1)[0]]}


@pytest.mark.parametrize("version, why", [
    ("3.4.20", "a downgrade is refused"),
    ("3.7.0", "skips a minor version"),
    ("3.5.30;reboot", "expected an etcd version like 3.5.30"),
])
def test_a_refused_plan_changes_nothing(cluster, version, why):
    rc, ret, out = upgrade(version)
    before = cluster["before"]
    assert rc != 0 and why in ret.get("Error", ""), out[-2000:]
    assert "nothing was changed" in ret["Error"] or "expected" in ret["Error"]
    assert versions() == before


def test_a_rolling_upgrade_moves_every_member_and_costs_patroni_nothing(cluster):
    target = cluster["target"]
    started = time.time()
    with Writer(endpoints(), ADMIN_TLS) as writer:
        rc, ret, out = upgrade(target)
        ended = time.time()
        time.sleep(1)
    report = writer.report()
    print("etcd.upgrade {} ({:.0f} s) under a writer: {}".format(
        target, ended - started, report))
    assert rc == 0 and ret.get("result") is True, out[-3000:]
    assert report["failed"] == 0, report["first_failures"]
    now = versions()
    assert {v[0] for v in now.values()} == {target}, now
    assert {v[1] for v in now.values()} == {"3.5.0"}, now
    assert any(line.startswith("snapshot ") for line in ret["done"])
    # patroni kept its leader and timeline, and reaches the upgraded cluster
    wait_for("patroni reaches etcd after the upgrade",
             lambda: api(PATRONI_HOST)[1].get("dcs_last_seen", 0) > ended, 60)
    now = patroni_state()
    if now != cluster["patroni"]:  # what patroni saw, for the failure's reader
        journal = on(PATRONI_HOST, "journalctl", "-u", "patroni", "--no-pager", "-o",
                     "short-precise", "--since", "@{}".format(int(started) - 5)).stdout
        raise AssertionError("patroni {} -> {} during the upgrade; its journal:\n{}".format(
            cluster["patroni"], now, journal[-8000:]))


def test_after_the_upgrade_a_second_run_and_highstate_change_nothing(cluster):
    target = cluster["target"]
    rc, ret, out = upgrade(target)
    assert rc == 0 and "runs etcd {} already".format(target) in ret["comment"], out[-2000:]
    ret = salt("-L", ",".join(MEMBERS), "state.apply", "test=True")
    pending = ["{}: {}".format(m, s.get("comment")) for m, states in ret.items()
               for s in states.values() if s.get("result") is not True]
    assert pending == []
    # nor may a highstate change the version of a running member by itself: a pillar that
    # pins another version is refused, naming the command; the package stays
    old = cluster["before"]["h1"][0]
    ret = salt("h1", "state.apply", "etcd.install",
               'pillar={"etcd": {"pkg": {"version": "%s-1"}}}' % old)
    comments = [s.get("comment", "") + s.get("name", "") for s in ret["h1"].values()
                if not s.get("result")]
    assert any("salt-run etcd.upgrade version={}-1".format(old) in c for c in comments), ret
    for host in MEMBERS:
        assert on(host, "dpkg-query", "-W", "-f=${Version}", "etcd-server").stdout.startswith(target)

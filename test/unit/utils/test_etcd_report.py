"""
etcd_report: what ``salt-run etcd.status`` shows an operator, from what the layer read (here
the real ``etcd_membership.health`` over FakeEtcd): a table like ``etcdctl endpoint status
-w table``, the health line with a split or a quorum loss spelled out, learners, alarms.
"""

import pytest

import etcd_membership
import etcd_report
from etcd_fakes import FakeEtcd, client_url, member, status

NAMES = {client_url(seq): "h{}".format(seq) for seq in (1, 2, 3, 4)}


@pytest.fixture
def etcd():
    found = FakeEtcd([member(1), member(2), member(3), member(4, learner=True)])
    found.raft_index["a4"] = 90
    return found


def text(etcd, expiry_rows=None):
    client = etcd.connect(list(NAMES))
    return etcd_report.status_text("etcd", etcd_membership.health(client), NAMES, expiry_rows)


def rows(report):
    """The table's rows: {endpoint: [cells]}."""
    found = {}
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| https://"):
            found[cells[0]] = cells
    return found


def test_a_healthy_cluster_reads_like_etcdctl_endpoint_status(etcd):
    report = text(etcd)
    lines = report.splitlines()
    assert lines[0] == "cluster etcd: healthy"
    assert [c.strip() for c in lines[2].strip("|").split("|")] == etcd_report.STATUS_HEADER
    table = rows(report)
    assert table[client_url(1)][:7] == [client_url(1), "a1", "etcd-1", "3.5.16", "20.5 kB", "true", "false"]
    assert table[client_url(4)][6] == "true"  # the learner
    assert table[client_url(4)][8] == "90"
    assert table[client_url(2)][10] == "c1"
    assert "learners: etcd-4" in lines and "alarms: none" in lines


def test_a_member_that_is_down_shows_as_down_by_its_minion(etcd):
    etcd.down = {"a3"}
    report = text(etcd)
    assert report.splitlines()[0].startswith("cluster etcd: UNHEALTHY")
    row = rows(report)[client_url(3)]
    assert (row[1], row[2], row[-1]) == ("-", "h3", "down (nothing listens)")


def test_a_split_is_said_in_the_health_line_and_shows_in_the_cluster_column(etcd):
    etcd.foreign[client_url(2)] = dict(status(2, leader="b2", cluster_id="c2"), id="b2")
    report = text(etcd)
    assert report.splitlines()[0].startswith(
        "cluster etcd: UNHEALTHY: SPLIT: the pillar's endpoints answer for 2 different clusters")
    row = rows(report)[client_url(2)]
    assert (row[2], row[10]) == ("h2 (not a member)", "c2")


def test_a_member_without_a_leader_says_so(etcd):
    etcd.down = {"a2", "a3"}
    etcd.leader = "0"
    report = text(etcd)
    assert "UNHEALTHY: quorum lost: 0 of 3 voters up" in report.splitlines()[0]
    assert "no leader" in rows(report)[client_url(1)][-1]


def test_alarms_and_certificates_are_listed(etcd):
    etcd.alarm_list = [{"member_id": "a2", "alarm": "NOSPACE"}]
    report = text(etcd, expiry_rows=[["h1", "server", client_url(1), "2030-01-01", "1500"]])
    assert "alarms: NOSPACE on a2" in report.splitlines()
    certificates = report.split("certificates:\n", 1)[1].splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in certificates if line.startswith("|")]
    assert cells == [["MINION", "CERT", "WHERE", "NOT AFTER", "DAYS LEFT"],
                     ["h1", "server", client_url(1), "2030-01-01", "1500"]]


@pytest.mark.parametrize("size, shown", [(None, "-"), (0, "0 B"), (999, "999 B"), (20480, "20.5 kB"),
                                         (2 * 10**9, "2.0 GB"), (5 * 10**12, "5000.0 GB")])
def test_sizes_are_shown_as_etcdctl_shows_them(size, shown):
    assert etcd_report.human_size(size) == shown

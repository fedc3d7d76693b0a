"""
The rolling upgrade runner (``salt-run etcd.upgrade``) over the real layers and etcd's rules
(``etcd_versions.plan``): etcd is FakeEtcd behind an autospec of the real client, each
member's version what ``client.versions`` answers, the minions answer through an autospec of
Salt's LocalClient (a member's highstate with ``etcd_upgrade`` makes it run the new
version), the snapshot step a Mock specced on ``etcd.snapshot``. What is checked: nothing
changes before the snapshot and the plan, followers first with leadership moved off the
leader, where an interrupted upgrade goes on, where a failed one stops, saying what was
done. The real upgrades (3.4 -> 3.5 under patroni) run on the lab
(test/integration/test_upgrade.py).
"""

from unittest import mock

import pytest

import etcd_backup
import etcd_errors as errors
import etcd_upgrade as upgrade
from etcd_fakes import FakeMinions, client_url, failed, passed, pillar, real_utils

AGAIN = "continue with: salt-run etcd.upgrade version=3.5.30"
SNAPSHOT = {"result": True, "snapshot": {"path": "/var/backups/etcd/etcd/s1.db", "revision": 42}}


class Versions:
    """The etcd version each member runs ({client URL: version}) and the cluster version,
    which moves to the new minor once every member runs it."""

    def __init__(self, version="3.4.35"):
        self.server = {client_url(seq): version for seq in (1, 2, 3)}
        self.moves = True

    def cluster(self):
        oldest = min(tuple(int(p) for p in v.split(".")) for v in self.server.values())
        if not self.moves:
            oldest = (3, 4)
        return "{}.{}.0".format(oldest[0], oldest[1])

    def answer(self, url):
        if url not in self.server:
            raise errors.EtcdUnreachable("{}: connection refused".format(url), refused=True)
        return {"server": self.server[url], "cluster": self.cluster()}


@pytest.fixture
def versions(etcd):
    found = Versions()
    etcd.client.versions.side_effect = found.answer
    etcd.client.users.return_value = ["root"]
    return found


@pytest.fixture
def etcd_pillar():
    return pillar()


@pytest.fixture
def minions(monkeypatch, etcd, versions):
    found = FakeMinions()
    found.applied = []  # (minion, the pillar handed, the leader's member ID at that time)

    def applied(minion, arg, kwarg):
        handed = (kwarg or {}).get("pillar") or {}
        found.applied.append((minion, handed, etcd.leader))
        wanted = (handed.get("etcd_upgrade") or {}).get("version")
        if wanted and minion not in found.stays:
            versions.server[client_url(int(minion[1:]))] = wanted.rstrip("*")

    found.stays = set()  # minions whose etcd keeps its version
    found.on_call["state.apply"] = applied
    return found.install(monkeypatch)


@pytest.fixture
def snapshot():
    return mock.Mock(spec=etcd_backup.snapshot, return_value=SNAPSHOT)


@pytest.fixture(autouse=True)
def instant_waits(clock, monkeypatch):
    """The layer's waits and the runner's own, instant."""
    monkeypatch.setattr(upgrade, "time", clock)
    return clock


@pytest.fixture
def configure_loader_modules(show_pillar, connect, minions, snapshot, master_opts):
    return {upgrade: {
        "__salt__": {"pillar.show_pillar": show_pillar, "etcd.snapshot": snapshot},
        "__utils__": real_utils(),
        "__opts__": master_opts,
        "__context__": {},
    }}


def test_members_are_upgraded_one_at_a_time_followers_first_after_a_snapshot(
        etcd, versions, minions, snapshot):
    ret = passed(upgrade.upgrade(version="3.5.30"))
    snapshot.assert_called_once_with(cluster="etcd")
    assert [minion for minion, _, _ in minions.applied] == ["h2", "h3", "h1"]
    assert all(handed == {"etcd_upgrade": {"version": "3.5.30*"}}
               for _, handed, _ in minions.applied)
    # leadership left h1 (a1) before its turn
    assert minions.applied[-1][2] != "a1" and etcd.leader != "a1"
    assert set(versions.server.values()) == {"3.5.30"}
    assert ret["changes"] == {"version": {"old": {"h1": "3.4.35", "h2": "3.4.35",
                                                  "h3": "3.4.35"}, "new": "3.5.30"}}
    assert ret["done"][0] == "snapshot /var/backups/etcd/etcd/s1.db (revision 42)"
    assert ret["done"][-1] == "cluster version 3.5.0"


def test_an_interrupted_upgrade_goes_on_with_the_members_left(versions, minions, snapshot):
    versions.server[client_url(2)] = "3.5.30"
    passed(upgrade.upgrade(version="3.5.30"))
    assert [minion for minion, _, _ in minions.applied] == ["h3", "h1"]


def test_a_cluster_that_runs_the_version_already_changes_nothing(versions, minions, snapshot):
    versions.server = {url: "3.5.30" for url in versions.server}
    ret = passed(upgrade.upgrade(version="3.5.30"))
    assert ret["comment"] == "every member of etcd runs etcd 3.5.30 already (cluster version 3.5.0)"
    snapshot.assert_not_called()
    assert minions.applied == []


@pytest.mark.parametrize("version, why", [
    ("3.6.5", "3.6.5 skips a minor version (the cluster is at 3.4)"),
    ("3.3.1", "3.3.1 is older than 3.4.35 (which a member runs): a downgrade is refused"),
])
def test_a_plan_etcd_refuses_changes_nothing(versions, minions, snapshot, version, why):
    message = failed(upgrade.upgrade(version=version))
    assert message.startswith(why) and message.endswith("; nothing was changed"), message
    snapshot.assert_not_called()
    assert minions.applied == []


def test_a_version_pinned_in_pillar_is_not_upgraded_behind_its_back(etcd_pillar, minions, snapshot):
    etcd_pillar["pkg"] = {"version": "3.4.35"}
    message = failed(upgrade.upgrade(version="3.5.30"))
    assert message.startswith("pillar etcd:pkg:version pins 3.4.35: set it to 3.5.30")
    snapshot.assert_not_called()
    assert minions.calls == []


@pytest.mark.parametrize("version", [None, "latest", "3.5", "3.5.30; rm -rf /"])
def test_a_version_that_is_not_one_is_refused_naming_it(version, minions, snapshot):
    message = failed(upgrade.upgrade(version=version))
    assert repr(version) in message or str(version) in message, message
    snapshot.assert_not_called()
    assert minions.calls == []


def test_without_a_verified_snapshot_nothing_is_upgraded(versions, minions, snapshot):
    snapshot.return_value = {"result": False, "Error": "the snapshot failed verification"}
    message = failed(upgrade.upgrade(version="3.5.30"))
    assert message == "no verified snapshot, nothing upgraded: the snapshot failed verification"
    assert minions.applied == []


def test_an_unhealthy_cluster_changes_nothing(etcd, versions, minions, snapshot):
    etcd.down.add("a3")
    message = failed(upgrade.upgrade(version="3.5.30"))
    assert message.startswith("cluster etcd is not healthy (etcd-3: ")
    assert AGAIN.replace("continue with: ", "") in message
    snapshot.assert_not_called()
    assert minions.applied == []


def test_a_member_that_keeps_its_old_version_stops_the_upgrade_there(versions, minions):
    minions.stays.add("h3")
    message = failed(upgrade.upgrade(version="3.5.30"))
    assert message.startswith("h3 after its upgrade: it runs etcd 3.4.35, not 3.5.30; stopped "
                              "there; done: snapshot "), message
    assert "h2: etcd 3.5.30 in " in message and message.endswith(AGAIN)
    assert [minion for minion, _, _ in minions.applied] == ["h2", "h3"]  # never h1


def test_a_failed_highstate_names_the_member_and_what_was_done(minions):
    minions.per_minion[("h2", "state.apply")] = {"etcd-pkg-installed": {
        "result": False, "comment": "E: Version '3.5.30*' for 'etcd-server' was not found"}}
    message = failed(upgrade.upgrade(version="3.5.30"))
    assert message == ("the upgrade of h2 failed: E: Version '3.5.30*' for 'etcd-server' was not "
                       "found; done: snapshot /var/backups/etcd/etcd/s1.db (revision 42); " + AGAIN)


def test_a_cluster_version_that_does_not_move_fails_saying_so(versions, minions):
    versions.moves = False
    message = failed(upgrade.upgrade(version="3.5.30"))
    assert message.startswith("every member runs etcd 3.5.30 but the cluster version is still "
                              "3.4.0 after 60 s"), message

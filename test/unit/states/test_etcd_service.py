"""
etcd_service with systemd faked (Mocks specced on Salt's systemd functions) and etcd being
FakeEtcd behind autospecs of the real client, its cluster health read by the real layer:
when it starts, when it restarts, in which order it locks, restarts and waits, and that
members applying a change at once go down one by one. The real thing runs in
test/integration/test_highstate.py.
"""

import contextlib
import importlib.util
import threading
import time
from unittest import mock

import pytest
import salt.modules.file
import salt.modules.systemd_service

import etcd_client
import etcd_cluster
import etcd_errors as errors
import etcd_membership
import etcd_service
import etcd_settings
from etcd_fakes import (
    REFUSED,
    FakeEtcd,
    answer,
    client_url,
    member,
    member_id,
    patch_connect,
    pillar,
    real_utils,
    status,
)

URLS = [client_url(1), client_url(2), client_url(3)]
LOCK = etcd_settings.restart_lock("etcd")


class Cluster(FakeEtcd):
    """Three members' etcd processes: which are up, what happened in which order, and a
    restart lock shared by every client (as the real one lives in etcd)."""

    def __init__(self, down=(), restart_seconds=0.0, members=3):
        super().__init__([member(seq) for seq in range(1, members + 1)], per_connection=True)
        self.down = {member_id(seq) for seq in down}
        self.restart_seconds = restart_seconds
        self.events = []
        self.lock_endpoints = []
        self.lost = False
        self.holder = None
        self.max_down = 0
        self._lock = threading.Lock()
        self._guard = threading.Lock()

    def record(self, event):
        with self._guard:
            self.events.append(event)
            self.max_down = max(self.max_down, len(self.down))

    def _wired(self, client):
        client = super()._wired(client)
        client.lock.side_effect = lambda name, ttl=60, wait=300, holder=None: self._hold(
            client, name, wait)
        return client

    @contextlib.contextmanager
    def _hold(self, client, name, wait):
        if self.holder is not None:
            raise errors.EtcdLockHeld("lock {} is held by {} (waited {} s)".format(
                name, self.holder, wait), holder=self.holder)
        self.lock_endpoints.append(list(client.endpoints))
        held = mock.create_autospec(etcd_client.Held, instance=True)
        if self.lost:
            held.check.side_effect = errors.EtcdLockLost("lock {} is lost: its lease 7 expired".format(name))
        with self._lock:
            self.record(("locked", name))
            try:
                yield held
            finally:
                self.record(("unlocked", name))

    def restart(self, seq):
        with self._guard:
            self.down.add(member_id(seq))
        self.record(("down", client_url(seq)))
        time.sleep(self.restart_seconds)
        with self._guard:
            self.down.discard(member_id(seq))
        self.record(("up", client_url(seq)))

    def _health(self, endpoint):
        # an answer takes time over the network, and is already old when it arrives
        found = super()._health(endpoint)
        time.sleep(self.restart_seconds / 5)
        return found


class Minion:
    """One minion's systemd (its calls recorded on the cluster) and dunders."""

    def __init__(self, cluster, seq=1, running=True, enabled=True, etcd_pillar=None):
        self.cluster = cluster
        self.seq = seq
        self.pillar = etcd_pillar or pillar()
        self.running = running
        self.peers = {}
        self.status = mock.Mock(spec=salt.modules.systemd_service.status,
                                side_effect=lambda name, sig=None: self.running)
        self.enabled = mock.Mock(spec=salt.modules.systemd_service.enabled, return_value=enabled)
        self.enable = mock.Mock(spec=salt.modules.systemd_service.enable, return_value=True)
        self.start = mock.Mock(spec=salt.modules.systemd_service.start, side_effect=self._start)
        self.restart = mock.Mock(spec=salt.modules.systemd_service.restart, side_effect=self._restart)
        self.has_data = False
        self.has_certs = True  # the peer certificate, key and CA bundle
        self.probe_peers = mock.Mock(spec=etcd_membership.probe_peers,
                                     side_effect=lambda peer_urls, **kw: dict(self.peers))

    def _start(self, name, no_block=False, unmask=False, unmask_runtime=False):
        self.cluster.record(("start", client_url(self.seq), no_block))
        self.running = True
        self.cluster.down.discard(member_id(self.seq))
        return True

    def _restart(self, name, no_block=False, unmask=False, unmask_runtime=False):
        self.cluster.restart(self.seq)
        return True

    def dunders(self):
        minion_id = "h{}".format(self.seq)
        return {
            "__opts__": {"test": False, "id": minion_id},
            "__salt__": {
                "etcd_cluster.settings": mock.Mock(
                    spec=etcd_cluster.settings,
                    side_effect=lambda minion_id=None: etcd_settings.member_settings(
                        self.pillar, "h{}".format(self.seq)) or {}),
                "service.status": self.status,
                "service.enabled": self.enabled,
                "service.enable": self.enable,
                "service.start": self.start,
                "service.restart": self.restart,
                "file.directory_exists": mock.Mock(spec=salt.modules.file.directory_exists,
                                                   side_effect=lambda path: self.has_data),
                "file.file_exists": mock.Mock(spec=salt.modules.file.file_exists,
                                              side_effect=lambda path: self.has_certs),
            },
            "__utils__": dict(real_utils(), **{"etcd_membership.probe_peers": self.probe_peers}),
        }


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setattr(etcd_service, "POLL_SECONDS", 0.01)


@pytest.fixture
def cluster(monkeypatch):
    found = Cluster()
    patch_connect(monkeypatch, found)
    return found


@pytest.fixture
def minion(cluster):
    return Minion(cluster)


@pytest.fixture
def configure_loader_modules(minion):
    return {etcd_service: minion.dunders()}


@pytest.fixture(params=[False, True], ids=["applied", "test"])
def testmode(request):
    with mock.patch.dict(etcd_service.__opts__, {"test": request.param}):
        yield request.param


# -- running ------------------------------------------------------------------------------------------


def test_a_stopped_member_is_started_enabled_and_waited_for(cluster, minion, testmode):
    cluster.down = {"a1"}
    minion.running = False
    minion.enabled.return_value = False
    ret = etcd_service.running("etcd")
    assert ret["changes"] == {"started": True, "enabled": True}
    if testmode:
        assert ret["result"] is None and ret["comment"] == "Service etcd would be enabled and started"
        minion.start.assert_not_called()
        minion.enable.assert_not_called()
        return
    assert ret["result"] is True, ret
    # --no-block: the state's own wait has the clear failure
    assert ("start", URLS[0], True) in cluster.events
    minion.enable.assert_called_once_with("etcd")
    assert ret["comment"] == ("Service etcd has been enabled and started; member etcd-1 is healthy "
                              "with a leader")


def test_a_running_healthy_member_is_left_alone(minion, testmode):
    ret = etcd_service.running("etcd")
    assert ret["result"] is True and ret["changes"] == {}
    minion.start.assert_not_called()
    minion.restart.assert_not_called()


def test_a_member_that_never_becomes_healthy_fails_saying_why(cluster, minion):
    cluster.down = {"a1", "a2", "a3"}
    minion.running = False
    minion.start.side_effect = lambda name, no_block=False: True
    ret = etcd_service.running("etcd", timeout=0.05)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"] == ("member etcd-1 is not healthy with a leader after 0.05 s: "
                              "https://10.77.0.11:2379: Connection refused")


def test_a_member_without_a_leader_is_not_healthy(cluster, minion):
    cluster.leader = "0"
    ret = etcd_service.running("etcd", timeout=0.05)
    assert ret["result"] is False
    assert ret["comment"].endswith("after 0.05 s: no leader known")


def test_a_member_with_data_the_cluster_removed_is_never_started(cluster, minion):
    minion.running, minion.has_data = False, True
    minion.peers = {"h2": answer([member(2), member(3)]), "h3": REFUSED}
    ret = etcd_service.running("etcd")
    assert ret["result"] is False
    assert ret["comment"].startswith("member etcd-1 holds data, but cluster c1 runs without it")
    minion.start.assert_not_called()


def test_a_member_without_data_the_cluster_does_not_list_is_never_started(cluster, minion, testmode):
    """An add_member rolled back while the host's highstate was still on its way here: etcd
    would restart in a loop on "member count is unequal"."""
    minion.running = False
    minion.peers = {"h2": answer([member(2), member(3)]), "h3": REFUSED}
    ret = etcd_service.running("etcd")
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"] == (
        "member etcd-1 is not in the membership of cluster c1 (never added, or its add was "
        "rolled back): not started. Add it: salt-run state.orchestrate etcd.add_member "
        "pillar='{\"etcd_member\": \"h1\"}'")
    minion.start.assert_not_called()
    minion.enable.assert_not_called()


def test_a_member_without_data_is_started_when_no_peer_answers_or_it_is_listed(cluster, minion):
    minion.running = False
    cluster.down = {"a1"}
    minion.peers = {"h2": REFUSED, "h3": {"error": "timed out"}}
    assert etcd_service.running("etcd")["result"] is True
    minion.running = False
    minion.peers = {"h2": answer([member(1), member(2), member(3)]), "h3": REFUSED}
    assert etcd_service.running("etcd")["result"] is True
    assert minion.start.call_count == 2


def test_a_dry_run_on_a_fresh_host_predicts_the_start_without_asking_the_peers(minion):
    """test=True before the certificates exist: nothing to ask the peers with."""
    minion.running, minion.has_certs = False, False
    with mock.patch.dict(etcd_service.__opts__, {"test": True}):
        ret = etcd_service.running("etcd")
    assert ret["result"] is None and ret["changes"] == {"started": True}
    minion.probe_peers.assert_not_called()


def test_a_member_with_data_the_cluster_still_lists_is_started(cluster, minion):
    minion.running, minion.has_data = False, True
    cluster.down = {"a1"}
    minion.peers = {"h2": answer([member(1), member(2), member(3)]), "h3": REFUSED}
    assert etcd_service.running("etcd")["result"] is True
    minion.start.assert_called_once_with("etcd", no_block=True)


# -- restart after a change ----------------------------------------------------------------------


def test_a_change_restarts_under_the_cluster_lock_and_waits_before_releasing(cluster, testmode):
    ret = etcd_service.mod_watch("etcd", sfun="running")
    assert ret["changes"] == {"restarted": True}
    if testmode:
        assert ret["result"] is None
        assert ret["comment"] == "Service etcd would be restarted (member etcd-1, one member at a time)"
        assert cluster.events == []
        return
    assert ret["result"] is True, ret
    assert cluster.events == [("locked", LOCK), ("down", URLS[0]), ("up", URLS[0]), ("unlocked", LOCK)]
    # the lock lives on while this member is down: its own endpoint is asked last
    assert cluster.lock_endpoints == [[URLS[1], URLS[2], URLS[0]]]


def test_a_change_is_not_applied_while_the_cluster_is_unhealthy(cluster, minion, testmode):
    cluster.down = {"a3"}
    ret = etcd_service.mod_watch("etcd", sfun="running", timeout=0.05)
    minion.restart.assert_not_called()
    assert cluster.events == []
    if testmode:
        assert ret["result"] is None
        return
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("cluster etcd is not healthy, so member etcd-1 is not restarted after 0.05 s")
    assert "etcd-3: https://10.77.0.13:2379: Connection refused" in ret["comment"]


def test_a_change_is_not_applied_to_a_split_cluster(cluster, minion):
    cluster.foreign[URLS[2]] = dict(status(3, leader="b3", cluster_id="c2"), id="b3")
    ret = etcd_service.mod_watch("etcd", sfun="running", timeout=0.05)
    assert ret["result"] is False and "SPLIT" in ret["comment"]
    minion.restart.assert_not_called()


def test_a_change_on_a_stopped_member_just_starts_it_without_the_lock(cluster, minion):
    cluster.down = {"a1"}
    minion.running = False
    ret = etcd_service.mod_watch("etcd", sfun="running")
    assert ret["result"] is True and ret["changes"] == {"started": True}
    assert cluster.events == [("start", URLS[0], True)]


def test_a_single_member_cluster_restarts_without_a_lock(monkeypatch):
    cluster = Cluster(members=1)
    patch_connect(monkeypatch, cluster)
    minion = Minion(cluster, etcd_pillar=pillar(members=1))
    for name, value in minion.dunders().items():
        monkeypatch.setattr(etcd_service, name, value, raising=False)
    ret = etcd_service.mod_watch("etcd", sfun="running")
    assert ret["result"] is True
    assert cluster.events == [("down", URLS[0]), ("up", URLS[0])]


def test_a_lock_lost_before_the_restart_restarts_nothing(cluster, minion):
    cluster.lost = True
    ret = etcd_service.mod_watch("etcd", sfun="running")
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"] == "lock {} is lost: its lease 7 expired".format(LOCK)
    minion.restart.assert_not_called()


def test_a_lock_held_by_another_member_too_long_fails_naming_it(cluster, minion):
    cluster.holder = "h2:4242:x"
    ret = etcd_service.mod_watch("etcd", sfun="running", lock_wait=0)
    assert ret["result"] is False and "held by h2:4242:x" in ret["comment"]
    minion.restart.assert_not_called()


def test_a_failed_restart_fails_the_state(cluster, minion):
    minion.restart.side_effect = lambda name, no_block=False: False
    ret = etcd_service.mod_watch("etcd", sfun="running")
    assert (ret["result"], ret["comment"]) == (False, "systemctl restart etcd failed")


def test_members_applying_a_change_at_once_go_down_one_at_a_time(monkeypatch):
    cluster = Cluster(restart_seconds=0.05)
    patch_connect(monkeypatch, cluster)
    results = {}
    all_loaded = threading.Barrier(3)

    def apply_on(seq):
        # each minion loads its own copy of the state module, as each salt-minion does
        spec = importlib.util.find_spec("etcd_service")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.POLL_SECONDS = 0.01
        for name, value in Minion(cluster, seq=seq).dunders().items():
            setattr(module, name, value)
        all_loaded.wait()
        results[seq] = module.mod_watch("etcd", sfun="running")

    threads = [threading.Thread(target=apply_on, args=(seq,)) for seq in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(results[seq]["result"] is True for seq in (1, 2, 3)), results
    assert cluster.max_down == 1
    downs = [event for event in cluster.events if event[0] == "down"]
    assert sorted(url for _, url in downs) == URLS

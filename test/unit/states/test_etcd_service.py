"""
etcd_service with systemd and etcd faked: when it starts, when it restarts, in which order
it locks, restarts and waits, and that members applying a change at once go down one by one.
The real thing runs in test/integration/test_highstate.py.
"""

import contextlib
import importlib.util
import threading
import time
from unittest.mock import Mock

import pytest
import salt.modules.systemd_service
from salt.exceptions import CommandExecutionError

import etcd_service

URLS = ["https://10.77.0.11:2379", "https://10.77.0.12:2379", "https://10.77.0.13:2379"]


def settings_of(minion_index, member_count=3):
    return {
        "name": "etcd",
        "member_name": "etcd-{}".format(minion_index + 1),
        "client_url": URLS[minion_index],
        "endpoints": URLS[:member_count],
        "members": {"h{}".format(i + 1): {} for i in range(member_count)},
    }


class FakeCluster:
    """
    Three members' etcd processes: which are up, what happened in which order, and a
    restart lock shared by every client (as the real one lives in etcd).
    """

    def __init__(self, up=(True, True, True), restart_seconds=0.0):
        self.up = dict(zip(URLS, up))
        self.restart_seconds = restart_seconds
        self.events = []
        self.lock_endpoints = []
        self._lock = threading.Lock()
        self.max_down = 0
        self.guard = threading.Lock()

    def record(self, event):
        with self.guard:
            self.events.append(event)
            self.max_down = max(self.max_down, sum(1 for ok in self.up.values() if not ok))

    def cluster_health(self, **_):
        sick = {url: {"healthy": False, "error": "connection refused"} for url, ok in self.up.items() if not ok}
        # an answer takes time over the network, and is already old when it arrives
        time.sleep(self.restart_seconds / 5)
        return {"healthy": not sick, "error": None, "members": sick, "alarms": []}

    def restart(self, url):
        with self.guard:
            self.up[url] = False
        self.record(("down", url))
        time.sleep(self.restart_seconds)
        with self.guard:
            self.up[url] = True
        self.record(("up", url))

    def connect(self, endpoints, **_):
        cluster = self

        class Client:
            def health(self, endpoint):
                ok = cluster.up[endpoint]
                return {"endpoint": endpoint, "healthy": ok, "error": None if ok else "refused"}

            def status(self, endpoint):
                if not cluster.up[endpoint]:
                    raise CommandExecutionError("refused")
                return {"leader": "8e9e05c52164694d"}

            @contextlib.contextmanager
            def lock(self, name, ttl=60, wait=300):
                cluster.lock_endpoints.append(list(endpoints))
                with cluster._lock:
                    cluster.record(("locked", name))
                    try:
                        yield "holder"
                    finally:
                        cluster.record(("unlocked", name))

        return Client()


def make_globals(cluster, minion_index=0, running=True, enabled=True, member_count=3):
    """The dunders of one minion, its service calls recorded on ``cluster``."""
    url = URLS[minion_index]
    state = {"running": running}

    def start(name, no_block=False):
        cluster.record(("start", url, no_block))
        state["running"] = True
        cluster.up[url] = True
        return True

    def restart(name, no_block=None):
        cluster.restart(url)
        return True

    return {
        "__opts__": {"test": False, "id": "h{}".format(minion_index + 1)},
        "__salt__": {
            "etcd_cluster.settings": lambda: settings_of(minion_index, member_count),
            "etcd_cluster.health": Mock(side_effect=cluster.cluster_health),
            "service.status": Mock(spec=salt.modules.systemd_service.status, side_effect=lambda name: state["running"]),
            "service.enabled": Mock(spec=salt.modules.systemd_service.enabled, return_value=enabled),
            "service.enable": Mock(spec=salt.modules.systemd_service.enable, return_value=True),
            "service.start": Mock(spec=salt.modules.systemd_service.start, side_effect=start),
            "service.restart": Mock(spec=salt.modules.systemd_service.restart, side_effect=restart),
        },
        "__utils__": {
            "etcd_client.connect": cluster.connect,
            "etcd_pillar.client_tls_files": lambda: {"ca_file": "ca", "cert_file": "c", "key_file": "k"},
        },
    }


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setattr(etcd_service, "POLL_SECONDS", 0.01)


@pytest.fixture
def cluster():
    return FakeCluster()


def use(dunders):
    for name, value in dunders.items():
        setattr(etcd_service, name, value)
    return dunders


def test_stopped_member_is_started_enabled_and_waited_for():
    cluster = FakeCluster(up=(False, True, True))
    dunders = use(make_globals(cluster, running=False, enabled=False))
    ret = etcd_service.running("etcd")
    assert ret["result"] is True, ret
    assert ret["changes"] == {"started": True, "enabled": True}
    assert ("start", URLS[0], True) in cluster.events
    dunders["__salt__"]["service.enable"].assert_called_once_with("etcd")
    assert "healthy with a leader" in ret["comment"]


def test_running_healthy_member_is_left_alone(cluster):
    dunders = use(make_globals(cluster))
    ret = etcd_service.running("etcd")
    assert ret["result"] is True and ret["changes"] == {}
    dunders["__salt__"]["service.start"].assert_not_called()
    dunders["__salt__"]["service.restart"].assert_not_called()


def test_member_that_never_becomes_healthy_fails_saying_why():
    cluster = FakeCluster(up=(False, False, False))
    dunders = make_globals(cluster, running=False)
    dunders["__salt__"]["service.start"].side_effect = lambda name, no_block=False: True
    use(dunders)
    ret = etcd_service.running("etcd", timeout=0.05)
    assert ret["result"] is False
    assert ret["comment"] == "member etcd-1 is not healthy with a leader after 0.05 s: refused"


def test_test_mode_predicts_the_start_and_starts_nothing():
    cluster = FakeCluster(up=(False, True, True))
    dunders = use(make_globals(cluster, running=False))
    dunders["__opts__"]["test"] = True
    ret = etcd_service.running("etcd")
    assert ret["result"] is None and ret["changes"] == {"started": True}
    dunders["__salt__"]["service.start"].assert_not_called()


def test_change_restarts_under_the_cluster_lock_and_waits_before_releasing(cluster):
    use(make_globals(cluster))
    ret = etcd_service.mod_watch("etcd", sfun="running")
    assert ret["result"] is True, ret
    assert ret["changes"] == {"restarted": True}
    assert cluster.events == [
        ("locked", "restart/etcd"),
        ("down", URLS[0]),
        ("up", URLS[0]),
        ("unlocked", "restart/etcd"),
    ]
    # the lock lives on while this member is down: its own endpoint is asked last
    assert cluster.lock_endpoints == [[URLS[1], URLS[2], URLS[0]]]


def test_change_is_not_applied_while_the_cluster_is_unhealthy():
    cluster = FakeCluster(up=(True, True, False))
    dunders = use(make_globals(cluster))
    ret = etcd_service.mod_watch("etcd", sfun="running", timeout=0.05)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("cluster etcd is not healthy, so member etcd-1 is not restarted")
    assert "connection refused" in ret["comment"]
    dunders["__salt__"]["service.restart"].assert_not_called()
    assert cluster.events == []


def test_change_on_a_stopped_member_just_starts_it_without_the_lock():
    cluster = FakeCluster(up=(False, False, False))
    use(make_globals(cluster, running=False))
    for url in URLS[1:]:
        cluster.up[url] = True
    ret = etcd_service.mod_watch("etcd", sfun="running")
    assert ret["result"] is True and ret["changes"] == {"started": True}
    assert cluster.events == [("start", URLS[0], True)]


def test_change_in_test_mode_predicts_a_restart_and_restarts_nothing(cluster):
    dunders = use(make_globals(cluster))
    dunders["__opts__"]["test"] = True
    ret = etcd_service.mod_watch("etcd", sfun="running")
    assert ret["result"] is None and ret["changes"] == {"restarted": True}
    assert cluster.events == []


def test_single_member_cluster_restarts_without_a_lock():
    cluster = FakeCluster()
    use(make_globals(cluster, member_count=1))
    ret = etcd_service.mod_watch("etcd", sfun="running")
    assert ret["result"] is True
    assert cluster.events == [("down", URLS[0]), ("up", URLS[0])]


def test_members_applying_a_change_at_once_go_down_one_at_a_time():
    cluster = FakeCluster(restart_seconds=0.05)
    results = {}
    all_loaded = threading.Barrier(3)

    def apply_on(index):
        # each minion loads its own copy of the state module, as each salt-minion does
        spec = importlib.util.find_spec("etcd_service")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.POLL_SECONDS = 0.01
        for name, value in make_globals(cluster, minion_index=index).items():
            setattr(module, name, value)
        all_loaded.wait()
        results[index] = module.mod_watch("etcd", sfun="running")

    threads = [threading.Thread(target=apply_on, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(results[i]["result"] is True for i in range(3)), results
    assert cluster.max_down == 1
    downs = [event for event in cluster.events if event[0] == "down"]
    assert sorted(url for _, url in downs) == URLS

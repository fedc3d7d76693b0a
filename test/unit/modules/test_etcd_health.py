"""
etcd_health.watch: the facts it reports of the cluster's health, and that it fires an event
on the bus when they change (and on the first look), never when they do not.
"""

from unittest.mock import Mock

import pytest
import salt.modules.event
from salt.exceptions import CommandExecutionError

import etcd_health
import etcd_settings
from etcd_fakes import pillar, real_utils

HEALTHY = {"healthy": True, "leader": "etcd-1", "alarms": [], "error": None,
           "members": {"etcd-1": {"healthy": True}, "etcd-2": {"healthy": True},
                       "etcd-3": {"healthy": True}}}


@pytest.fixture
def world(tmp_path):
    class World:
        summary = dict(HEALTHY)
        settings = etcd_settings.member_settings(pillar(), "h1")
        send = Mock(spec=salt.modules.event.send, return_value=True)

        def health(self):
            if isinstance(self.summary, Exception):
                raise self.summary
            return self.summary

    found = World()
    for key in etcd_health.CERTIFICATES:
        found.settings["paths"][key] = str(tmp_path / "none.crt")
    found.settings["pki"]["days_remaining"] = 30
    return found


@pytest.fixture
def configure_loader_modules(world, tmp_path):
    return {etcd_health: {
        "__opts__": {"id": "h1", "cachedir": str(tmp_path / "cache")},
        "__salt__": {"etcd_cluster.settings": lambda: world.settings,
                     "etcd_cluster.health": world.health, "event.send": world.send},
        "__utils__": real_utils(),
    }}


def fired(world):
    return [(c.args[0], c.args[1]["facts"]) for c in world.send.call_args_list]


def test_the_first_look_fires_and_an_unchanged_cluster_fires_nothing_more(world):
    first = etcd_health.watch()
    assert first["fired"] == "etcd/etcd/health/healthy"
    assert first["facts"]["healthy"] is True and first["facts"]["leader"] == "etcd-1"
    assert etcd_health.watch() == {"fired": None, "facts": first["facts"]}
    assert len(fired(world)) == 1


def test_a_member_going_down_and_coming_back_fires_each_change(world):
    etcd_health.watch()
    world.summary = dict(HEALTHY, healthy=False, members=dict(
        HEALTHY["members"], **{"etcd-3": {"healthy": False, "error": "connection refused"}}))
    down = etcd_health.watch()
    assert down["fired"] == "etcd/etcd/health/unhealthy"
    assert down["facts"]["members_down"] == ["etcd-3"]
    sent = world.send.call_args.args[1]
    assert sent["previous"]["members_down"] == [] and sent["minion"] == "h1"
    world.summary = dict(HEALTHY)
    assert etcd_health.watch()["fired"] == "etcd/etcd/health/healthy"


def test_an_etcd_that_does_not_answer_is_an_unhealthy_event_with_the_reason(world):
    world.summary = CommandExecutionError("no etcd endpoint answered")
    ret = etcd_health.watch()
    assert ret["fired"] == "etcd/etcd/health/unhealthy"
    assert ret["facts"]["error"] == "no etcd endpoint answered"


def test_an_event_that_was_not_sent_fails_and_is_tried_again(world):
    world.send.return_value = False
    with pytest.raises(CommandExecutionError, match="was not sent"):
        etcd_health.watch()
    world.send.return_value = True
    assert etcd_health.watch()["fired"] == "etcd/etcd/health/healthy"


def test_a_minion_in_no_cluster_watches_nothing(world):
    world.settings = {}
    assert etcd_health.watch() == {}
    world.send.assert_not_called()

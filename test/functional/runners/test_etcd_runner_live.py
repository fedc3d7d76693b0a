"""
The etcd runner, loaded by Salt's runner loader from the checkout as the master loads it,
against a real 3-member TLS cluster on loopback. Only two edges are replaced: the pillar
(the master would compile it for the minion) and the calls to minions (run here, on this
machine, as the minion would run them).
"""

import os
import time
from unittest import mock

import pytest
from local_etcd import LOOPBACK_NET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class LoopbackUtils:
    """The runner's __utils__, but pillar validation lets this cluster's loopback
    addresses pass (a real pillar is refused them: peers on other hosts cannot dial them)."""

    def __init__(self, utils):
        self.utils = utils

    def __contains__(self, name):
        return name in self.utils

    def __getitem__(self, name):
        function = self.utils[name]
        if name != "etcd_validate.validate":
            return function

        def validate(*args, **kwargs):
            errors, warnings = function(*args, **kwargs)
            return [e for e in errors if "loopback" not in e], warnings

        return validate


@pytest.fixture
def runner(etcd_cluster, tmp_path):
    import salt.config
    import salt.loader

    opts = salt.config.master_config(None)
    opts.update({
        "cachedir": str(tmp_path / "cache"),
        "extension_modules": str(tmp_path / "extmods"),
        "runner_dirs": [os.path.join(REPO, "_runners")],
        "module_dirs": [os.path.join(REPO, "_modules")],
        "utils_dirs": [os.path.join(REPO, "_utils")],
        "etcd_admin_tls": etcd_cluster.tls,
    })
    loader = salt.loader.runner(opts, utils=salt.loader.utils(opts))
    data_dirs = {}

    def pillar(minion=None):
        return pillar.value

    pillar.value = etcd_cluster.pillar()

    def on_minion(minion, function, *args, **kwargs):
        """The few minion functions the runner calls, run on the minion's directories here."""
        data_dir = data_dirs.get(minion)
        if function == "test.ping":
            return True
        if function == "etcd_cluster.local_state":
            entries = sorted(os.listdir(data_dir)) if data_dir and os.path.isdir(data_dir) else []
            return {"entries": entries, "data": "member" in entries, "data_problem": None}
        raise AssertionError("unexpected minion call {} {}".format(function, args))

    glob = loader["etcd.status"].__globals__
    utils = LoopbackUtils(glob["__utils__"])
    import etcd_steps  # the runner files' shared edges, imported by them from _runners

    def steps_pillar(self, minion=None):
        return pillar()

    def steps_on_minion(self, minion, function, *args, timeout=None, expect=None, **kwargs):
        return on_minion.current(minion, function, *args, **kwargs)

    on_minion.current = on_minion
    with mock.patch.dict(glob, {"__utils__": utils}), \
            mock.patch.object(etcd_steps.Steps, "etcd_pillar", steps_pillar), \
            mock.patch.object(etcd_steps.Steps, "on_minion", steps_on_minion):
        yield type("Runner", (), {
            "call": staticmethod(lambda f, *a, **k: loader["etcd." + f](*a, **k)),
            "pillar": pillar, "data_dirs": data_dirs, "loader_globals": glob,
            "minion_calls": on_minion})


def with_member(etcd_cluster, runner, new):
    """Pillar with ``new`` (a local member, minion m<seq>) added; its data dir known."""
    pillar = etcd_cluster.pillar(etcd_cluster.members)
    runner.pillar.value = pillar
    runner.data_dirs["m{}".format(new.seq)] = new.data_dir
    return "m{}".format(new.seq)


def test_status_prints_every_member_like_etcdctl(runner):
    text = runner.call("status")
    assert text.startswith("cluster test: healthy")
    lines = text.splitlines()
    assert "ENDPOINT" in lines[2] and "IS LEARNER" in lines[2]
    assert sum(1 for line in lines if "test-" in line
               and "https://{}.1".format(LOOPBACK_NET) in line) == 3
    assert sum(1 for line in lines if " true " in line and "test-" in line) >= 1  # a leader
    assert "learners: none" in text and "alarms: none" in text
    # certificates: server and peer of each member, and the admin one
    assert text.count(" server ") == 3 and text.count(" peer ") == 3
    assert "admin client" in text


def test_add_steps_join_a_member_and_promote_it_at_once(runner, etcd_cluster):
    new = etcd_cluster.new_member()
    minion = with_member(etcd_cluster, runner, new)
    pre = runner.call("add_preflight", minion)
    assert (pre["result"], pre["plan"]) == (True, "add"), pre
    added = runner.call("add_learner", minion)
    assert added["result"] is True and added["added"] is True, added
    again = runner.call("add_learner", minion)
    assert (again["added"], again["id"]) == (False, added["id"])
    # interrupted here: a re-run resumes our learner (the data dir is still empty)
    assert runner.call("add_preflight", minion)["plan"] == "resume"
    etcd_cluster.start(new, added["initial_cluster"], state="existing")
    started = time.monotonic()
    promoted = runner.call("promote", minion)
    print("learner start -> promoted: {:.2f} s".format(time.monotonic() - started))
    assert promoted["result"] is True and promoted["promoted"] is True, promoted
    assert runner.call("health", cluster="test")["health"]["quorum"]["voters"] == 4
    # done: preflight of the same member says so, and its data dir is its own
    assert runner.call("add_preflight", minion)["plan"] == "done"


def test_add_preflight_refuses_a_second_learner(runner, etcd_cluster):
    first = etcd_cluster.new_member()
    with_member(etcd_cluster, runner, first)
    runner.call("add_learner", "m4")
    second = etcd_cluster.new_member()
    minion = with_member(etcd_cluster, runner, second)
    os.makedirs(second.data_dir, exist_ok=True)
    ret = runner.call("add_preflight", minion)
    assert ret["result"] is False
    # the pending learner of another host is refused, never removed (it never started here)
    assert "was added but never started" in ret["Error"] and first.peer_url in ret["Error"]
    assert "etcd.remove_learner" in ret["Error"]


def test_promote_at_the_deadline_removes_a_learner_that_never_started(runner, etcd_cluster):
    new = etcd_cluster.new_member()
    minion = with_member(etcd_cluster, runner, new)
    runner.call("add_learner", minion)
    calls = []  # the host's side of the roll-back (stop etcd, wipe its data dir)

    def on_minion(minion_id, function, *args, **kwargs):
        calls.append((minion_id, function, kwargs))
        return {"done": ["etcd stopped and disabled"]}

    runner.minion_calls.current = on_minion
    ret = runner.call("promote", minion, deadline=2)
    assert ret["result"] is False
    assert "did not catch up within 2 s" in ret["Error"]
    assert "the learner has been removed from the cluster" in ret["Error"]
    assert calls == [(minion, "etcd_cluster.purge", {"mode": "retire"})]
    health = runner.call("health", cluster="test")["health"]
    assert health["learners"] == [] and health["quorum"]["voters"] == 3


def test_remove_steps_refuse_2_to_1_and_remove_a_leader_safely(runner, etcd_cluster):
    runner.data_dirs.update({"m{}".format(m.seq): m.data_dir for m in etcd_cluster.members})
    leader = runner.call("health", cluster="test")["health"]["leader"]
    minion = "m" + leader.split("-")[1]
    assert runner.call("remove_preflight", minion)["result"] is True
    moved = runner.call("move_leader_off", minion)
    assert moved["moved"] is True, moved
    removed = runner.call("member_remove", minion)
    assert removed["result"] is True, removed
    etcd_cluster.stop(etcd_cluster.member_named(leader))
    left = runner.call("health", cluster="test", exclude=minion)
    assert left["result"] is True and left["health"]["quorum"]["voters"] == 2, left
    # 2 -> 1 is refused before anything changes
    other = next("m{}".format(m.seq) for m in etcd_cluster.members if m.name != leader)
    refused = runner.call("remove_preflight", other)
    assert refused["result"] is False and "2-member cluster is unsafe" in refused["Error"]

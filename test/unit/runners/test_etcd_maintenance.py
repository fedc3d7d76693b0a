"""
etcd_maintenance's pure decision: which members a defragmentation takes, in which order, and
which it skips and why. The drills (defrag under a writer, NOSPACE) run on the lab
(test/integration/test_maintenance.py).
"""

import etcd_maintenance
from etcd_fakes import member

MB = 1000 * 1000


def status(size, in_use):
    return {"db_size": size, "db_size_in_use": in_use}


def plan(statuses, leader="a1", ratio=0.5, floor=100 * MB, force=False, members=None):
    members = members or [member(1), member(2), member(3)]
    return [(m["name"], why) for m, _, why in etcd_maintenance.defrag_plan(
        members, statuses, leader, ratio, floor, force)]


def test_followers_go_first_and_the_leader_last():
    statuses = {"a1": status(400 * MB, 100 * MB), "a2": status(400 * MB, 100 * MB),
                "a3": status(400 * MB, 100 * MB)}
    assert plan(statuses, leader="a2") == [("etcd-1", None), ("etcd-3", None), ("etcd-2", None)]


def test_a_member_mostly_in_use_or_small_is_skipped_saying_why():
    statuses = {"a1": status(400 * MB, 300 * MB), "a2": status(50 * MB, 1 * MB),
                "a3": status(400 * MB, 100 * MB)}
    found = dict(plan(statuses))
    assert found["etcd-1"] == "75% of its 400.00 MB in use (defrag_in_use_ratio 50%)"
    assert found["etcd-2"] == "db 50.00 MB is under defrag_min_bytes (100.00 MB)"
    assert found["etcd-3"] is None


def test_force_takes_every_voter_and_never_a_learner():
    members = [member(1), member(2), member(4, learner=True)]
    statuses = {"a1": status(1 * MB, 1 * MB), "a2": status(1 * MB, 1 * MB)}
    assert plan(statuses, force=True, members=members) == [("etcd-2", None), ("etcd-1", None)]

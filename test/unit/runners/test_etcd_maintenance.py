"""
etcd_maintenance's decisions: which members a defragmentation takes, in which order, which
it skips and why, and where it stops when the cluster is no longer healthy mid-run. The drills (defrag under a writer, NOSPACE) run on the lab
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


class Steps:
    """What _defragment is given: the health layer answers in turn (the last one repeats),
    the client defragments and reports sizes, the lock stays this operation's."""

    unhealthy = staticmethod(etcd_maintenance.etcd_steps.Steps.unhealthy)

    def __init__(self, healths):
        self.healths = list(healths)
        self.defragmented = []
        self.said = []

    def layer(self, name):
        if name == "health":
            return lambda client: self.healths.pop(0) if len(self.healths) > 1 else self.healths[0]
        assert name == "leader_status"
        return lambda client, members: {"id": "a1"}

    def client(self, etcd_pillar, settings, timeout=5):
        steps = self

        class Client:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def members(self):
                return [member(1), member(2), member(3)]

            def status(self, url):
                return status(400 * MB if url not in steps.defragmented else 10 * MB, 5 * MB)

            def defragment(self, url):
                steps.defragmented.append(url)

            def health(self, url):
                return {"healthy": True, "error": None}

        return Client()

    def progress(self, message):
        self.said.append(message)


class Lock:
    def check(self):
        pass


def health(down=()):
    members = {"etcd-{}".format(n): {"healthy": "etcd-{}".format(n) not in down,
                                     "error": "context deadline exceeded"
                                     if "etcd-{}".format(n) in down else None}
               for n in (1, 2, 3)}
    return {"healthy": not down, "quorum": {"ok": True}, "split": False, "alarms": [],
            "members": members, "error": None}


SETTINGS = {"name": "etcd", "defrag_in_use_ratio": 0.5, "defrag_min_bytes": 0}


def test_a_member_lost_mid_run_stops_it_before_the_next_saying_what_was_done():
    # healthy at the start and before etcd-3; etcd-2 freezes after etcd-3 is done: the
    # leader (etcd-1) is not defragmented while a follower is down (it would block the quorum)
    steps = Steps([health(), health(), health(down=["etcd-2"])])
    try:
        etcd_maintenance._defragment(steps, {}, SETTINGS, Lock(), force=False)
    except etcd_maintenance.StepFailed as exc:
        message = str(exc)
    else:
        raise AssertionError("defragmented with a member down")
    assert message.startswith("not defragmenting etcd-1 (leader): cluster etcd is not healthy "
                              "(etcd-2: context deadline exceeded): stopped there; done: "), message
    assert "etcd-2 (follower): 400.00 MB -> 10.00 MB" in message
    assert message.endswith("continue with: salt-run etcd.defrag")
    assert steps.defragmented == [member(n)["client_urls"][0] for n in (2, 3)]


def test_a_healthy_cluster_is_defragmented_whole_leader_last():
    steps = Steps([health()])
    done = etcd_maintenance._defragment(steps, {}, SETTINGS, Lock(), force=False)
    assert [line.split(":")[0] for line in done] == [
        "etcd-2 (follower)", "etcd-3 (follower)", "etcd-1 (leader)"]
    assert steps.defragmented == [member(n)["client_urls"][0] for n in (2, 3, 1)]

"""
The etcd_member state run by Salt's state system (``state.single``) on minion ``m1`` of a
real TLS cluster: test mode, adding a learner, promoting it once started, removing.
"""

import pytest


@pytest.fixture
def state(salt_minion, etcd_cluster):
    """``state("present", name=..., ...)``: the one state's return, through state.single."""

    def run(function, **kwargs):
        kwargs = dict(etcd_cluster.tls, **kwargs)
        result = salt_minion.modules["state.single"]("etcd_member." + function, **kwargs)
        (ret,) = result.values()
        return ret

    return run


def member_names(salt_minion, etcd_cluster):
    members = salt_minion.modules["etcd_cluster.members"](**etcd_cluster.tls)
    return {m["name"] or m["id"]: m["is_learner"] for m in members}


def test_present_adds_a_learner_then_promotes_it_once_started(salt_minion, etcd_cluster, state):
    new = etcd_cluster.new_member()
    predicted = state("present", name=new.name, peer_urls=new.peer_url, promote=False, test=True)
    assert predicted["result"] is None
    assert predicted["changes"] == {"membership": {"old": "absent", "new": "learner"}}
    assert len(member_names(salt_minion, etcd_cluster)) == 3

    added = state("present", name=new.name, peer_urls=new.peer_url, promote=False)
    assert added["result"] is True
    assert added["changes"]["membership"] == {"old": "absent", "new": "learner"}
    again = state("present", name=new.name, peer_urls=new.peer_url, promote=False)
    assert (again["result"], again["changes"]) == (True, {})

    etcd_cluster.start(new, added["changes"]["initial_cluster"], state="existing")
    promoted = state("present", name=new.name, peer_urls=new.peer_url)
    assert promoted["result"] is True, promoted["comment"]
    assert promoted["changes"]["membership"] == {"old": "learner", "new": "voter"}
    assert member_names(salt_minion, etcd_cluster)[new.name] is False
    done = state("present", name=new.name, peer_urls=new.peer_url)
    assert (done["result"], done["changes"]) == (True, {})


def test_present_that_cannot_promote_keeps_the_learner_and_says_so(salt_minion, etcd_cluster, state):
    new = etcd_cluster.new_member()
    ret = state("present", name=new.name, peer_urls=new.peer_url, timeout=2)
    assert ret["result"] is False
    assert "has not started" in ret["comment"]
    assert ret["changes"]["membership"]["old"] == "absent"
    assert len(member_names(salt_minion, etcd_cluster)) == 4


def test_absent_removes_and_refuses_two_to_one(salt_minion, etcd_cluster, state):
    predicted = state("absent", name="test-3", test=True)
    assert predicted["result"] is None
    assert "test-3" in member_names(salt_minion, etcd_cluster)

    removed = state("absent", name="test-3")
    assert removed["result"] is True
    assert removed["changes"]["membership"] == {"old": "voter", "new": "absent"}
    assert state("absent", name="test-3")["changes"] == {}

    refused = state("absent", name="test-2")
    assert refused["result"] is False
    assert refused["changes"] == {}
    assert "2-member cluster is unsafe" in refused["comment"]


@pytest.fixture(params=[True, False], ids=["test=True", "test=False"])
def testmode(request):
    """Each state test once predicting (test=True: nothing may change) and once for real."""
    return request.param


def test_present_adds_a_learner_or_predicts_it(salt_minion, etcd_cluster, state, testmode):
    new = etcd_cluster.new_member()
    ret = state("present", name=new.name, peer_urls=new.peer_url, promote=False, test=testmode)
    assert ret["changes"]["membership"] == {"old": "absent", "new": "learner"}
    names = member_names(salt_minion, etcd_cluster)
    if testmode:
        assert ret["result"] is None and len(names) == 3
    else:
        assert ret["result"] is True and len(names) == 4 and True in names.values()


def test_absent_removes_a_voter_or_predicts_it_and_refuses_two_to_one_in_both(
        salt_minion, etcd_cluster, state, testmode):
    ret = state("absent", name="test-3", test=testmode)
    assert ret["changes"]["membership"] == {"old": "voter", "new": "absent"}
    names = member_names(salt_minion, etcd_cluster)
    assert ("test-3" in names) is testmode
    assert ret["result"] is (None if testmode else True)
    if not testmode:
        refused = state("absent", name="test-2", test=True)  # predicted as it will be: refused
        assert refused["result"] is False and "2-member cluster is unsafe" in refused["comment"]

"""
etcd_data.purged over ``etcd_cluster.purge`` (a Mock specced on the real function; its rules
are tested in test/unit/modules/test_etcd_cluster.py): asked for a plan first, then run.
"""

from unittest import mock

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

import etcd_cluster
import etcd_data

PLAN = {"stop": True, "archive": "/var/lib/etcd/data", "delete_data": True, "delete_pki": True,
        "delete_files": ["/etc/etcd/etcd.conf.yml"]}
DONE = {"name": "etcd-1", "mode": "clean", "archive": "/var/lib/etcd/data.removed-1.tar.gz",
        "done": ["etcd stopped and disabled", "data dir /var/lib/etcd/data purged"], "notes": []}


@pytest.fixture
def purge():
    def answer(mode="clean", test=False):
        if test:
            return {"name": "etcd-1", "mode": mode, "test": True, "plan": dict(PLAN), "notes": []}
        return dict(DONE, mode=mode)

    return mock.Mock(spec=etcd_cluster.purge, side_effect=answer)


@pytest.fixture
def configure_loader_modules(purge):
    return {etcd_data: {"__salt__": {"etcd_cluster.purge": purge}, "__opts__": {"test": False}}}


@pytest.fixture(params=[False, True], ids=["applied", "test"])
def testmode(request):
    with mock.patch.dict(etcd_data.__opts__, {"test": request.param}):
        yield request.param


def test_purged_plans_then_purges_and_says_what_was_done(purge, testmode):
    ret = etcd_data.purged("etcd member", mode="purge")
    if testmode:
        assert ret["result"] is None
        assert ret["changes"] == {"would": PLAN}
        assert ret["comment"] == "etcd member etcd-1 would be purged (purge)"
        purge.assert_called_once_with(mode="purge", test=True)
        return
    assert ret["result"] is True
    assert ret["changes"] == {"purged": DONE["done"], "archive": DONE["archive"]}
    assert ret["comment"].startswith("etcd member etcd-1 has been purged; etcd stopped and disabled")
    assert purge.call_args_list == [mock.call(mode="purge", test=True), mock.call(mode="purge")]


def test_purged_with_nothing_left_changes_nothing(purge, testmode):
    purge.side_effect = lambda mode="clean", test=False: {
        "name": "etcd-1", "plan": {"stop": False, "archive": None, "delete_data": False,
                                   "delete_pki": False, "delete_files": []}, "notes": []}
    ret = etcd_data.purged("etcd member")
    assert (ret["result"], ret["changes"]) == (True, {})
    assert ret["comment"] == "etcd member etcd-1 is purged already"
    purge.assert_called_once_with(mode="clean", test=True)


@pytest.mark.parametrize("error", [
    CommandExecutionError("etcd member etcd-1: cluster etcd has safeguard: true: etcd.clean purges nothing"),
    SaltInvocationError("mode: 'all': expected clean, retire or purge"),
])
def test_a_refusal_fails_the_state_without_changes(purge, testmode, error):
    purge.side_effect = error
    ret = etcd_data.purged("etcd member")
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"] == str(error)
    purge.assert_called_once()


def test_notes_are_shown_in_test_mode_too(purge):
    purge.side_effect = lambda mode="clean", test=False: {
        "name": "etcd-1", "plan": dict(PLAN), "notes": ["etcd-1 was still a voting member of cluster etcd"]}
    with mock.patch.dict(etcd_data.__opts__, {"test": True}):
        ret = etcd_data.purged("etcd member", mode="purge")
    assert ret["comment"].endswith("; etcd-1 was still a voting member of cluster etcd")

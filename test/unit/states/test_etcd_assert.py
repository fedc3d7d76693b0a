"""
etcd_assert.pillar_valid over the real validation: ``etcd_cluster.validate`` (the real
module function, its pillar from a Mock specced on ``config.get``) over ``etcd_validate``.
One failure with the whole report; it never changes anything, in test mode or not.
"""

from unittest import mock

import pytest
import salt.modules.config

import etcd_assert
import etcd_cluster
from etcd_fakes import pillar, real_utils

try:  # Salt 3008 masks pillar values (their repr); older lines hand plain dicts over
    from salt.utils.secret import REDACT_PLACEHOLDER, MaskedDict
except ImportError:
    REDACT_PLACEHOLDER = MaskedDict = None
masked_pillar = pytest.mark.skipif(MaskedDict is None, reason="Salt < 3008 has no masked pillar")


@pytest.fixture
def etcd_pillar():
    return pillar()


@pytest.fixture
def configure_loader_modules(etcd_pillar):
    config_get = mock.Mock(spec=salt.modules.config.get,
                           side_effect=lambda key, default="", **kw: etcd_pillar if key == "etcd" else default)
    return {
        etcd_assert: {"__salt__": {"etcd_cluster.validate": etcd_cluster.validate},
                      "__opts__": {"id": "h1", "test": False}},
        etcd_cluster: {"__salt__": {"config.get": config_get}, "__utils__": real_utils(),
                       "__opts__": {"id": "h1", "test": False}, "__context__": {}},
    }


@pytest.fixture(params=[False, True], ids=["applied", "test"])
def testmode(request):
    with mock.patch.dict(etcd_assert.__opts__, {"test": request.param}):
        yield request.param


def members(*seqs):
    return {"h{}".format(i + 1): {"seq": seq, "address": "10.77.0.{}".format(11 + i)} for i, seq in enumerate(seqs)}


def test_valid_pillar_passes_without_changes(testmode):
    assert etcd_assert.pillar_valid("pillar etcd") == {
        "name": "pillar etcd", "changes": {}, "result": True, "comment": "pillar etcd is valid"}


def test_every_problem_is_in_one_failure_once(etcd_pillar, testmode):
    etcd_pillar["clusters"]["etcd"].update(members=members(1, 1, "x"), init="fresh")
    ret = etcd_assert.pillar_valid("pillar etcd")
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("pillar etcd has 3 problem(s):\n- ")
    for problem in ("init: 'fresh'", "seq 1 is used by h1, h2", "h3:seq: 'x'"):
        assert ret["comment"].count(problem) == 1, ret["comment"]
    # Salt's "Additional info follows" would repeat every problem
    assert "Additional info" not in ret["comment"]


def test_warnings_pass_and_are_shown(etcd_pillar, testmode):
    etcd_pillar["clusters"]["etcd"]["members"] = members(1, 2)
    ret = etcd_assert.pillar_valid("pillar etcd")
    assert ret["result"] is True
    assert len(ret["warnings"]) == 1 and "2 members" in ret["warnings"][0]
    assert "1 warning(s)" in ret["comment"]


def test_warnings_are_shown_beside_the_problems(etcd_pillar):
    etcd_pillar["clusters"]["etcd"].update(members=members(1, 2), init="fresh")
    ret = etcd_assert.pillar_valid("pillar etcd")
    assert ret["result"] is False
    assert len(ret["warnings"]) == 1 and "2 members" in ret["warnings"][0]


def test_a_minion_in_no_cluster_fails_and_another_minion_may_be_checked(testmode):
    with mock.patch.dict(etcd_cluster.__opts__, {"id": "master"}):
        ret = etcd_assert.pillar_valid("pillar etcd")
        assert ret["result"] is False and "minion master is in no cluster" in ret["comment"]
        assert etcd_assert.pillar_valid("pillar etcd", minion_id="h2")["result"] is True


@masked_pillar
def test_the_problems_of_a_masked_pillar_show_the_values(etcd_pillar, configure_loader_modules):
    etcd_pillar["clusters"]["etcd"]["members"]["h2"]["seq"] = ["2"]
    masked = MaskedDict(etcd_pillar)
    with mock.patch.dict(etcd_cluster.__salt__, {"config.get": mock.Mock(
            spec=salt.modules.config.get, side_effect=lambda key, default="", **kw: masked)}):
        ret = etcd_assert.pillar_valid("pillar etcd")
    assert "etcd:clusters:etcd:members:h2:seq: ['2']: expected a positive integer" in ret["comment"]
    assert REDACT_PLACEHOLDER not in ret["comment"]

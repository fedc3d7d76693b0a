"""
etcd_assert.pillar_valid over the real validation (etcd_cluster.validate's contract: raise
naming every problem, or return the warnings): one failure with the whole report.
"""

import pytest
from salt.exceptions import CommandExecutionError

import etcd_assert
import etcd_pillar
PILLAR = {}


def validate(minion_id=None):
    """What etcd_cluster.validate does with the pillar."""
    errors, warnings = etcd_pillar.validate(PILLAR, minion_id=minion_id or "h1")
    if errors:
        raise CommandExecutionError(
            "pillar etcd has {} problem(s):\n- {}".format(len(errors), "\n- ".join(errors)),
            info={"errors": errors, "warnings": warnings},
        )
    return {"valid": True, "warnings": warnings}


@pytest.fixture
def configure_loader_modules():
    return {etcd_assert: {"__salt__": {"etcd_cluster.validate": validate}}}


def members(*seqs):
    return {"h{}".format(i + 1): {"seq": seq, "address": "10.77.0.{}".format(11 + i)} for i, seq in enumerate(seqs)}


def test_valid_pillar_passes_without_changes():
    PILLAR.clear()
    PILLAR.update({"clusters": {"etcd": {"members": members(1, 2, 3)}}})
    ret = etcd_assert.pillar_valid("pillar etcd")
    assert ret == {"name": "pillar etcd", "changes": {}, "result": True, "comment": "pillar etcd is valid"}


def test_every_problem_is_in_one_failure_once():
    PILLAR.clear()
    PILLAR.update({"clusters": {"etcd": {"members": members(1, 1, "x"), "init": "fresh"}}})
    ret = etcd_assert.pillar_valid("pillar etcd")
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("pillar etcd has 3 problem(s):")
    for problem in ("init: 'fresh'", "seq 1 is used by h1, h2", "h3:seq: 'x'"):
        assert ret["comment"].count(problem) == 1, ret["comment"]


def test_warnings_pass_and_are_shown():
    PILLAR.clear()
    PILLAR.update({"clusters": {"etcd": {"members": members(1, 2)}}})
    ret = etcd_assert.pillar_valid("pillar etcd")
    assert ret["result"] is True
    assert len(ret["warnings"]) == 1 and "2 members" in ret["warnings"][0]
    assert "1 warning(s)" in ret["comment"]

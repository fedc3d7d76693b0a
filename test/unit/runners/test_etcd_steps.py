"""
What the runner files share (``_runners/etcd_steps.py``): the step contract (a failure is
``{"Error": ..., "retcode": 1}`` and releases the operation lock this process holds, so a
failhard orchestration leaves nothing locked), and the operation lock of a step.
"""

import os
from unittest import mock

import pytest
import salt.client
from salt.exceptions import CommandExecutionError, SaltClientError, SaltInvocationError

import etcd_errors as errors
import etcd_operations
import etcd_steps
from etcd_fakes import pillar, real_utils
from lock_fakes import EtcdLocks

# the runner's __utils__, as a runner file hands it to its steps (etcd_steps.step reads it
# from the step's module)
__utils__ = real_utils()


@pytest.fixture(autouse=True)
def nothing_left_held():
    yield
    etcd_operations.end_all()
    etcd_operations._HELD.clear()


@pytest.fixture
def lock_dir(tmp_path):
    return str(tmp_path / "locks")


@etcd_steps.step
def failing_step(error):
    raise error


@etcd_steps.step
def passing_step():
    return etcd_steps.ok("done")


@pytest.mark.parametrize("error", [
    etcd_steps.StepFailed("refused"), etcd_steps.MinionSilent("refused"),
    CommandExecutionError("refused"), SaltInvocationError("refused"), errors.EtcdUnsafe("refused"),
])
def test_a_failing_step_releases_the_operation_of_the_process_and_says_so(lock_dir, error):
    etcd_operations.begin("etcd", "restore", lock_dir)
    assert failing_step(error) == {"Error": "refused (released the lock of restore)", "retcode": 1,
                                   "result": False}
    assert etcd_operations.current("etcd") is None
    # the next operation may begin: the lock file is free
    assert etcd_operations.begin("etcd", "snapshot", lock_dir).what == "snapshot"


def test_a_failing_step_without_an_operation_says_nothing_of_a_lock():
    assert failing_step(etcd_steps.StepFailed("refused"))["Error"] == "refused"


def test_a_passing_step_keeps_the_orchestrations_operation(lock_dir):
    running = etcd_operations.begin("etcd", "restore", lock_dir)
    assert passing_step() == {"result": True, "comment": "done"}
    assert etcd_operations.current("etcd") is running


@pytest.mark.parametrize("error", [OSError(98, "Address already in use"), KeyError("h9")])
def test_a_step_failing_with_any_exception_releases_the_operation(lock_dir, error):
    etcd_operations.begin("etcd", "restore", lock_dir)
    try:
        failing_step(error)
    except type(error):
        pass
    assert etcd_operations.current("etcd") is None


# -- the operation lock of a step --------------------------------------------------------------------


@pytest.fixture
def steps(tmp_path, connect, etcd):
    tls = {k: str(tmp_path / k) for k in ("ca_file", "cert_file", "key_file")}
    for path in tls.values():
        open(path, "w").close()
    opts = {"etcd_admin_tls": tls, "cachedir": str(tmp_path / "cache"), "conf_file": "/etc/salt/master"}
    return etcd_steps.Steps(opts, {}, __utils__)


def cluster_settings():
    return __utils__["etcd_settings.cluster_named"](pillar(), "etcd")


def test_a_step_holds_the_lock_in_etcd_when_the_cluster_answers(steps, etcd):
    locks = EtcdLocks()
    locks.wire(etcd.client)
    with steps.operation(pillar(), cluster_settings(), "snapshot") as operation:
        assert locks.held == {"operation/etcd": operation.holder}
        assert operation.notes == []
    assert locks.held == {} and etcd_operations.current("etcd") is None
    assert steps.lock_dir() == os.path.join(steps.opts["cachedir"], "etcd-formula", "locks")


def test_a_step_on_a_cluster_that_does_not_answer_is_locked_on_the_master_only(steps, etcd):
    locks = EtcdLocks()
    locks.wire(etcd.client)
    etcd.down = {"a1", "a2", "a3"}
    with steps.operation(pillar(), cluster_settings(), "recover") as operation:
        assert operation.notes == ["cluster etcd has no quorum to grant a lease: locked on this master only"]
    assert locks.calls == []
    etcd.client.close.assert_called()


def test_progress_is_an_event_for_salt_run_and_printed_in_an_orchestration(capsys):
    event = mock.Mock(spec=["fire_event"])
    etcd_steps.Steps({}, {}, __utils__, event).progress("restoring h1")
    event.fire_event.assert_called_once_with({"message": "restoring h1"}, "progress")
    assert capsys.readouterr().out == "[etcd] restoring h1\n"


def test_progress_under_salt_run_is_the_event_alone(capsys):
    event = mock.Mock(spec=["fire_event", "print_func"])
    etcd_steps.Steps({}, {}, __utils__, event).progress("restoring h1")
    event.fire_event.assert_called_once_with({"message": "restoring h1"}, "progress")
    assert capsys.readouterr().out == ""


# -- asking a minion -----------------------------------------------------------------------------------


@pytest.fixture
def answering(monkeypatch):
    """The minions' answers as LocalClient.cmd gives them (full_return): {minion: answer}."""
    found = {}
    local = mock.create_autospec(salt.client.LocalClient, instance=True)
    local.__enter__.return_value = local
    local.cmd.side_effect = lambda tgt, fun, **kwargs: {m: a for m, a in found.items() if m in tgt.split(",")}
    monkeypatch.setattr(salt.client, "get_local_client",
                        mock.Mock(spec=salt.client.get_local_client, return_value=local))
    return found


@pytest.fixture
def minion_steps():
    return etcd_steps.Steps({"conf_file": "/etc/salt/master"}, {}, __utils__)


def test_a_minions_string_answer_is_its_return_where_one_is_expected(answering, minion_steps):
    answering["h1"] = {"ret": "10.77.0.1", "retcode": 0}
    assert minion_steps.on_minion("h1", "config.get", "master_ip", expect=str) == "10.77.0.1"


@pytest.mark.parametrize("answer", [
    {"ret": "'etcd_cluster.restore' is not available.", "retcode": 0},
    {"ret": {"name": "etcd-1"}, "retcode": 1},
    {"ret": False, "retcode": 0},
])
def test_a_minion_answering_other_than_its_function_fails_the_step(answering, minion_steps, answer):
    answering["h1"] = answer
    with pytest.raises(etcd_steps.StepFailed, match="etcd_cluster.restore on h1 failed: ") as err:
        minion_steps.on_minion("h1", "etcd_cluster.restore", expect=dict)
    assert not isinstance(err.value, etcd_steps.MinionSilent)


def test_a_minion_that_does_not_return_is_silent(answering, minion_steps):
    answering["h1"] = {"ret": "Minion did not return. [No response]", "out": "no_return", "retcode": 254}
    with pytest.raises(etcd_steps.MinionSilent, match="minion h1 did not answer test.ping within 5 s"):
        minion_steps.on_minion("h1", "test.ping", timeout=5)


def test_a_publish_the_busy_master_did_not_take_is_tried_once_more(monkeypatch, answering, minion_steps):
    local = salt.client.get_local_client.return_value
    answer = local.cmd.side_effect
    calls = []

    def busy_once(tgt, fun, **kwargs):
        calls.append(fun)
        if len(calls) == 1:
            raise SaltClientError("The salt master could not be contacted. Is master running?")
        return answer(tgt, fun, **kwargs)

    local.cmd.side_effect = busy_once
    monkeypatch.setattr(etcd_steps.time, "sleep", lambda seconds: None)
    answering["h1"] = {"ret": True, "retcode": 0}
    assert minion_steps.on_minion("h1", "test.ping") is True
    assert calls == ["test.ping", "test.ping"]


def test_a_publish_refused_twice_fails_the_step_saying_so(monkeypatch, answering, minion_steps):
    local = salt.client.get_local_client.return_value
    local.cmd.side_effect = SaltClientError("The salt master could not be contacted.")
    monkeypatch.setattr(etcd_steps.time, "sleep", lambda seconds: None)
    with pytest.raises(etcd_steps.StepFailed, match=(
            r"the master did not publish etcd_cluster.purge to h1 \(The salt master could not "
            r"be contacted.\), twice: the step may not have run; run it again")):
        minion_steps.on_minion("h1", "etcd_cluster.purge")
    assert local.cmd.call_count == 2

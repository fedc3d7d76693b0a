"""
The etcd client against a fake HTTP layer: the requests Session's ``post`` answers as etcd's
gateway does (JSON bodies, HTTP 503 for "unhealthy cluster", refused connections), so
etcd3gw's own error mapping runs for real.
"""

import json
from unittest import mock

import pytest
import requests
from salt.exceptions import CommandExecutionError

import etcd_client

A = "https://10.0.0.1:2379"
B = "https://10.0.0.2:2379"


def response(status, body):
    answer = requests.Response()
    answer.status_code = status
    answer.reason = {200: "OK", 400: "Bad Request", 503: "Service Unavailable"}.get(status, "")
    answer._content = json.dumps(body).encode()
    return answer


def refusal(message, code=9, status=400):
    """etcd's gateway error: gRPC status as JSON (14 Unavailable is HTTP 503)."""
    return response(status, {"error": message, "message": message, "code": code})


REFUSED = requests.exceptions.ConnectionError(
    "HTTPSConnectionPool(host='10.0.0.1', port=2379): Max retries exceeded "
    "(Caused by NewConnectionError('...: Failed to establish a new connection: "
    "[Errno 111] Connection refused'))"
)


class FakeGateway:
    """Answers per (endpoint, path): a list of responses/exceptions, used in turn."""

    def __init__(self):
        self.answers = {}
        self.calls = []

    def on(self, endpoint, path, *answers):
        self.answers.setdefault((endpoint, path), []).extend(answers)

    def post(self, url, json=None, data=None, timeout=None, **kwargs):
        endpoint, path = url.split("/v3/", 1)
        self.calls.append((endpoint, path, json))
        queue = self.answers.get((endpoint, path))
        if not queue:
            raise AssertionError("unexpected request {} {}".format(endpoint, path))
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def gateway():
    return FakeGateway()


@pytest.fixture
def client(gateway):
    client = etcd_client.connect([A, B], ca_file="/ca.crt", cert_file="/c.crt", key_file="/c.key")
    client.session.post = gateway.post
    return client


@pytest.fixture(autouse=True)
def no_sleep():
    with mock.patch.object(etcd_client.time, "sleep"):
        yield


MEMBERS = {
    "members": [
        {
            "ID": "10276657743932975437",
            "name": "etcd-1",
            "peerURLs": ["https://10.0.0.1:2380"],
            "clientURLs": [A],
        },
        {"ID": "5348", "peerURLs": ["https://10.0.0.4:2380"], "isLearner": True},
    ]
}


def test_session_ignores_the_environment_and_uses_the_cluster_ca_and_client_cert():
    client = etcd_client.connect([A], ca_file="/ca.crt", cert_file="/c.crt", key_file="/c.key")
    # REQUESTS_CA_BUNDLE would otherwise replace the cluster CA
    assert client.session.trust_env is False
    assert client.session.verify == "/ca.crt"
    assert client.session.cert == ("/c.crt", "/c.key")


def test_endpoints_may_be_a_comma_separated_string():
    assert etcd_client.connect(A + "," + B).endpoints == [A, B]


def test_members_have_hex_ids_like_etcdctl_and_say_whether_started(client, gateway):
    gateway.on(A, "cluster/member/list", response(200, MEMBERS))
    first, second = client.members()
    assert first == {
        "id": "8e9e05c52164694d",
        "name": "etcd-1",
        "peer_urls": ["https://10.0.0.1:2380"],
        "client_urls": [A],
        "is_learner": False,
        "started": True,
    }
    assert second["id"] == "14e4"
    assert second["is_learner"] is True
    assert second["started"] is False


def test_fails_over_to_the_next_endpoint_and_sticks_to_it(client, gateway):
    gateway.on(A, "cluster/member/list", REFUSED)
    gateway.on(B, "cluster/member/list", response(200, MEMBERS))
    assert len(client.members()) == 2
    assert len(client.members()) == 2
    assert [c[0] for c in gateway.calls] == [A, B, B]


def test_a_learner_endpoint_is_skipped(client, gateway):
    gateway.on(A, "kv/put", refusal("etcdserver: rpc not supported for learner"))
    gateway.on(B, "kv/put", response(200, {}))
    client.put("k", "v")
    assert [c[0] for c in gateway.calls] == [A, B]


def test_a_member_whose_gateway_cannot_reach_its_grpc_server_is_skipped(client, gateway):
    # etcd 3.5 mid-restart: its HTTP port answers, its own gRPC server does not yet
    dial = ('connection error: desc = "transport: Error while dialing: dial tcp '
            '10.0.0.1:2379: connect: connection refused"')
    gateway.on(A, "kv/put", refusal(dial, code=14, status=503))
    gateway.on(B, "kv/put", response(200, {}))
    client.put("k", "v")
    assert [c[0] for c in gateway.calls] == [A, B]


def test_unhealthy_cluster_is_etcds_refusal_not_a_dead_endpoint(client, gateway):
    # etcd3gw maps HTTP 503 to ConnectionFailedError; the body says it is etcd refusing
    gateway.on(A, "kv/put", refusal("etcdserver: unhealthy cluster", code=14, status=503))
    with pytest.raises(etcd_client.EtcdError) as err:
        client.put("k", "v")
    assert err.value.message == "etcdserver: unhealthy cluster"
    assert [c[0] for c in gateway.calls] == [A]


def test_no_endpoint_answering_names_each_with_its_failure(client, gateway):
    gateway.on(A, "cluster/member/list", REFUSED)
    gateway.on(B, "cluster/member/list", requests.exceptions.ConnectTimeout("timed out"))
    with pytest.raises(etcd_client.EtcdError) as err:
        client.members()
    assert str(err.value) == (
        "no etcd endpoint answered: {}: Connection refused; {}: timed out".format(A, B)
    )


def test_etcd_error_is_a_command_execution_error_carrying_etcds_message(client, gateway):
    gateway.on(A, "cluster/member/remove", refusal("etcdserver: member not found", code=5))
    with pytest.raises(CommandExecutionError) as err:
        client.member_remove("abc")
    assert str(err.value) == "etcdserver: member not found"
    assert err.value.code == 5


def test_membership_changes_retry_retryable_refusals(client, gateway):
    unhealthy = refusal("etcdserver: unhealthy cluster", code=14, status=503)
    added = {"member": {"ID": "255", "peerURLs": ["https://10.0.0.5:2380"], "isLearner": True}}
    gateway.on(A, "cluster/member/add", unhealthy, unhealthy, response(200, added))
    result = client.member_add(["https://10.0.0.5:2380"])
    assert result["member"]["id"] == "ff"
    assert client.last_retries["refusals"] == ["etcdserver: unhealthy cluster"] * 2
    body = gateway.calls[-1][2]
    assert body == {"peerURLs": ["https://10.0.0.5:2380"], "isLearner": True}


def test_retries_stop_at_the_deadline_with_etcds_message(client, gateway):
    gateway.on(A, "cluster/member/add", refusal("etcdserver: too many learner members in cluster"))
    with pytest.raises(etcd_client.EtcdError) as err:
        client.member_add("https://10.0.0.5:2380", deadline=0)
    assert err.value.message == "etcdserver: too many learner members in cluster"


def test_other_refusals_are_not_retried(client, gateway):
    gateway.on(A, "cluster/member/add", refusal("etcdserver: Peer URLs already exists"))
    with pytest.raises(etcd_client.EtcdError):
        client.member_add("https://10.0.0.5:2380", deadline=30)
    assert len(gateway.calls) == 1


def test_promote_sends_the_decimal_id_the_gateway_expects(client, gateway):
    gateway.on(A, "cluster/member/promote", response(200, {"members": []}))
    client.member_promote("8e9e05c52164694d")
    assert gateway.calls[0][2] == {"ID": "10276657743932975437"}


def test_a_member_id_that_is_not_hex_is_refused_before_asking_etcd(client, gateway):
    with pytest.raises(etcd_client.EtcdError, match="not a member ID"):
        client.member_remove("etcd-1")
    assert gateway.calls == []


def test_move_leader_asks_the_given_endpoint_only(client, gateway):
    gateway.on(B, "maintenance/transfer-leadership", refusal("etcdserver: not leader"))
    with pytest.raises(etcd_client.EtcdError, match="etcdserver: not leader"):
        client.move_leader("ff", B)
    assert gateway.calls == [(B, "maintenance/transfer-leadership", {"targetID": "255"})]


def test_health_of_a_learner_is_its_serializable_read(client, gateway):
    gateway.on(
        A,
        "kv/range",
        refusal("etcdserver: rpc not supported for learner"),
        response(200, {}),
    )
    gateway.on(A, "maintenance/alarm", refusal("etcdserver: rpc not supported for learner"))
    health = client.health(A)
    assert health["healthy"] is True, health["error"]
    assert health["is_learner"] is True
    assert gateway.calls[1][2]["serializable"] is True


def test_health_reports_an_alarm_as_unhealthy(client, gateway):
    gateway.on(A, "kv/range", response(200, {}))
    gateway.on(A, "maintenance/alarm", response(200, {"alarms": [{"memberID": "1", "alarm": "NOSPACE"}]}))
    health = client.health(A)
    assert (health["healthy"], health["error"]) == (False, "Active Alarm(s): NOSPACE")


def test_health_of_a_dead_member_is_an_answer_not_an_exception(client, gateway):
    gateway.on(A, "kv/range", REFUSED)
    health = client.health(A)
    assert health["healthy"] is False
    assert health["error"] == "{}: Connection refused".format(A)


def test_get_decodes_the_value_and_says_none_for_a_missing_key(client, gateway):
    gateway.on(A, "kv/range", response(200, {"kvs": [{"value": "MTA="}]}), response(200, {}))
    assert client.get("a") == "10"
    assert client.get("b") is None


def test_delete_counts_deleted_keys(client, gateway):
    gateway.on(A, "kv/deleterange", response(200, {"deleted": "1"}), response(200, {}))
    assert client.delete("a") == 1
    assert client.delete("a") == 0


def test_lock_times_out_naming_the_holder(client, gateway):
    gateway.on(A, "lease/grant", response(200, {"ID": "7", "TTL": "60"}))
    held = {"succeeded": False, "responses": [{"response_range": {"kvs": [{"value": "b3RoZXI="}]}}]}
    gateway.on(A, "kv/txn", response(200, held))
    gateway.on(A, "kv/lease/revoke", response(200, {}))
    with pytest.raises(etcd_client.EtcdError, match="held by other"):
        with client.lock("restart", wait=0):
            pytest.fail("the lock was held by another")
    # the lease taken for the attempt is given back
    assert gateway.calls[-1][1] == "kv/lease/revoke"


def test_virtual_says_why_when_etcd3gw_is_missing(monkeypatch):
    monkeypatch.setattr(etcd_client, "HAS_ETCD3GW", False)
    available, why = etcd_client.__virtual__()
    assert available is False
    assert "etcd3gw" in why

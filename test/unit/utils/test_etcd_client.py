"""
The etcd client against a fake HTTP layer: the requests Session's ``post`` answers as etcd's
gateway does (JSON bodies, HTTP 503 for "unhealthy cluster", refused connections), so
etcd3gw's own error mapping runs for real.
"""

import base64
import io
import json
import multiprocessing
import os
from unittest import mock

import pytest
import requests
from salt.exceptions import CommandExecutionError

import etcd_client
import etcd_errors as errors

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


def test_a_member_that_stops_under_its_gateway_is_skipped(client, gateway):
    # etcd 3.4 stopping (a rolling restart): its port answers the gateway's gRPC call as plain
    # HTTP; the request never reached etcd (seen by the CA rotation's writer)
    stopping = "OK: HTTP status code 200; transport: missing content-type field"
    gateway.on(A, "kv/put", refusal(stopping, code=13, status=500))
    gateway.on(B, "kv/put", response(200, {}))
    client.put("k", "v")
    assert [c[0] for c in gateway.calls] == [A, B]


def test_a_member_just_removed_is_skipped(client, gateway):
    # the removed old leader still answers on its port, its raft node is stopped (seen by
    # the functional remove-the-leader test: the put went to it first)
    gateway.on(A, "kv/put", refusal("raft: stopped", code=2, status=500))
    gateway.on(B, "kv/put", response(200, {}))
    client.put("k", "v")
    assert [c[0] for c in gateway.calls] == [A, B]


def test_a_proposal_dropped_while_leadership_moves_is_sent_to_the_next_member(client, gateway):
    # raft did not append it (never applied): the CA rotation drill's writer saw one while
    # a rolling restart moved the leader
    gateway.on(A, "kv/put", refusal("raft proposal dropped", code=2, status=500))
    gateway.on(B, "kv/put", response(200, {}))
    client.put("k", "v")
    assert [c[0] for c in gateway.calls] == [A, B]


def test_a_refusal_in_the_gateways_stream_error_shape_is_read(client, gateway):
    # etcd 3.5 mid-restart answered {"error": {...}} (the CI trixie run's traceback): the
    # message one level down is read like any other, here a dial failure, so B is asked
    dial = 'connection error: desc = "transport: Error while dialing: dial tcp: refused"'
    gateway.on(A, "kv/put", response(503, {"error": {"grpc_code": 14, "http_code": 503,
                                                     "message": dial,
                                                     "http_status": "Service Unavailable"}}))
    gateway.on(B, "kv/put", response(200, {}))
    client.put("k", "v")
    assert [c[0] for c in gateway.calls] == [A, B]


def test_a_refusal_in_the_stream_error_shape_keeps_its_type(client, gateway):
    gateway.on(A, "kv/put", response(503, {"error": {"grpc_code": 14, "http_code": 503,
                                                     "message": "etcdserver: unhealthy cluster"}}))
    with pytest.raises(errors.EtcdUnhealthyCluster):
        client.put("k", "v")
    assert [c[0] for c in gateway.calls] == [A]


def test_unhealthy_cluster_is_etcds_refusal_not_a_dead_endpoint(client, gateway):
    # etcd3gw maps HTTP 503 to ConnectionFailedError; the body says it is etcd refusing
    gateway.on(A, "kv/put", refusal("etcdserver: unhealthy cluster", code=14, status=503))
    with pytest.raises(errors.EtcdUnhealthyCluster) as err:
        client.put("k", "v")
    assert err.value.message == "etcdserver: unhealthy cluster"
    assert [c[0] for c in gateway.calls] == [A]


def test_no_endpoint_answering_names_each_with_its_failure(client, gateway):
    gateway.on(A, "cluster/member/list", REFUSED)
    gateway.on(B, "cluster/member/list", requests.exceptions.ConnectTimeout("timed out"))
    with pytest.raises(errors.EtcdUnreachable) as err:
        client.members()
    assert str(err.value) == (
        "no etcd endpoint answered: {}: Connection refused; {}: timed out".format(A, B)
    )
    assert err.value.failures == {A: "Connection refused", B: "timed out"}


def test_one_endpoint_refusing_the_connection_says_nothing_listens(client, gateway):
    gateway.on(A, "maintenance/status", REFUSED)
    with pytest.raises(errors.EtcdUnreachable) as err:
        client.status(A)
    assert err.value.refused is True
    assert err.value.failures == {A: "Connection refused"}


def test_etcd_error_is_a_command_execution_error_carrying_etcds_message(client, gateway):
    gateway.on(A, "cluster/member/remove", refusal("etcdserver: member not found", code=5))
    with pytest.raises(CommandExecutionError) as err:
        client.member_remove("abc")
    assert isinstance(err.value, errors.EtcdMemberNotFound)
    assert str(err.value) == "etcdserver: member not found"
    assert (err.value.code, err.value.endpoint) == (5, A)


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
    with pytest.raises(errors.EtcdTooManyLearners) as err:
        client.member_add("https://10.0.0.5:2380", deadline=0)
    assert err.value.message == "etcdserver: too many learner members in cluster"


def test_other_refusals_are_not_retried(client, gateway):
    gateway.on(A, "cluster/member/add", refusal("etcdserver: Peer URLs already exists"))
    with pytest.raises(errors.EtcdAlreadyMember):
        client.member_add("https://10.0.0.5:2380", deadline=30)
    assert len(gateway.calls) == 1


def test_promote_sends_the_decimal_id_the_gateway_expects(client, gateway):
    gateway.on(A, "cluster/member/promote", response(200, {"members": []}))
    client.member_promote("8e9e05c52164694d")
    assert gateway.calls[0][2] == {"ID": "10276657743932975437"}


def test_a_member_id_that_is_not_hex_is_refused_before_asking_etcd(client, gateway):
    with pytest.raises(errors.EtcdMemberNotFound, match="not a member ID"):
        client.member_remove("etcd-1")
    assert gateway.calls == []


def test_move_leader_asks_the_given_endpoint_only(client, gateway):
    gateway.on(B, "maintenance/transfer-leadership", refusal("etcdserver: not leader"))
    with pytest.raises(errors.EtcdRefused, match="etcdserver: not leader"):
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
    with pytest.raises(errors.EtcdLockHeld, match="held by other") as err:
        with client.lock("restart", wait=0):
            pytest.fail("the lock was held by another")
    assert err.value.holder == "other"
    # the lease taken for the attempt is given back
    assert gateway.calls[-1][1] == "kv/lease/revoke"


def test_virtual_says_why_when_etcd3gw_is_missing(monkeypatch):
    monkeypatch.setattr(etcd_client, "HAS_ETCD3GW", False)
    available, why = etcd_client.__virtual__()
    assert available is False
    assert "etcd3gw" in why


# -- etcd's messages, mapped to the classes callers decide by -------------------------------------


@pytest.mark.parametrize(
    "message, kind",
    [
        ("etcdserver: unhealthy cluster", errors.EtcdUnhealthyCluster),
        ("etcdserver: too many learner members in cluster", errors.EtcdTooManyLearners),
        ("etcdserver: can only promote a learner member which is in sync with leader",
         errors.EtcdLearnerNotReady),
        ("etcdserver: can only promote a learner member", errors.EtcdNotLearner),
        ("etcdserver: Peer URLs already exists", errors.EtcdAlreadyMember),
        ("etcdserver: member ID already exist", errors.EtcdAlreadyMember),
        ("etcdserver: member not found", errors.EtcdMemberNotFound),
        ("etcdserver: permission denied", errors.EtcdPermissionDenied),
        ("etcdserver: invalid auth token", errors.EtcdAuthFailed),
        ("etcdserver: authentication failed, invalid user ID or password", errors.EtcdAuthFailed),
        ("etcdserver: user name is empty", errors.EtcdAuthFailed),
        ("etcdserver: revision of auth store is old", errors.EtcdAuthFailed),
        ("mvcc: database space exceeded", errors.EtcdNoSpace),
        ("etcdserver: mvcc: database space exceeded", errors.EtcdNoSpace),
        ("etcdserver: rpc not supported for learner", errors.EtcdLearnerRefusal),
        ("etcdserver: not leader", errors.EtcdRefused),
    ],
)
def test_refusal_maps_each_etcd_message_to_its_class(message, kind):
    error = etcd_client.refusal(message, endpoint=A, code=9)
    assert type(error) is kind
    assert (error.message, error.endpoint, error.code) == (message, A, 9)
    # every one is a Salt error, so Salt's states and modules catch it with their own
    assert isinstance(error, errors.EtcdRefused) and isinstance(error, CommandExecutionError)


def test_only_the_passing_refusals_are_retryable():
    retryable = {kind for _, kind in etcd_client.REFUSALS if issubclass(kind, errors.EtcdRetryable)}
    assert retryable == {errors.EtcdUnhealthyCluster, errors.EtcdTooManyLearners,
                         errors.EtcdLearnerNotReady}


@pytest.mark.parametrize("kind", [errors.EtcdUnhealthyCluster, errors.EtcdTooManyLearners,
                                  errors.EtcdLearnerNotReady])
def test_retrying_retries_a_retryable_refusal_until_it_passes(client, kind):
    call = mock.Mock(side_effect=[kind("etcd said wait"), kind("etcd said wait"), "done"])
    assert client._retrying(call, deadline=30) == "done"
    assert call.call_count == 3
    assert client.last_retries["refusals"] == ["etcd said wait", "etcd said wait"]


@pytest.mark.parametrize(
    "error",
    [errors.EtcdAlreadyMember("etcdserver: Peer URLs already exists"),
     errors.EtcdNotLearner("etcdserver: can only promote a learner member"),
     errors.EtcdUnreachable("no etcd endpoint answered"),
     errors.EtcdCatchUpTimeout("learner did not catch up")],
)
def test_retrying_never_retries_anything_else(client, error):
    call = mock.Mock(side_effect=error)
    with pytest.raises(type(error)):
        client._retrying(call, deadline=30)
    assert call.call_count == 1


def test_a_learner_asked_by_its_endpoint_says_it_is_a_learner(client, gateway):
    gateway.on(A, "cluster/member/list", refusal("etcdserver: rpc not supported for learner"))
    with pytest.raises(errors.EtcdLearnerRefusal):
        client.members(endpoint=A)
    assert [c[0] for c in gateway.calls] == [A]


def test_a_member_checking_permissions_is_healthy(client, gateway):
    gateway.on(A, "kv/range", refusal("etcdserver: permission denied", code=7))
    gateway.on(A, "maintenance/alarm", response(200, {}))
    assert client.health(A)["healthy"] is True


# -- the lock -------------------------------------------------------------------------------------


def test_lock_is_taken_with_a_lease_released_by_its_holder_and_the_lease_revoked(client, gateway):
    gateway.on(A, "lease/grant", response(200, {"ID": "7", "TTL": "60"}))
    gateway.on(A, "kv/txn", response(200, {"succeeded": True}))
    gateway.on(A, "kv/lease/revoke", response(200, {}))
    with client.lock("restart/etcd", holder="h1:1") as held:
        held.check()
        assert held.holder == "h1:1"
    paths = [path for _, path, _ in gateway.calls]
    assert paths == ["lease/grant", "kv/txn", "kv/txn", "kv/lease/revoke"]
    take, release = gateway.calls[1][2], gateway.calls[2][2]
    key = etcd_client._b64(etcd_client.LOCK_PREFIX + "restart/etcd")
    # taken only if absent, bound to the lease; deleted only while still ours
    assert take["compare"][0] == {"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": 0}
    assert take["success"][0]["request_put"]["lease"] == 7
    assert release["compare"][0]["value"] == etcd_client._b64("h1:1")


def held(client, ttl=60):
    lock = etcd_client.Held(client, etcd_client.LOCK_PREFIX + "restart/etcd", "h1:1", 7, ttl)
    lock.interval = 0.01
    return lock


def test_a_held_lock_is_lost_once_etcd_says_its_lease_expired(client, gateway):
    gateway.on(A, "lease/keepalive", response(200, {"result": {"ID": "7", "TTL": "0"}}))
    lock = held(client)
    lock.check()
    lock.run()  # the keepalive loop, here in the test's thread: it ends on the expiry
    with pytest.raises(errors.EtcdLockLost, match="lease 7 expired"):
        lock.check()


def test_a_held_lock_is_lost_after_a_ttl_without_a_refresh(client, gateway):
    gateway.on(A, "lease/keepalive", REFUSED)
    gateway.on(B, "lease/keepalive", REFUSED)
    lock = held(client, ttl=0.05)
    lock.run()
    with pytest.raises(errors.EtcdLockLost, match="not refreshed for 0.05 s"):
        lock.check()


def test_a_held_lock_that_is_refreshed_stays_held(client, gateway):
    gateway.on(A, "lease/keepalive", response(200, {"result": {"ID": "7", "TTL": "60"}}))
    lock = held(client)
    lock.start()
    lock.stop()
    lock.check()
    assert lock.lost is None


def test_check_alone_sees_a_lock_not_refreshed_for_a_ttl(client):
    lock = held(client, ttl=0.01)
    with mock.patch.object(etcd_client.time, "monotonic", return_value=lock._last_ok + 0.02):
        with pytest.raises(errors.EtcdLockLost):
            lock.check()


def test_check_in_a_process_forked_from_the_holder_leaves_the_judgement_to_the_holder(client):
    lock = held(client)
    lock.lost = "its lease 7 expired"

    def parallel_step():
        try:
            lock.check()
        except errors.EtcdLockLost:
            os._exit(1)
        os._exit(0)

    child = multiprocessing.get_context("fork").Process(target=parallel_step)
    child.start()
    child.join(10)
    assert child.exitcode == 0
    with pytest.raises(errors.EtcdLockLost, match="lease 7 expired"):
        lock.check()


# -- snapshots and what a restore must give back -----------------------------------------------------


def streamed(*messages):
    """etcd's gateway streaming a server-side stream: one JSON message a line."""
    answer = response(200, {})
    answer._content = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
    answer._content_consumed = True
    return answer


def blob(data, remaining=0):
    return {"result": {"remaining_bytes": str(remaining), "blob": base64.b64encode(data).decode()}}


def test_snapshot_writes_every_blob_the_member_streams_in_order(client, gateway):
    db, digest = os.urandom(5000), os.urandom(32)
    gateway.on(B, "maintenance/snapshot", streamed(blob(db[:4096], 936), blob(db[4096:], 0), blob(digest)))
    handle = io.BytesIO()
    assert client.snapshot(B, handle) == 5032
    assert handle.getvalue() == db + digest
    # asked of that member only, never failed over: a snapshot is one member's db
    assert gateway.calls == [(B, "maintenance/snapshot", {})]


def test_snapshot_refused_midway_raises_etcds_message(client, gateway):
    gateway.on(A, "maintenance/snapshot", streamed(blob(b"x" * 10, 10), {"error": {
        "grpc_code": 2, "http_code": 500, "message": "etcdserver: snapshot failed",
        "http_status": "Internal Server Error"}}))
    with pytest.raises(errors.EtcdRefused, match="^etcdserver: snapshot failed$"):
        client.snapshot(A, io.BytesIO())


def test_snapshot_refused_at_once_raises_etcds_message(client, gateway):
    gateway.on(A, "maintenance/snapshot", refusal("etcdserver: permission denied", code=7, status=403))
    with pytest.raises(errors.EtcdPermissionDenied):
        client.snapshot(A, io.BytesIO())


def test_snapshot_from_a_member_that_is_down_is_unreachable(client, gateway):
    gateway.on(A, "maintenance/snapshot", REFUSED)
    with pytest.raises(errors.EtcdUnreachable) as err:
        client.snapshot(A, io.BytesIO())
    assert err.value.refused is True and err.value.endpoint == A



def test_revision_is_the_clusters_current_one(client, gateway):
    gateway.on(A, "kv/range", response(200, {"header": {"revision": "1042"}, "count": "0"}))
    assert client.revision() == 1042
    assert gateway.calls[0][2]["limit"] == 1


def test_keys_under_a_prefix_are_decoded(client, gateway):
    kvs = [{"key": etcd_client._b64("/app/a"), "value": etcd_client._b64("1")},
           {"key": etcd_client._b64("/app/b"), "value": etcd_client._b64("two")},
           {"key": etcd_client._b64("/app/empty")}]
    gateway.on(A, "kv/range", response(200, {"kvs": kvs}), response(200, {}))
    assert client.keys("/app/") == {"/app/a": "1", "/app/b": "two", "/app/empty": ""}
    asked = gateway.calls[0][2]
    # the prefix's range: [/app/, /app0)
    assert (asked["key"], asked["range_end"]) == (etcd_client._b64("/app/"), etcd_client._b64("/app0"))
    assert client.keys("/none/") == {}


def test_keys_of_everything_is_the_whole_keyspace(client, gateway):
    gateway.on(A, "kv/range", response(200, {"kvs": [{"key": etcd_client._b64("a"), "value": ""}]}))
    assert client.keys() == {"a": ""}
    asked = gateway.calls[0][2]
    assert asked["key"] == asked["range_end"] == etcd_client._b64("\0")


# -- the peer port --------------------------------------------------------------------------------


def test_peer_members_say_which_cluster_a_member_is_in(monkeypatch):
    answer = response(200, [{"ID": "10276657743932975437", "name": "etcd-1",
                             "peerURLs": ["https://10.0.0.1:2380"], "clientURLs": []}])
    answer.headers["X-Etcd-Cluster-ID"] = "CDF818194E3A8C32"
    get = mock.Mock(return_value=answer)
    monkeypatch.setattr(requests.Session, "get", get)
    found = etcd_client.peer_members("https://10.0.0.1:2380/", "/ca", "/peer.crt", "/peer.key")
    assert found["cluster_id"] == "cdf818194e3a8c32"
    assert found["members"][0]["id"] == "8e9e05c52164694d"
    assert found["members"][0]["client_urls"] == []
    assert get.call_args.args[0] == "https://10.0.0.1:2380/members"


def test_peer_members_tell_nothing_listening_from_an_unknown_state(monkeypatch):
    monkeypatch.setattr(requests.Session, "get", mock.Mock(side_effect=REFUSED))
    with pytest.raises(errors.EtcdUnreachable) as err:
        etcd_client.peer_members("https://10.0.0.1:2380", None, None, None)
    assert err.value.refused is True
    monkeypatch.setattr(requests.Session, "get", mock.Mock(return_value=response(500, {})))
    with pytest.raises(errors.EtcdUnreachable, match="HTTP 500") as err:
        etcd_client.peer_members("https://10.0.0.1:2380", None, None, None)
    assert err.value.refused is False

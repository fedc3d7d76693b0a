"""
The etcd client, loaded by Salt's loader as a minion loads it, against a real TLS cluster.
"""

import pytest
from salt.exceptions import CommandExecutionError


@pytest.fixture
def connect(salt_minion):
    return salt_minion.utils["etcd_client.connect"]


def test_members_have_etcdctl_ids_names_and_urls(etcd_cluster, connect):
    members = connect(etcd_cluster.endpoints, **etcd_cluster.tls).members()
    assert sorted(m["name"] for m in members) == ["test-1", "test-2", "test-3"]
    for found in members:
        local = etcd_cluster.member_named(found["name"])
        assert found["peer_urls"] == [local.peer_url]
        assert found["client_urls"] == [local.client_url]
        assert found["is_learner"] is False
        int(found["id"], 16)


def test_fails_over_past_a_dead_member(etcd_cluster, connect):
    first = etcd_cluster.members[0]
    client = connect(etcd_cluster.endpoints, **etcd_cluster.tls)
    etcd_cluster.stop(first)
    client.put("failover", "yes")
    assert client.get("failover") == "yes"


def test_ca_bundle_variables_of_the_environment_do_not_break_tls(etcd_cluster, connect, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/ca.pem")
    assert len(connect(etcd_cluster.endpoints, **etcd_cluster.tls).members()) == 3


def test_without_a_client_certificate_every_endpoint_is_named(etcd_cluster, connect):
    client = connect(etcd_cluster.endpoints, ca_file=etcd_cluster.tls["ca_file"])
    with pytest.raises(CommandExecutionError) as err:
        client.members()
    for endpoint in etcd_cluster.endpoints:
        assert endpoint in str(err.value)


def test_errors_carry_etcds_own_message(etcd_cluster, connect):
    client = connect(etcd_cluster.endpoints, **etcd_cluster.tls)
    with pytest.raises(CommandExecutionError) as err:
        client.member_remove("abcdef")
    assert str(err.value) == "etcdserver: member not found"
    voter = client.members()[0]
    with pytest.raises(CommandExecutionError) as err:
        client.member_promote(voter["id"], deadline=0)
    assert str(err.value) == "etcdserver: can only promote a learner member"


def test_etcd_refuses_a_second_learner_after_retrying(etcd_cluster, connect):
    client = connect(etcd_cluster.endpoints, **etcd_cluster.tls)
    client.member_add([etcd_cluster.new_member().peer_url], deadline=30)
    with pytest.raises(CommandExecutionError) as err:
        client.member_add([etcd_cluster.new_member().peer_url], deadline=1)
    assert str(err.value) == "etcdserver: too many learner members in cluster"
    assert client.last_retries["refusals"], "the refusal was retried until the deadline"


def test_lock_excludes_a_second_holder_until_released(etcd_cluster, connect):
    first = connect(etcd_cluster.endpoints, **etcd_cluster.tls)
    second = connect(list(reversed(etcd_cluster.endpoints)), **etcd_cluster.tls)
    with first.lock("restart", ttl=2, holder="h1") as holder:
        assert holder == "h1"
        with pytest.raises(CommandExecutionError, match="waiting for lock .*restart held by h1"):
            # longer than the TTL: the keep-alive holds the lease
            with second.lock("restart", wait=3, holder="h2"):
                pytest.fail("two holders at once")
    with second.lock("restart", wait=1, holder="h2"):
        assert first.get("/etcd-formula/locks/restart") == "h2"
    assert first.get("/etcd-formula/locks/restart") is None

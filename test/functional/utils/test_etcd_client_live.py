"""
The etcd client, loaded by Salt's loader as a minion loads it, against a real TLS cluster.
"""

import os
import time

import pytest
from local_etcd import ETCD_BIN, etcd_version
from salt.exceptions import CommandExecutionError

VERSION = etcd_version() if os.access(ETCD_BIN, os.X_OK) else (0, 0, 0)


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
    with first.lock("restart", ttl=2, holder="h1") as held:
        assert held.holder == "h1"
        with pytest.raises(CommandExecutionError, match="lock .*restart is held by h1"):
            # longer than the TTL: the keep-alive holds the lease
            with second.lock("restart", wait=3, holder="h2"):
                pytest.fail("two holders at once")
    with second.lock("restart", wait=1, holder="h2"):
        assert first.get("/etcd-formula/locks/restart") == "h2"
    assert first.get("/etcd-formula/locks/restart") is None


def test_a_held_lock_whose_lease_is_revoked_says_it_is_lost(etcd_cluster, connect):
    client = connect(etcd_cluster.endpoints, **etcd_cluster.tls)
    with client.lock("restart", ttl=2, holder="h1") as held:
        held.check()  # held: nothing raised
        client._post("kv/lease/revoke", {"ID": held.lease})  # what an expiry does
        deadline = time.monotonic() + 5
        with pytest.raises(CommandExecutionError, match="lock .*restart is lost"):
            while time.monotonic() < deadline:
                held.check()
                time.sleep(0.1)
    assert client.get("/etcd-formula/locks/restart") is None


def test_keys_under_a_prefix_and_the_revision_are_what_was_written(etcd_cluster, connect):
    client = connect(etcd_cluster.endpoints, **etcd_cluster.tls)
    before = client.revision()
    for key, value in (("/app/a", "1"), ("/app/b", "two words"), ("/app0", "beside"), ("/ap", "x")):
        client.put(key, value)
    assert client.revision() == before + 4
    assert client.keys("/app/") == {"/app/a": "1", "/app/b": "two words"}
    assert client.keys() == {"/app/a": "1", "/app/b": "two words", "/app0": "beside", "/ap": "x"}



def test_a_keys_create_revision_survives_updates_and_not_a_delete(etcd_cluster, connect):
    # what salt-run etcd.auth compares to tell a patroni leader key kept from one lost and
    # taken again by the same host
    client = connect(etcd_cluster.endpoints, **etcd_cluster.tls)
    client.put("/service/pg/leader", "h4")
    first = client.get_versioned("/service/pg/leader")
    client.put("/service/pg/leader", "h4")
    updated = client.get_versioned("/service/pg/leader")
    assert updated["value"] == "h4" and updated["create_revision"] == first["create_revision"]
    assert updated["mod_revision"] > first["mod_revision"]
    client.delete("/service/pg/leader")
    assert client.get_versioned("/service/pg/leader") is None
    client.put("/service/pg/leader", "h4")
    assert client.get_versioned("/service/pg/leader")["create_revision"] > updated["mod_revision"]

"""
The one client against a real TLS cluster with etcd authentication on (RBAC), as the formula
sets it up (``salt-run etcd.auth``): root, a patroni user with readwrite on its own prefix,
tokens per member, renewed when a member forgets them (a restart), no password shown.
"""

import time

import pytest
from salt.exceptions import CommandExecutionError

ROOT = ("root", "root-pw-0")
PATRONI = ("patroni-pg-a", "patroni-pw-0")
PREFIX = "/service/pg-a/"


@pytest.fixture
def connect(salt_minion):
    return salt_minion.utils["etcd_client.connect"]


@pytest.fixture
def errors(salt_minion):
    import etcd_errors

    return etcd_errors


@pytest.fixture
def tls(etcd_cluster):
    return {"ca_file": etcd_cluster.ca.cert_file, "cert_file": etcd_cluster.client_cert_no_cn,
            "key_file": etcd_cluster.client_key_no_cn}


@pytest.fixture
def with_auth(etcd_cluster, connect, tls):
    """Root and patroni's user and role, then authentication on."""
    with connect(etcd_cluster.endpoints, **tls) as admin:
        assert admin.auth_enabled() is False
        admin.role_add("root")
        admin.user_add(*ROOT)
        admin.user_grant("root", "root")
        admin.role_add(PATRONI[0])
        admin.role_grant(PATRONI[0], "READWRITE", PREFIX, PREFIX[:-1] + "0")
        admin.user_add(*PATRONI)
        admin.user_grant(PATRONI[0], PATRONI[0])
        admin.put(PREFIX + "leader", "pg1")
        admin.put("/service/pg-b/leader", "pg9")
        admin.auth_enable()
    return etcd_cluster


def test_roots_credentials_read_and_write_through_every_member(with_auth, connect, tls):
    for endpoint in with_auth.endpoints:
        with connect([endpoint], credentials=ROOT, **tls) as client:
            assert client.auth_enabled() is True
            client.put("/any/key", endpoint)
            assert client.get("/any/key") == endpoint
            assert len(client.members()) == 3


def test_patroni_reads_and_writes_its_prefix_and_nothing_else(with_auth, connect, tls, errors):
    with connect(with_auth.endpoints, credentials=PATRONI, **tls) as patroni:
        assert patroni.get(PREFIX + "leader") == "pg1"
        patroni.put(PREFIX + "leader", "pg2")
        with pytest.raises(errors.EtcdPermissionDenied):
            patroni.put("/service/pg-b/leader", "taken")
        with pytest.raises(errors.EtcdPermissionDenied):
            patroni.get("/service/pg-b/leader")
        with pytest.raises(errors.EtcdPermissionDenied):
            patroni.delete("/service/pg-b/leader")
        with pytest.raises(errors.EtcdPermissionDenied):
            patroni.user_add("mine", "x")
        with pytest.raises(errors.EtcdPermissionDenied):
            patroni.auth_disable()
    with connect(with_auth.endpoints, credentials=ROOT, **tls) as root:
        assert root.get("/service/pg-b/leader") == "pg9"
        assert root.get(PREFIX + "leader") == "pg2"


def test_a_certificate_without_a_password_can_do_nothing(with_auth, connect, tls, errors):
    with connect(with_auth.endpoints, **tls) as anonymous:
        with pytest.raises(errors.EtcdAuthFailed):
            anonymous.delete(PREFIX + "leader")
        with pytest.raises(errors.EtcdAuthFailed):
            anonymous.put("/x", "y")
    with connect(with_auth.endpoints, credentials=ROOT, **tls) as root:
        assert root.get(PREFIX + "leader") == "pg1"


def test_a_wrong_password_fails_without_showing_it(with_auth, connect, tls, errors):
    with connect(with_auth.endpoints, credentials=("root", "wrong-pw-123"), **tls) as client:
        with pytest.raises(errors.EtcdAuthFailed) as raised:
            client.get("/x")
    assert "wrong-pw-123" not in str(raised.value)
    assert isinstance(raised.value, CommandExecutionError)


def test_a_token_a_restarted_member_forgot_is_renewed(with_auth, connect, tls):
    first = with_auth.members[0]
    with connect([first.client_url], credentials=ROOT, **tls) as client:
        client.put("/before", "1")
        # simple tokens live in the issuing member's memory only
        with_auth.stop(first)
        with_auth.start(first, with_auth.initial_cluster(with_auth.members), state="existing")
        with_auth.wait_healthy([first])
        client.put("/after", "2")
        assert client.get("/after") == "2"


def test_credentials_given_while_authentication_is_off_change_nothing(etcd_cluster, connect, tls):
    with connect(etcd_cluster.endpoints, credentials=ROOT, **tls) as client:
        assert client.auth_enabled() is False
        client.put("/k", "v")
        assert client.get("/k") == "v"


def test_users_and_roles_are_listed_as_given(with_auth, connect, tls):
    with connect(with_auth.endpoints, credentials=ROOT, **tls) as root:
        assert root.users() == {"root": ["root"], PATRONI[0]: [PATRONI[0]]}
        assert root.roles()[PATRONI[0]] == [("READWRITE", PREFIX, PREFIX[:-1] + "0")]
        assert root.password_works(*PATRONI) is True
        assert root.password_works(PATRONI[0], "not-it") is False
        root.user_password(PATRONI[0], "patroni-pw-1")
        assert root.password_works(PATRONI[0], "patroni-pw-1") is True


def test_a_learners_status_is_read_with_credentials_and_its_promotion_follows(with_auth, connect,
                                                                              tls, errors):
    # a learner logs nobody in (etcd: "rpc not supported for learner"): its status, what
    # add_member watches until it caught up, is asked without a token; once promoted, the
    # member logs the client in as any voter does
    with connect(with_auth.endpoints, credentials=ROOT, **tls) as client:
        learner = with_auth.new_member()
        added = client.member_add([learner.peer_url], deadline=30)
        everyone = [m for m in with_auth.members if m.running()] + [learner]
        with_auth.start(learner, with_auth.initial_cluster(everyone), state="existing")
        with connect([learner.client_url], credentials=ROOT, **tls) as at_learner:
            status = None
            for _ in range(100):
                try:
                    status = at_learner.status(learner.client_url)
                except errors.EtcdUnreachable as exc:  # not listening yet; or refusing
                    status = exc
                if isinstance(status, dict) and status["raft_applied_index"] >= \
                        client.status(with_auth.endpoints[0])["raft_index"]:
                    break
                time.sleep(0.1)
            assert status["is_learner"] is True and status["leader"] != "0", status
            client.member_promote(added["member"]["id"], deadline=30)
            # the member itself may still refuse as a learner for a moment (etcd 3.5)
            for _ in range(50):
                try:
                    at_learner.put("/promoted", "yes")
                    break
                except errors.EtcdUnreachable:
                    time.sleep(0.2)
            assert at_learner.get("/promoted") == "yes"

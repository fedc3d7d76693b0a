"""
The CA rotation runner (``salt-run etcd.rotate_ca``) over the real layers: etcd is FakeEtcd
behind an autospec of the real client, the minions answer through an autospec of Salt's
LocalClient (the CA server's rotation record is a ``CaServer`` here), the certificates each
member serves are named by the CA that issued them. What is checked: the phases' order,
one member at a time with leadership moved off a leader before its restart, where an
interrupted rotation goes on, and where a rotation stops saying what was done. The real
rotations (two CAs, patroni keeping its leader) run on the lab (test/integration/test_trust.py).
"""

from unittest import mock

import pytest

import etcd_pki
import etcd_rotation as rotation
import etcd_runner
from etcd_fakes import FakeMinions, client_url, failed, passed, peer_url, pillar, real_utils

CONTINUE = "continue with: salt-run etcd.rotate_ca"


class CaServer:
    """The CA server's rotation record (``etcd_ca.rotation*``) and its bundles: a bundle is
    the list of CA names it trusts, its first the one that signs."""

    # the bundles as each phase leaves them: {usage: [CA names]}
    BUNDLES = {None: ("old",), "trust-both": ("old", "new"), "reissue": ("new", "old"),
               "trust-new": ("new",)}

    def __init__(self):
        self.calls = []
        self.begun_with = None
        self.recorded(None)

    def recorded(self, phase):
        """The record as a rotation interrupted in ``phase`` left it."""
        self.phase = phase
        self.bundles = {w: ["{}-{}".format(age, w) for age in self.BUNDLES[phase]]
                        for w in ("client", "peer")}

    def answer(self, minion, fun, kwarg):
        self.calls.append(fun)
        if fun == "etcd_ca.rotation_begin":
            self.begun_with = kwarg
            self.phase = "trust-both"
            self.bundles = {w: b + ["new-" + w] for w, b in self.bundles.items()}
            return {"phase": self.phase, "new": {"client": "new-client", "peer": "new-peer"},
                    "split": (kwarg or {}).get("split")}
        if fun == "etcd_ca.rotation_switch":
            self.phase = "reissue"
            self.bundles = {w: ["new-" + w, "old-" + w] for w in self.bundles}
        elif fun == "etcd_ca.rotation_finish":
            self.phase = "trust-new"
            self.bundles = {w: ["new-" + w] for w in self.bundles}
        elif fun == "etcd_ca.rotation_end":
            self.phase = None
            return {"phase": None, "retired": "/etc/etcd/ca/retired-1"}
        elif fun == "etcd_ca.bundles":
            return dict(self.bundles)
        return {"phase": self.phase}


class Served:
    """Who issued the certificate each URL serves: a member's certificates are issued anew
    (by the CA that signs then) when etcd.pki is applied on it."""

    def __init__(self, ca, issuer=None):
        self.ca = ca
        self.by_url = {}
        for seq in (1, 2, 3):
            self.by_url[client_url(seq)] = issuer or "old-client"
            self.by_url[peer_url(seq)] = issuer or "old-peer"
        self.stale = set()  # URLs whose certificate is never issued anew

    def issue(self, seq):
        for url, which in ((client_url(seq), "client"), (peer_url(seq), "peer")):
            if url not in self.stale:
                self.by_url[url] = self.ca.bundles[which][0]


@pytest.fixture
def ca():
    return CaServer()


@pytest.fixture
def served(ca):
    return Served(ca)


@pytest.fixture
def etcd_pillar():
    return pillar()


@pytest.fixture
def minions(monkeypatch, ca, served, etcd):
    found = FakeMinions()

    def applied(minion, arg, kwarg):
        found.applied.append((minion, arg[0], etcd.leader))
        if arg[0] == "etcd.pki" and minion.startswith("h"):
            served.issue(int(minion[1:]))

    found.applied = []
    found.on_call["state.apply"] = applied
    for fun in ("rotation", "rotation_begin", "rotation_switch", "rotation_finish",
                "rotation_end", "bundles"):
        found.on_call["etcd_ca." + fun] = (
            lambda minion, arg, kwarg, fun=fun: found.answers.__setitem__(
                "etcd_ca." + fun, ca.answer(minion, "etcd_ca." + fun, kwarg)))
    return found.install(monkeypatch)


@pytest.fixture
def refresh_endpoints():
    return mock.Mock(spec=etcd_runner.refresh_endpoints,
                     return_value={"result": True, "comment": "2 clients updated"})


@pytest.fixture
def utils(served):
    found = real_utils()
    found["etcd_pki.served_certificate"] = mock.Mock(
        spec=etcd_pki.served_certificate, side_effect=lambda url: served.by_url[url])
    found["etcd_pki.first_certificate"] = mock.Mock(
        spec=etcd_pki.first_certificate, side_effect=lambda bundle: bundle[:1])
    found["etcd_pki.issued_by_bundle"] = mock.Mock(
        spec=etcd_pki.issued_by_bundle, side_effect=lambda cert, bundle: cert in bundle)
    found["etcd_pki.issuer_label"] = mock.Mock(
        spec=etcd_pki.issuer_label, side_effect=lambda cert, bundle: "issued by " + cert)
    return found


@pytest.fixture(autouse=True)
def instant_waits(clock):
    return clock


@pytest.fixture
def configure_loader_modules(show_pillar, connect, minions, utils, refresh_endpoints, master_opts):
    return {rotation: {
        "__salt__": {"pillar.show_pillar": show_pillar,
                     "etcd.refresh_endpoints": refresh_endpoints},
        "__utils__": utils,
        "__opts__": master_opts,
        "__context__": {},
    }}


ROLL = [("h2", "etcd"), ("h3", "etcd"), ("h1", "etcd")]  # followers first, the leader h1 last
PUBLISH = [("master", "etcd.ca"), ("master", "etcd.admin")]


def sls_order(minions):
    return [(minion, sls) for minion, sls, _ in minions.applied]


def test_a_rotation_trusts_both_then_reissues_then_trusts_the_new_only(ca, served, minions,
                                                                       refresh_endpoints):
    ret = passed(rotation.rotate_ca())
    assert ret["changes"] == {"rotated": True}
    assert ca.begun_with == {"split": False}
    assert ca.calls == ["etcd_ca.rotation", "etcd_ca.bundles", "etcd_ca.rotation_begin",
                        "etcd_ca.rotation_switch", "etcd_ca.bundles", "etcd_ca.rotation_finish",
                        "etcd_ca.rotation_end"]
    phases = [sls_order(minions)[i:i + 5] for i in (0, 5, 10)]
    assert len(sls_order(minions)) == 15
    for phase, sls in zip(phases, ("etcd", "etcd.pki", "etcd")):  # trust-both, reissue, trust-new
        assert phase[:2] == PUBLISH
        assert sorted(phase[2:]) == [("h1", sls), ("h2", sls), ("h3", sls)]
    assert phases[0] == PUBLISH + ROLL  # followers first, the leader last
    assert refresh_endpoints.call_args_list == [mock.call(cluster="etcd")] * 3
    assert set(served.by_url.values()) == {"new-client", "new-peer"}
    assert ca.phase is None and ca.bundles == {"client": ["new-client"], "peer": ["new-peer"]}
    assert "the old CAs archived in /etc/etcd/ca/retired-1" in ret["comment"]


def test_leadership_leaves_a_member_before_its_restart_and_not_for_a_reissue(etcd, minions):
    passed(rotation.rotate_ca())
    # (minion, sls, the leader's member ID as the sls began); h<n> is member a<n>
    restarts = [(minion, leader) for minion, sls, leader in minions.applied if sls == "etcd"]
    assert len(restarts) == 6 and all(leader != "a" + minion[1:] for minion, leader in restarts)
    reissued = [(minion, leader) for minion, sls, leader in minions.applied if sls == "etcd.pki"]
    assert len({leader for _, leader in reissued}) == 1  # no restart: leadership stays
    assert reissued[-1][1] == "a" + reissued[-1][0][1:]  # the leader last


@pytest.mark.parametrize("phase, skipped", [
    ("trust-both", ["etcd_ca.rotation_begin"]),
    ("reissue", ["etcd_ca.rotation_begin", "etcd_ca.rotation_switch"]),
    ("trust-new", ["etcd_ca.rotation_begin", "etcd_ca.rotation_switch",
                   "etcd_ca.rotation_finish"]),
])
def test_an_interrupted_rotation_goes_on_at_its_recorded_phase(ca, minions, phase, skipped):
    ca.recorded(phase)
    passed(rotation.rotate_ca())
    assert not set(skipped) & set(ca.calls), ca.calls
    assert ca.calls[-1] == "etcd_ca.rotation_end"
    if phase == "trust-new":
        assert [sls for _, sls in sls_order(minions)] == [  # no reissue again
            "etcd.ca", "etcd.admin", "etcd", "etcd", "etcd"]


def test_until_stops_before_the_phase_named_and_a_second_run_goes_on(ca, minions):
    ret = passed(rotation.rotate_ca(until="reissue"))
    assert ret["changes"] == {"phase": "reissue"}
    assert ret["comment"].startswith("stopped before phase reissue as asked: ")
    assert ca.phase == "trust-both" and "etcd_ca.rotation_switch" not in ca.calls
    assert sls_order(minions) == PUBLISH + ROLL
    passed(rotation.rotate_ca(until="trust-new"))
    assert ca.phase == "reissue"
    passed(rotation.rotate_ca())
    assert ca.phase is None


def test_a_member_unhealthy_after_its_restart_stops_the_rotation_there(etcd, ca, minions):
    def applied(minion, arg, kwarg):
        minions.applied.append((minion, arg[0], etcd.leader))
        if minion == "h2" and arg[0] == "etcd":
            etcd.down.add("a2")  # its etcd does not come back
    minions.on_call["state.apply"] = applied
    message = failed(rotation.rotate_ca())
    assert message.startswith("cluster etcd is not healthy (etcd-2: "), message
    assert "after etcd on h2: stopped there; done: new CAs made: " in message
    assert "master: etcd.ca, etcd.admin applied" in message
    assert CONTINUE in message
    assert sls_order(minions) == PUBLISH + [("h2", "etcd")]  # nobody after it
    assert ca.phase == "trust-both"


def test_a_member_still_serving_an_old_certificate_is_named_and_the_old_ca_kept(served, ca):
    served.stale.add(peer_url(3))
    message = failed(rotation.rotate_ca())
    assert message == ("certificates not of the new CAs are still served: h3 peer (issued by "
                       "old-peer); " + CONTINUE)
    assert ca.phase == "reissue" and "etcd_ca.rotation_finish" not in ca.calls


def test_a_failed_apply_names_the_minion_and_what_was_done(minions, ca):
    minions.per_minion[("h3", "state.apply")] = {"etcd-service-running": {
        "result": False, "comment": "member etcd-3 is not healthy with a leader after 120 s"}}
    message = failed(rotation.rotate_ca())
    assert message.startswith("etcd on h3 failed: member etcd-3 is not healthy with a leader "
                              "after 120 s; done: "), message
    assert "h2: etcd, healthy" in message and message.endswith(CONTINUE)


def test_a_cluster_built_before_the_split_gets_peers_a_ca_of_their_own(ca, served):
    for seq in (1, 2, 3):
        served.by_url[peer_url(seq)] = "old-client"  # peer certificates of the clients' CA
    ret = passed(rotation.rotate_ca())
    assert ca.begun_with == {"split": True}
    assert "built before peers had a CA of their own" in ret["comment"]
    assert served.by_url[peer_url(1)] == "new-peer"


def test_a_cluster_unhealthy_before_the_rotation_changes_nothing(etcd, ca, minions):
    etcd.down.add("a3")
    message = failed(rotation.rotate_ca())
    assert message.startswith("cluster etcd is not healthy (etcd-3: ")
    assert ca.calls == [] and minions.applied == []


@pytest.mark.parametrize("until", ["trust-both", "later", 1])
def test_an_unknown_until_is_refused_naming_it(until, minions):
    assert failed(rotation.rotate_ca(until=until)) == (
        "until: {!r}: expected reissue, trust-new or done".format(until))
    assert minions.calls == []


def test_a_ca_of_your_own_is_not_rotated(etcd_pillar, minions):
    etcd_pillar["pki"]["ca_provided"] = True
    message = failed(rotation.rotate_ca())
    assert message.startswith("pillar etcd:pki:ca_provided is true: the CA is yours")
    assert minions.calls == []

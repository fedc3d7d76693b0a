"""
What the unit tests share: the pillar of a three-member cluster, members and statuses as the
client gives them, the real ``_utils`` functions for ``__utils__``, and the fakes of the I/O
edges: ``FakeEtcd`` (a cluster behind an autospec of the real ``EtcdClient``), the peer
ports' answers, and ``FakeMinions`` (the minions behind an autospec of Salt's LocalClient).
"""

import copy
import importlib
import inspect
import os
from unittest import mock

import salt.client

import etcd_client
import etcd_errors as errors
import etcd_membership

# every module of _utils (a new one is in __utils__ here as soon as it exists)
UTILS_MODULES = tuple(
    importlib.import_module(name[:-3]) for name in sorted(os.listdir(
        os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "_utils"))) if name.endswith(".py"))

# h1..h3 at 10.77.0.11..13, as pillar.example has them
PILLAR = {
    "pki": {"ca_server": "master"},
    "clusters": {
        "etcd": {
            "members": {
                "h1": {"seq": 1, "address": "10.77.0.11"},
                "h2": {"seq": 2, "address": "10.77.0.12"},
                "h3": {"seq": 3, "address": "10.77.0.13"},
            }
        }
    },
}


def pillar(members=3, **cluster_settings):
    """PILLAR with ``members`` (a count: h1..hN; or the mapping itself) and
    ``cluster_settings`` on cluster etcd."""
    result = copy.deepcopy(PILLAR)
    if isinstance(members, int):
        members = {"h{}".format(seq): {"seq": seq, "address": address(seq)}
                   for seq in range(1, members + 1)}
    result["clusters"]["etcd"]["members"] = members
    result["clusters"]["etcd"].update(cluster_settings)
    return result


def real_utils(*modules):
    """``__utils__`` of the real functions: {"<module>.<function>": function} of every public
    function the formula's ``_utils`` modules define."""
    found = {}
    for module in modules or UTILS_MODULES:
        name = getattr(module, "__virtualname__", module.__name__)
        for attr, value in vars(module).items():
            if attr.startswith("_") or not inspect.isfunction(value):
                continue
            if value.__module__ == module.__name__:
                found["{}.{}".format(name, attr)] = value
    return found


# -- members and statuses as etcd_client gives them ----------------------------------------------


def address(seq):
    return "10.77.0.{}".format(10 + seq)


def peer_url(seq):
    return "https://{}:2380".format(address(seq))


def client_url(seq):
    return "https://{}:2379".format(address(seq))


def member_id(seq):
    return "a{}".format(seq)


def member(seq, learner=False, started=True, ran=None):
    """Member ``seq`` (ID a<seq>, etcd-<seq>, 10.77.0.1<seq>). ``started``: it has a name (a
    started member, or an initial member of a bootstrapping cluster); ``ran``: it published
    its client URLs (default: as started)."""
    ran = started if ran is None else ran
    return {
        "id": member_id(seq),
        "name": "etcd-{}".format(seq) if started else "",
        "peer_urls": [peer_url(seq)],
        "client_urls": [client_url(seq)] if ran else [],
        "is_learner": learner,
        "started": started,
    }


def status(seq, leader="a1", raft_index=100, cluster_id="c1", learner=False, db_size=20480):
    return {
        "endpoint": client_url(seq), "id": member_id(seq), "cluster_id": cluster_id,
        "version": "3.5.16", "db_size": db_size, "db_size_in_use": db_size, "leader": leader,
        "raft_index": raft_index, "raft_term": 2, "raft_applied_index": raft_index,
        "is_learner": learner, "errors": [],
    }


def refused(url):
    return errors.EtcdUnreachable("{}: Connection refused".format(url),
                                  failures={url: "Connection refused"}, endpoint=url,
                                  refused=True)


# -- a cluster behind the real client's interface ------------------------------------------------


def fake_client(endpoints=()):
    """An autospec of the real EtcdClient (a context manager of itself)."""
    client = mock.create_autospec(etcd_client.EtcdClient, instance=True)
    client.__enter__.return_value = client
    client.endpoints = list(endpoints)
    client.last_retries = {"refusals": [], "waited": 0.0}
    return client


class FakeEtcd:
    """
    One etcd cluster as the client sees it: the membership, who leads, each member's raft
    index, which members are down. ``client`` is an autospec of the real EtcdClient whose
    calls this answers (and records); ``connect`` stands for ``etcd_client.connect``.
    """

    def __init__(self, members=None, leader="a1", cluster_id="c1", per_connection=False):
        self.members = [dict(m) for m in (members if members is not None
                                          else [member(1), member(2), member(3)])]
        self.leader = leader
        self.cluster_id = cluster_id
        self.raft_index = {}
        self.down = set()
        self.alarm_list = []
        self.keys = {}
        self.auth_on = False  # etcd's authentication (RBAC)
        self.db_size = 20480
        # endpoints that answer for another cluster (a split): {client URL: status}
        self.foreign = {}
        # one client for every connection (its calls are the test's to assert), or
        # (``per_connection``: minions in threads) a new client for each, in ``clients``
        self.per_connection = per_connection
        self.clients = []
        self.client = self._wired(fake_client())
        self.connected = []
        self._next_id = 0xF0

    def _wired(self, client):
        for name in ("members", "status", "health", "alarms", "member_add", "member_promote",
                     "member_remove", "move_leader", "put", "get", "delete"):
            getattr(client, name).side_effect = getattr(self, "_" + name)
        client.auth_enabled.side_effect = lambda: self.auth_on
        return client

    def connect(self, endpoints, **kwargs):
        endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.connected.append((endpoints, kwargs))
        client = self._wired(fake_client()) if self.per_connection else self.client
        client.endpoints = endpoints
        self.clients.append(client)
        return client

    def find(self, ident):
        return etcd_membership.find(self.members, ident)

    def start(self, seq):
        """The host of member ``seq`` starts its etcd: it gets its name and client URL."""
        started = self.find(peer_url(seq))
        started.update(name="etcd-{}".format(seq), client_urls=[client_url(seq)], started=True)

    # -- the client's calls

    def _answering(self, url):
        for found in self.members:
            if url in found["client_urls"]:
                if found["id"] in self.down:
                    raise refused(url)
                return found
        raise refused(url)

    def _members(self, endpoint=None):
        if endpoint is not None:
            self._answering(endpoint)
        elif all(m["id"] in self.down or not m["client_urls"] for m in self.members):
            raise errors.EtcdUnreachable("no etcd endpoint answered")
        return copy.deepcopy(self.members)

    def _status(self, endpoint):
        if endpoint in self.foreign:
            return dict(self.foreign[endpoint])
        found = self._answering(endpoint)
        leader = self.leader if self.leader not in self.down else "0"
        seq = int(found["id"][1:], 16)
        answer = status(seq, leader=leader, raft_index=self.raft_index.get(found["id"], 100),
                        cluster_id=self.cluster_id, learner=found["is_learner"],
                        db_size=self.db_size)
        answer["endpoint"] = endpoint
        return answer

    def _health(self, endpoint):
        try:
            found = self._answering(endpoint)
        except errors.EtcdUnreachable as exc:
            return {"endpoint": endpoint, "healthy": False, "error": exc.message, "took": 0.0,
                    "is_learner": False}
        return {"endpoint": endpoint, "healthy": True, "error": None, "took": 0.0,
                "is_learner": found["is_learner"]}

    def _alarms(self):
        return list(self.alarm_list)

    def _member_add(self, peer_urls, learner=True, deadline=None):
        if isinstance(peer_urls, str):
            peer_urls = [peer_urls]
        added = {"id": "{:x}".format(self._next_id), "name": "", "peer_urls": list(peer_urls),
                 "client_urls": [], "is_learner": bool(learner), "started": False}
        self._next_id += 1
        self.members.append(added)
        return {"member": dict(added), "members": copy.deepcopy(self.members)}

    def _member_promote(self, member_id, deadline=None):
        found = self.find(member_id)
        if found is None:
            raise errors.EtcdMemberNotFound("etcdserver: member not found")
        if not found["is_learner"]:
            raise errors.EtcdNotLearner("etcdserver: can only promote a learner member")
        found["is_learner"] = False
        return copy.deepcopy(self.members)

    def _member_remove(self, member_id, deadline=None):
        found = self.find(member_id)
        if found is None:
            raise errors.EtcdMemberNotFound("etcdserver: member not found")
        self.members.remove(found)
        return copy.deepcopy(self.members)

    def _move_leader(self, member_id, endpoint):
        if self._status(endpoint)["id"] != self.leader:
            raise errors.EtcdRefused("etcdserver: not leader")
        self.leader = member_id

    def _put(self, key, value, lease=None):
        self.keys[key] = str(value)

    def _get(self, key):
        return self.keys.get(key)

    def _delete(self, key):
        return 1 if self.keys.pop(key, None) is not None else 0


class FakeClock:
    """``time`` for code that waits: ``sleep`` advances ``monotonic`` at once (and runs
    ``while_sleeping``, the world changing meanwhile), so a 15 s wait takes no time."""

    def __init__(self, while_sleeping=None):
        self.now = 1000.0
        self.slept = 0.0
        self.while_sleeping = while_sleeping

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.slept += seconds
        if self.while_sleeping is not None:
            self.while_sleeping()


REAL_CONNECT = etcd_client.connect


def patch_connect(monkeypatch, etcd):
    """``etcd_client.connect`` (what every path to etcd goes through) answered by ``etcd``: a
    Mock specced on the real one, to assert the endpoints and certificates given."""
    connect = mock.Mock(spec=REAL_CONNECT, side_effect=etcd.connect)
    monkeypatch.setattr(etcd_client, "connect", connect)
    return connect


# -- the peer ports (etcd_client.peer_members), as probe_peers gives them ------------------------


def answer(members, cluster_id="c1"):
    return {"answer": {"cluster_id": cluster_id, "members": members}}


REFUSED = {"refused": True}


# -- the minions, as the runners reach them (salt.client.LocalClient.cmd) --------------------------

APPLIED = {"etcd-x": {"result": True, "comment": ""}}


class FakeMinions:
    """What the minions answer a runner: ``answers`` {function: return} (``state.apply``
    succeeds, any other function answers True, unless given), ``per_minion`` {(minion,
    function): return}; ``silent`` do not answer; ``on_call`` {function: what it does to the
    world}; ``globs`` the minions a glob target matches. ``calls``: (minion, function, args,
    kwargs, target type), one per minion reached; ``published``: (target, function, args,
    kwargs, target type), one per publish. Install it with ``install(monkeypatch)``."""

    def __init__(self, answers=None):
        self.answers = dict({"state.apply": APPLIED}, **(answers or {}))
        self.per_minion = {}
        self.silent = set()
        self.on_call = {}
        self.globs = {}
        self.calls = []
        self.published = []
        self.local = mock.create_autospec(salt.client.LocalClient, instance=True)
        self.local.__enter__.return_value = self.local
        self.local.cmd.side_effect = self.cmd

    def install(self, monkeypatch):
        monkeypatch.setattr(salt.client, "get_local_client",
                            mock.Mock(spec=salt.client.get_local_client, return_value=self.local))
        return self

    def cmd(self, tgt, fun, arg=(), timeout=None, tgt_type="glob", ret="", jid="",
            full_return=False, kwarg=None, **kwargs):
        assert full_return is True
        self.published.append((tgt, fun, list(arg), kwarg, tgt_type))
        targets = tgt.split(",") if tgt_type == "list" else self.globs.get(tgt, [tgt])
        found = {}
        for minion in targets:
            self.calls.append((minion, fun, list(arg), kwarg, tgt_type))
            if minion in self.silent:
                found[minion] = {"ret": "Minion did not return. [No response]", "out": "no_return",
                                 "retcode": 254}
                continue
            if fun in self.on_call:
                self.on_call[fun](minion, list(arg), kwarg)
            value = self.per_minion.get((minion, fun), self.answers.get(fun, True))
            found[minion] = value if isinstance(value, dict) and "ret" in value else {
                "ret": value, "retcode": 0}
        return found

    def called(self, fun):
        """The minions ``fun`` reached, in order."""
        return [call[0] for call in self.calls if call[1] == fun]

    def functions(self):
        return [call[1] for call in self.calls]


# -- a runner's return (etcd_steps.ok / failed) -------------------------------------------------


def passed(ret):
    """A runner step's return that passed: the return."""
    assert ret["result"] is True, ret
    return ret


def failed(ret):
    """A runner step's return that failed as Salt shows it (retcode 1): its Error."""
    assert ret["result"] is False and ret["retcode"] == 1, ret
    return ret["Error"]

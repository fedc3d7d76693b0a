"""
The one etcd client of the formula, over etcd's JSON gateway (``/v3/...``) with etcd3gw.

Salt loads it as ``__utils__["etcd_client.connect"]``; tests import it as a plain module.
Everything else (execution module, states, runner) reaches etcd through ``connect()``.

- Endpoints are tried in order; the client fails over to the next one on a connection error
  (refused, timed out, TLS failure) and when the endpoint is a learner, which serves no
  linearizable request. The endpoint that answered is tried first next time.
- TLS: ``verify`` is the cluster CA and ``cert`` the client pair, on a requests Session with
  ``trust_env = False``: requests would otherwise let ``REQUESTS_CA_BUNDLE`` from the
  environment override the CA, and TLS to etcd would fail for users who have it set.
- Member IDs are hex strings, as etcdctl prints them (the gateway speaks uint64 decimals).
- A refusal by etcd raises ``EtcdError`` carrying etcd's own message (``etcdserver: ...``).
  It is a ``CommandExecutionError``, so states and modules catch it with Salt's own errors.
- Membership changes retry the refusals in ``RETRYABLE`` with back-off until a deadline.
"""

import base64
import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
import uuid

from salt.exceptions import CommandExecutionError

try:
    import requests
    from etcd3gw.client import Etcd3Client
    from etcd3gw import exceptions as etcd3gw_exceptions

    HAS_ETCD3GW = True
except ImportError:
    HAS_ETCD3GW = False

log = logging.getLogger(__name__)

__virtualname__ = "etcd_client"

# etcd's refusals that go away by themselves: the member handling a membership change must
# have been connected to every voter for 5 s ("unhealthy cluster", right after a promote or a
# restart); a learner is promoted only once it is in sync; 3.4/3.5 allow one learner at a time.
UNHEALTHY_CLUSTER = "etcdserver: unhealthy cluster"
TOO_MANY_LEARNERS = "etcdserver: too many learner members in cluster"
LEARNER_NOT_READY = "etcdserver: can only promote a learner member which is in sync with leader"
RETRYABLE = (UNHEALTHY_CLUSTER, TOO_MANY_LEARNERS, LEARNER_NOT_READY)

# Answered by a learner to anything but status and serializable reads: ask another endpoint.
LEARNER_REFUSAL = "etcdserver: rpc not supported for learner"

# Answered by a member's JSON gateway that cannot reach the member's own gRPC server (the
# member is starting or stopping; seen with etcd 3.5 during a rolling restart): as good as
# a refused connection, so the next endpoint is asked.
GATEWAY_DIAL_FAILURES = ("connection error:", "transport is closing")

# The gateway path is /v3/ from etcd 3.4 on; fixing it saves a /version round-trip per endpoint.
API_PATH = "/v3/"
LOCK_PREFIX = "/etcd-formula/locks/"


def __virtual__():
    if not HAS_ETCD3GW:
        return (False, "etcd_client needs the etcd3gw Python package")
    return __virtualname__


class EtcdError(CommandExecutionError):
    """
    etcd refused a request (``message`` is etcd's own text), or no endpoint could be reached.
    """

    def __init__(self, message, code=None, endpoint=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.endpoint = endpoint


class _Unreachable(Exception):
    """This endpoint did not answer (or cannot serve the request): try the next one."""

    def __init__(self, message, endpoint):
        super().__init__("{}: {}".format(endpoint, message))
        self.message = message
        self.endpoint = endpoint


def connect(
    endpoints, ca_file=None, cert_file=None, key_file=None, timeout=5, retry_timeout=60
):
    """
    A client for the etcd cluster reachable at ``endpoints`` (a list of ``https://host:port``,
    or one such string). ``timeout``: seconds per request; ``retry_timeout``: how long
    membership changes retry etcd's RETRYABLE refusals by default.
    """
    return EtcdClient(
        endpoints,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        timeout=timeout,
        retry_timeout=retry_timeout,
    )


def member_id_hex(raw_id):
    """etcd's uint64 member ID (int or decimal string) as etcdctl prints it."""
    return "{:x}".format(int(raw_id))


def _member_id_decimal(member_id):
    try:
        return str(int(str(member_id), 16))
    except ValueError:
        raise EtcdError("not a member ID (hex, as etcdctl prints it): {!r}".format(member_id))


def _b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _unb64(text):
    return base64.b64decode(text).decode("utf-8")


def _connection_failure(text):
    """The gist of a requests connection error ("Connection refused", a TLS error...)."""
    errno_reason = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text)
    if errno_reason:
        return errno_reason.group(1).strip()
    if "(Caused by " in text:
        return text.split("(Caused by ", 1)[1].rstrip(")")
    return text


def _refusal_message(detail_text):
    """
    etcd's message from a gateway error body (``{"error"|"message": ..., "code": ...}``),
    or None when the text is not such a body (then the request never reached etcd).
    """
    try:
        body = json.loads(detail_text or "")
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    message = body.get("message") or body.get("error")
    if not message:
        return None, None
    return message, body.get("code")


def _member(raw):
    return {
        "id": member_id_hex(raw["ID"]),
        # etcd learns a member's name and client URLs when it first starts
        "name": raw.get("name", ""),
        "peer_urls": list(raw.get("peerURLs") or []),
        "client_urls": list(raw.get("clientURLs") or []),
        "is_learner": bool(raw.get("isLearner", False)),
        "started": bool(raw.get("name")),
    }


class EtcdClient:
    """See the module docstring and docs/design.md for the API."""

    def __init__(
        self,
        endpoints,
        ca_file=None,
        cert_file=None,
        key_file=None,
        timeout=5,
        retry_timeout=60,
    ):
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise EtcdError("no etcd endpoints given")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.session = requests.Session()
        self.session.trust_env = False
        if ca_file:
            self.session.verify = ca_file
        if cert_file and key_file:
            self.session.cert = (cert_file, key_file)
        self._gateways = {}
        self._preferred = 0
        self.last_retries = {"refusals": [], "waited": 0.0}

    # -- transport ------------------------------------------------------------------------------

    def _gateway(self, endpoint):
        if endpoint not in self._gateways:
            url = urllib.parse.urlsplit(endpoint)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise EtcdError("not an etcd client URL: {!r}".format(endpoint))
            self._gateways[endpoint] = Etcd3Client(
                host=url.hostname,
                port=url.port or 2379,
                protocol=url.scheme,
                timeout=self.timeout,
                api_path=API_PATH,
                session=self.session,
            )
        return self._gateways[endpoint]

    def _post_to(self, endpoint, path, body):
        """One request to one endpoint: etcd's answer, EtcdError, or _Unreachable."""
        gateway = self._gateway(endpoint)
        try:
            return gateway.post(gateway.get_url(path), json=body)
        except etcd3gw_exceptions.Etcd3Exception as exc:
            # etcd3gw maps HTTP 503 to ConnectionFailedError too; etcd's JSON body tells
            # a refusal ("unhealthy cluster" is a 503) from a request that never got there.
            message, code = _refusal_message(exc.detail_text)
            if message is None:
                raise _Unreachable(_connection_failure(exc.detail_text or str(exc)), endpoint)
            if message == LEARNER_REFUSAL or message.startswith(GATEWAY_DIAL_FAILURES):
                raise _Unreachable(message, endpoint)
            raise EtcdError(message, code=code, endpoint=endpoint)
        except requests.exceptions.RequestException as exc:
            raise _Unreachable(_connection_failure(str(exc)), endpoint)

    def _post(self, path, body, endpoint=None):
        """
        POST to ``endpoint`` only, or to the endpoints in turn until one answers.
        """
        if endpoint is not None:
            try:
                return self._post_to(endpoint, path, body)
            except _Unreachable as exc:
                if exc.message == LEARNER_REFUSAL:
                    raise EtcdError(exc.message, endpoint=endpoint)
                raise EtcdError(str(exc), endpoint=endpoint)
        failures = []
        count = len(self.endpoints)
        for offset in range(count):
            index = (self._preferred + offset) % count
            try:
                answer = self._post_to(self.endpoints[index], path, body)
            except _Unreachable as exc:
                log.debug("etcd endpoint failed, trying the next one: %s", exc)
                failures.append(str(exc))
                continue
            self._preferred = index
            return answer
        raise EtcdError("no etcd endpoint answered: " + "; ".join(failures))

    def _retrying(self, call, deadline=None):
        """
        ``call()``, retried with back-off while etcd answers one of RETRYABLE, until
        ``deadline`` seconds have passed (then the last refusal is raised).
        """
        started = time.monotonic()
        give_up_at = started + (self.retry_timeout if deadline is None else deadline)
        # what the last retried call went through, for callers that report or measure it
        self.last_retries = {"refusals": [], "waited": 0.0}
        pause = 0.1
        while True:
            try:
                return call()
            except EtcdError as exc:
                if exc.message not in RETRYABLE or time.monotonic() + pause > give_up_at:
                    raise
                log.debug("etcd refused (%s), retrying in %.1f s", exc.message, pause)
                self.last_retries["refusals"].append(exc.message)
            finally:
                self.last_retries["waited"] = round(time.monotonic() - started, 3)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    # -- cluster --------------------------------------------------------------------------------

    def members(self):
        """Every member: id (hex), name, peer_urls, client_urls, is_learner, started."""
        answer = self._post("cluster/member/list", {})
        return [_member(raw) for raw in answer.get("members", [])]

    def status(self, endpoint):
        """The status of the member at ``endpoint`` (learners answer it too)."""
        answer = self._post("maintenance/status", {}, endpoint=endpoint)
        return {
            "endpoint": endpoint,
            "id": member_id_hex(answer["header"]["member_id"]),
            "version": answer.get("version", ""),
            "db_size": int(answer.get("dbSize", 0)),
            "db_size_in_use": int(answer.get("dbSizeInUse", 0)),
            "leader": member_id_hex(answer.get("leader", 0)),
            "raft_index": int(answer.get("raftIndex", 0)),
            "raft_term": int(answer.get("raftTerm", 0)),
            "raft_applied_index": int(answer.get("raftAppliedIndex", 0)),
            "is_learner": bool(answer.get("isLearner", False)),
            "errors": list(answer.get("errors") or []),
        }

    def health(self, endpoint):
        """
        Whether the member at ``endpoint`` serves a linearizable read and has no alarm
        (what ``etcdctl endpoint health`` checks). Never raises for an unhealthy member.
        """
        started = time.monotonic()
        error = None
        is_learner = False
        try:
            try:
                # the answer does not matter: a linearizable read needs the leader and a quorum
                self._post("kv/range", {"key": _b64("health")}, endpoint=endpoint)
            except EtcdError as exc:
                if exc.message != LEARNER_REFUSAL:
                    raise
                # a learner serves serializable reads only: that it serves one is its health
                is_learner = True
                self._post(
                    "kv/range", {"key": _b64("health"), "serializable": True}, endpoint=endpoint
                )
            if not is_learner:
                # alarms are the cluster's: a learner refuses to list them
                alarms = self._post("maintenance/alarm", {"action": "GET"}, endpoint=endpoint)
                active = sorted({a.get("alarm", "") for a in alarms.get("alarms") or []})
                if active:
                    error = "Active Alarm(s): " + ", ".join(active)
        except EtcdError as exc:
            error = exc.message
        return {
            "endpoint": endpoint,
            "healthy": error is None,
            "error": error,
            "took": round(time.monotonic() - started, 3),
            "is_learner": is_learner,
        }

    def alarms(self):
        """Active alarms: [{"member_id" (hex), "alarm" (NOSPACE, CORRUPT)}]."""
        answer = self._post("maintenance/alarm", {"action": "GET"})
        return [
            {"member_id": member_id_hex(a.get("memberID", 0)), "alarm": a.get("alarm", "NONE")}
            for a in answer.get("alarms") or []
        ]

    def member_add(self, peer_urls, learner=True, deadline=None):
        """Add a member (a learner unless ``learner=False``): {"member": {...}, "members": [...]}."""
        if isinstance(peer_urls, str):
            peer_urls = [peer_urls]
        body = {"peerURLs": list(peer_urls), "isLearner": bool(learner)}
        answer = self._retrying(lambda: self._post("cluster/member/add", body), deadline)
        return {
            "member": _member(answer["member"]),
            "members": [_member(raw) for raw in answer.get("members", [])],
        }

    def member_promote(self, member_id, deadline=None):
        """Promote learner ``member_id`` (hex) to a voter; retries "not in sync" until deadline."""
        body = {"ID": _member_id_decimal(member_id)}
        answer = self._retrying(lambda: self._post("cluster/member/promote", body), deadline)
        return [_member(raw) for raw in answer.get("members", [])]

    def member_remove(self, member_id, deadline=None):
        """Remove member ``member_id`` (hex)."""
        body = {"ID": _member_id_decimal(member_id)}
        answer = self._retrying(lambda: self._post("cluster/member/remove", body), deadline)
        return [_member(raw) for raw in answer.get("members", [])]

    def move_leader(self, member_id, endpoint):
        """Hand leadership to ``member_id``; ``endpoint`` must be the current leader's."""
        body = {"targetID": _member_id_decimal(member_id)}
        self._post("maintenance/transfer-leadership", body, endpoint=endpoint)

    # -- keys -----------------------------------------------------------------------------------

    def put(self, key, value, lease=None):
        body = {"key": _b64(key), "value": _b64(str(value))}
        if lease is not None:
            body["lease"] = lease
        self._post("kv/put", body)

    def get(self, key):
        """The value of ``key``, or None when there is no such key."""
        answer = self._post("kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs") or []
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def delete(self, key):
        """Delete ``key``; the number of keys deleted (0 or 1)."""
        answer = self._post("kv/deleterange", {"key": _b64(key)})
        return int(answer.get("deleted", 0))

    # -- lock -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name, ttl=60, wait=300, holder=None):
        """
        Hold the cluster-wide lock ``name`` for the ``with`` block: a key created only if
        absent, bound to a lease kept alive meanwhile (so a holder that dies frees it after
        ``ttl`` seconds), deleted on exit. Waits up to ``wait`` seconds for another holder,
        then raises EtcdError naming it.
        """
        key = LOCK_PREFIX + name
        holder = holder or "{}:{}:{}".format(socket.gethostname(), os.getpid(), uuid.uuid4().hex)
        lease = int(self._post("lease/grant", {"TTL": int(ttl), "ID": 0})["ID"])
        try:
            self._acquire(key, holder, lease, wait)
            keeper = _LeaseKeeper(self, lease, ttl)
            keeper.start()
            try:
                yield holder
            finally:
                keeper.stop()
                self._release(key, holder)
        finally:
            try:
                self._post("kv/lease/revoke", {"ID": lease})
            except EtcdError as exc:
                log.warning("could not revoke lease %x of lock %s: %s", lease, key, exc)

    def _acquire(self, key, holder, lease, wait):
        give_up_at = time.monotonic() + wait
        txn = {
            "compare": [
                {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
            ],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(holder), "lease": lease}}],
            "failure": [{"request_range": {"key": _b64(key)}}],
        }
        pause = 0.2
        while True:
            answer = self._post("kv/txn", txn)
            if answer.get("succeeded"):
                return
            held_by = "?"
            for response in answer.get("responses") or []:
                kvs = (response.get("response_range") or {}).get("kvs") or []
                if kvs:
                    held_by = _unb64(kvs[0].get("value", ""))
            if time.monotonic() + pause > give_up_at:
                raise EtcdError(
                    "timed out after {} s waiting for lock {} held by {}".format(wait, key, held_by)
                )
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _release(self, key, holder):
        txn = {
            "compare": [{"key": _b64(key), "result": "EQUAL", "target": "VALUE", "value": _b64(holder)}],
            "success": [{"request_delete_range": {"key": _b64(key)}}],
            "failure": [],
        }
        try:
            self._post("kv/txn", txn)
        except EtcdError as exc:
            # the lease is revoked next, which deletes the key anyway
            log.warning("could not delete lock %s: %s", key, exc)


class _LeaseKeeper(threading.Thread):
    """Refreshes a lease every third of its TTL until stopped."""

    def __init__(self, client, lease, ttl):
        super().__init__(name="etcd-lease-{:x}".format(lease), daemon=True)
        self.client = client
        self.lease = lease
        self.interval = max(ttl / 3.0, 0.5)
        self._stopped = threading.Event()

    def run(self):
        while not self._stopped.wait(self.interval):
            try:
                answer = self.client._post("lease/keepalive", {"ID": self.lease})
                if int((answer.get("result") or {}).get("TTL", -1)) <= 0:
                    log.error("etcd lease %x expired: the lock it holds is lost", self.lease)
                    return
            except EtcdError as exc:
                log.warning("could not refresh etcd lease %x: %s", self.lease, exc)

    def stop(self):
        self._stopped.set()
        self.join()

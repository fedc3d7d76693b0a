"""
The one etcd client of the formula, over etcd's JSON gateway (``/v3/...``) with etcd3gw.

Everything else reaches etcd through it, by way of ``etcd_membership.connect`` (the layer
the execution module, the states and the runner call).

- Endpoints are tried in order; the client fails over to the next one on a connection error
  (refused, timed out, TLS failure) and when the endpoint is a learner, which serves no
  linearizable request. The endpoint that answered is tried first next time.
- TLS: ``verify`` is the cluster CA and ``cert`` the client pair, on a requests Session with
  ``trust_env = False``: requests would otherwise let ``REQUESTS_CA_BUNDLE`` from the
  environment override the CA, and TLS to etcd would fail for users who have it set.
- Member IDs are hex strings, as etcdctl prints them (the gateway speaks uint64 decimals).
- Errors are the classes of ``etcd_errors``: etcd's own messages are mapped to them here
  (``refusal``), and nowhere else; callers decide by class.
- Membership changes retry the ``EtcdRetryable`` refusals with back-off until a deadline.

Salt loads each ``_utils`` file on its own (as ``salt.loaded.ext.utils.<name>``), where a
relative import fails: the formula's utils import each other by plain name from the
directory they were synced to, so a process holds one copy of each, and of its exception
classes, whoever raises or catches them.
"""

import base64
import contextlib
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
import uuid

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_errors as errors  # noqa: E402

try:
    import requests
    from etcd3gw import exceptions as etcd3gw_exceptions
    from etcd3gw.client import Etcd3Client

    HAS_ETCD3GW = True
except ImportError:
    HAS_ETCD3GW = False

log = logging.getLogger(__name__)

__virtualname__ = "etcd_client"

# etcd's messages, each mapped to the class its callers decide by (prefix match: etcd adds
# details after some of them).
REFUSALS = (
    ("etcdserver: unhealthy cluster", errors.EtcdUnhealthyCluster),
    ("etcdserver: too many learner members in cluster", errors.EtcdTooManyLearners),
    ("etcdserver: can only promote a learner member which is in sync with leader",
     errors.EtcdLearnerNotReady),
    ("etcdserver: can only promote a learner member", errors.EtcdNotLearner),
    ("etcdserver: Peer URLs already exists", errors.EtcdAlreadyMember),
    # the same peer URLs added within the same second: the new ID derives from URLs and time
    ("etcdserver: member ID already exist", errors.EtcdAlreadyMember),
    ("etcdserver: member not found", errors.EtcdMemberNotFound),
    ("etcdserver: permission denied", errors.EtcdPermissionDenied),
    ("etcdserver: invalid auth token", errors.EtcdAuthFailed),
    ("etcdserver: authentication failed", errors.EtcdAuthFailed),
    ("etcdserver: user name is empty", errors.EtcdAuthFailed),
    ("etcdserver: revision of auth store is old", errors.EtcdAuthFailed),
    ("etcdserver: authentication is not enabled", errors.EtcdAuthNotEnabled),
    ("etcdserver: user name already exists", errors.EtcdAuthExists),
    ("etcdserver: role name already exists", errors.EtcdAuthExists),
    ("etcdserver: user name not found", errors.EtcdAuthNotFound),
    ("etcdserver: role name not found", errors.EtcdAuthNotFound),
    ("etcdserver: permission not granted to the role", errors.EtcdAuthNotFound),
    ("mvcc: database space exceeded", errors.EtcdNoSpace),
    ("mvcc: required revision has been compacted", errors.EtcdCompacted),
    ("etcdserver: mvcc: required revision has been compacted", errors.EtcdCompacted),
    ("etcdserver: mvcc: database space exceeded", errors.EtcdNoSpace),
    ("etcdserver: rpc not supported for learner", errors.EtcdLearnerRefusal),
)

# Answered by a member's JSON gateway that cannot reach the member's own gRPC server (the
# member is starting or stopping; seen with etcd 3.5 during a rolling restart, and with 3.4
# while it stops: its port answered the gateway's gRPC call as plain HTTP, so the request
# never reached etcd): as good as a refused connection, so the next endpoint is asked.
# "raft: stopped" is a member just removed (or stopping) whose raft node no longer takes
# proposals (raft.ErrStopped: refused before the proposal was made, so never applied).
# "raft proposal dropped" (raft.ErrProposalDropped) is a proposal the member's raft did not
# append, never applied: made while leadership moved, as a rolling restart moves it off a
# member before restarting it (seen once under the writer in the CA rotation drill).
GATEWAY_DIAL_FAILURES = ("connection error:", "transport is closing",
                         "OK: HTTP status code 200; transport: missing content-type field",
                         "raft: stopped", "raft proposal dropped")

# The gateway path is /v3/ from etcd 3.4 on; fixing it saves a /version round-trip per endpoint.
API_PATH = "/v3/"
LOCK_PREFIX = "/etcd-formula/locks/"


def __virtual__():
    if not HAS_ETCD3GW:
        return (False, "etcd_client needs the etcd3gw Python package")
    return __virtualname__


def refusal(message, endpoint=None, code=None):
    """The error etcd's ``message`` stands for: an ``EtcdRefused`` of the class its callers
    decide by (``EtcdRefused`` itself for a message of no known kind)."""
    for prefix, kind in REFUSALS:
        if message.startswith(prefix):
            return kind(message, endpoint=endpoint, code=code)
    return errors.EtcdRefused(message, endpoint=endpoint, code=code)


def connect(
    endpoints, ca_file=None, cert_file=None, key_file=None, timeout=5, retry_timeout=60,
    credentials=None,
):
    """
    A client for the etcd cluster reachable at ``endpoints`` (a list of ``https://host:port``,
    or one such string). ``timeout``: seconds per request; ``retry_timeout``: how long
    membership changes retry etcd's retryable refusals by default; ``credentials``: (user,
    password) an etcd with authentication on is asked with (a token per member, as simple
    tokens are the issuing member's only; none asked while authentication is off).
    """
    return EtcdClient(
        endpoints,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        timeout=timeout,
        retry_timeout=retry_timeout,
        credentials=credentials,
    )


def member_id_hex(raw_id):
    """etcd's uint64 member ID (int or decimal string) as etcdctl prints it."""
    return "{:x}".format(int(raw_id))


def _member_id_decimal(member_id):
    try:
        return str(int(str(member_id), 16))
    except ValueError:
        raise errors.EtcdMemberNotFound(
            "not a member ID (hex, as etcdctl prints it): {!r}".format(member_id)
        ) from None


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


def _is_refused(text):
    return "Connection refused" in text or "[Errno 111]" in text


def _refusal_message(detail_text):
    """
    etcd's message from a gateway error body (``{"error"|"message": ..., "code": ...}``, or
    ``{"error": {"message": ..., "grpc_code": ...}}``), or None when the text is not such a
    body (then the request never reached etcd).
    """
    try:
        body = json.loads(detail_text or "")
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    message, code = body.get("message") or body.get("error"), body.get("code")
    if isinstance(message, dict):
        # the gateway's stream-error shape ({"error": {"grpc_code", "message", ...}}), seen
        # from etcd 3.5 mid-restart: the same refusal, one level down
        message, code = message.get("message"), message.get("grpc_code", code)
    if not isinstance(message, str) or not message:
        return None, None
    return message, code


def _member(raw):
    return {
        "id": member_id_hex(raw.get("ID", raw.get("id", 0))),
        # etcd learns a member's name and client URLs when it first starts
        "name": raw.get("name", ""),
        "peer_urls": list(raw.get("peerURLs") or []),
        "client_urls": list(raw.get("clientURLs") or []),
        "is_learner": bool(raw.get("isLearner", False)),
        "started": bool(raw.get("name")),
    }


class _Unreachable(Exception):
    """This endpoint did not answer (or cannot serve the request): try the next one."""

    def __init__(self, message, endpoint, refused=False, learner=False):
        super().__init__("{}: {}".format(endpoint, message))
        self.message = message
        self.endpoint = endpoint
        # nothing listens there (connection refused): not running, rather than unknown
        self.refused = refused
        self.learner = learner


def _session(ca_file, cert_file, key_file):
    session = requests.Session()
    session.trust_env = False
    if ca_file:
        session.verify = ca_file
    if cert_file and key_file:
        session.cert = (cert_file, key_file)
    return session


def peer_members(peer_url, ca_file, cert_file, key_file, timeout=2):
    """
    What the etcd at ``peer_url`` (a peer URL) says its cluster is: ``{"cluster_id" (hex),
    "members": [...]}``, from the peer port's ``/members``. A member answers it without a
    leader or a quorum, and a bootstrapping one with its initial members: it tells which
    cluster a member belongs to when nothing else can. ``EtcdUnreachable`` otherwise, its
    ``refused`` true when nothing listens there.
    """
    url = peer_url.rstrip("/") + "/members"
    with _session(ca_file, cert_file, key_file) as session:
        try:
            answer = session.get(url, timeout=timeout)
        except requests.exceptions.RequestException as exc:
            text = str(exc)
            raise errors.EtcdUnreachable(
                "{}: {}".format(peer_url, _connection_failure(text)),
                failures={peer_url: _connection_failure(text)},
                endpoint=peer_url,
                refused=_is_refused(text),
            ) from None
    if answer.status_code != 200:
        raise errors.EtcdUnreachable(
            "{}: HTTP {} on /members".format(peer_url, answer.status_code),
            failures={peer_url: "HTTP {}".format(answer.status_code)},
            endpoint=peer_url,
            refused=False,
        )
    cluster_id = answer.headers.get("X-Etcd-Cluster-ID", "")
    return {
        "cluster_id": cluster_id.lower(),
        "members": [_member(raw) for raw in answer.json()],
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
        credentials=None,
    ):
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise errors.EtcdUnreachable("no etcd endpoints given")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.session = _session(ca_file, cert_file, key_file)
        self._gateways = {}
        # (user, password): never logged, never in an error message
        self._credentials = tuple(credentials) if credentials and credentials[0] else None
        self._tokens = {}  # endpoint -> token ("" while that member's auth is off)
        self._tokens_lock = threading.Lock()
        self._preferred = 0
        self.last_retries = {"refusals": [], "waited": 0.0}

    def close(self):
        """Close the HTTP connections (a client is also a context manager)."""
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- transport ------------------------------------------------------------------------------

    def _gateway(self, endpoint):
        if endpoint not in self._gateways:
            url = urllib.parse.urlsplit(endpoint)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise errors.EtcdUnreachable("not an etcd client URL: {!r}".format(endpoint))
            self._gateways[endpoint] = Etcd3Client(
                host=url.hostname,
                port=url.port or 2379,
                protocol=url.scheme,
                timeout=self.timeout,
                api_path=API_PATH,
                session=self.session,
            )
        return self._gateways[endpoint]

    def _token(self, endpoint, fresh=False):
        """The token ``endpoint`` gave the credentials ("" when it has authentication off,
        None without credentials). Asked once per member, again when ``fresh``."""
        if self._credentials is None:
            return None
        with self._tokens_lock:
            if fresh or endpoint not in self._tokens:
                user, password = self._credentials
                try:
                    answer = self._send(endpoint, "auth/authenticate",
                                        {"name": user, "password": password}, None)
                    self._tokens[endpoint] = answer.get("token") or ""
                except errors.EtcdAuthNotEnabled:
                    self._tokens[endpoint] = ""
                except _Unreachable as exc:
                    if not exc.learner:
                        raise
                    # a learner logs nobody in (a login goes through raft), and what it
                    # serves (its status) needs no token: asked without one. Once promoted,
                    # its "user name is empty" renews the token (_post_to)
                    self._tokens[endpoint] = ""
            return self._tokens[endpoint]

    def _post_to(self, endpoint, path, body):
        """One request to one endpoint: etcd's answer, an EtcdRefused, or _Unreachable. With
        credentials, a refused or expired token (or authentication turned on meanwhile) is
        renewed once and the request sent again."""
        if path == "auth/authenticate":  # a login needs no token (and must not fail for one)
            return self._send(endpoint, path, body, None)
        try:
            return self._send(endpoint, path, body, self._token(endpoint))
        except errors.EtcdAuthFailed:
            if self._credentials is None:
                raise
            log.debug("etcd at %s refused the token: authenticating again", endpoint)
            return self._send(endpoint, path, body, self._token(endpoint, fresh=True))

    def _send(self, endpoint, path, body, token):
        gateway = self._gateway(endpoint)
        headers = {"Authorization": token} if token else None
        try:
            return gateway.post(gateway.get_url(path), json=body, headers=headers)
        except etcd3gw_exceptions.Etcd3Exception as exc:
            # etcd3gw maps HTTP 503 to ConnectionFailedError too; etcd's JSON body tells
            # a refusal ("unhealthy cluster" is a 503) from a request that never got there.
            message, code = _refusal_message(exc.detail_text)
            if message is None:
                text = exc.detail_text or str(exc)
                raise _Unreachable(_connection_failure(text), endpoint, _is_refused(text)) from None
            if message.startswith(GATEWAY_DIAL_FAILURES):
                raise _Unreachable(message, endpoint) from None
            error = refusal(message, endpoint=endpoint, code=code)
            if isinstance(error, errors.EtcdLearnerRefusal):
                raise _Unreachable(message, endpoint, learner=True) from None
            raise error from None
        except requests.exceptions.RequestException as exc:
            text = str(exc)
            raise _Unreachable(_connection_failure(text), endpoint, _is_refused(text)) from None

    def _post(self, path, body, endpoint=None):
        """
        POST to ``endpoint`` only, or to the endpoints in turn until one answers.
        """
        if endpoint is not None:
            try:
                return self._post_to(endpoint, path, body)
            except _Unreachable as exc:
                if exc.learner:
                    raise errors.EtcdLearnerRefusal(exc.message, endpoint=endpoint) from None
                raise errors.EtcdUnreachable(
                    str(exc), failures={endpoint: exc.message}, endpoint=endpoint,
                    refused=exc.refused,
                ) from None
        failures = {}
        count = len(self.endpoints)
        for offset in range(count):
            index = (self._preferred + offset) % count
            try:
                answer = self._post_to(self.endpoints[index], path, body)
            except _Unreachable as exc:
                log.debug("etcd endpoint failed, trying the next one: %s", exc)
                failures[exc.endpoint] = exc.message
                continue
            self._preferred = index
            return answer
        raise errors.EtcdUnreachable(
            "no etcd endpoint answered: "
            + "; ".join("{}: {}".format(e, why) for e, why in failures.items()),
            failures=failures,
        )

    def _retrying(self, call, deadline=None):
        """
        ``call()``, retried with back-off while etcd answers an EtcdRetryable refusal, until
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
            except errors.EtcdRetryable as exc:
                if time.monotonic() + pause > give_up_at:
                    raise
                log.debug("etcd refused (%s), retrying in %.1f s", exc.message, pause)
                self.last_retries["refusals"].append(exc.message)
            finally:
                self.last_retries["waited"] = round(time.monotonic() - started, 3)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    # -- cluster --------------------------------------------------------------------------------

    def members(self, endpoint=None):
        """Every member (asked of ``endpoint``, or of the endpoints in turn): id (hex), name,
        peer_urls, client_urls, is_learner, started."""
        answer = self._post("cluster/member/list", {}, endpoint=endpoint)
        return [_member(raw) for raw in answer.get("members", [])]

    def status(self, endpoint):
        """The status of the member at ``endpoint`` (learners answer it too, and so does a
        member without a leader: ``leader`` is "0" then)."""
        answer = self._post("maintenance/status", {}, endpoint=endpoint)
        header = answer.get("header") or {}
        return {
            "endpoint": endpoint,
            "id": member_id_hex(header.get("member_id", 0)),
            "cluster_id": member_id_hex(header.get("cluster_id", 0)),
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

    def versions(self, endpoint):
        """{"server", "cluster"}: the etcd version the member at ``endpoint`` runs, and the
        cluster version it sees (``GET /version``; "" while the cluster has not decided
        one). No credentials needed."""
        try:
            answer = self.session.get(endpoint.rstrip("/") + "/version", timeout=self.timeout)
            answer.raise_for_status()
            found = answer.json()
        except (requests.exceptions.RequestException, ValueError) as exc:
            text = str(exc)
            raise errors.EtcdUnreachable(
                "{}: {}".format(endpoint, _connection_failure(text)),
                failures={endpoint: _connection_failure(text)}, endpoint=endpoint,
                refused=_is_refused(text)) from None
        return {"server": str(found.get("etcdserver") or ""),
                "cluster": str(found.get("etcdcluster") or "")}

    def health(self, endpoint):
        """
        Whether the member at ``endpoint`` serves a linearizable read and has no alarm
        (what ``etcdctl endpoint health`` checks). Never raises for an unhealthy member.
        """
        started = time.monotonic()
        error = None
        is_learner = False
        serving = False  # it served the read (an alarm may still make it unhealthy)
        try:
            try:
                # the answer does not matter: a linearizable read needs the leader and a quorum
                self._post("kv/range", {"key": _b64("health")}, endpoint=endpoint)
            except errors.EtcdLearnerRefusal:
                # a learner serves serializable reads only: that it serves one is its health
                is_learner = True
                self._post(
                    "kv/range", {"key": _b64("health"), "serializable": True}, endpoint=endpoint
                )
            except errors.EtcdPermissionDenied:
                pass  # as etcdctl: a member that checks permissions is serving
            serving = True
            if not is_learner:
                # alarms are the cluster's: a learner refuses to list them
                alarms = self._post("maintenance/alarm", {"action": "GET"}, endpoint=endpoint)
                active = sorted({a.get("alarm", "") for a in alarms.get("alarms") or []})
                if active:
                    error = "Active Alarm(s): " + ", ".join(active)
        except errors.EtcdError as exc:
            error = exc.message
        return {
            "endpoint": endpoint,
            "healthy": error is None,
            "serving": serving,
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

    def alarm_disarm(self, member_id, alarm):
        """Disarm ``alarm`` (NOSPACE, CORRUPT) of member ``member_id`` (hex)."""
        self._post("maintenance/alarm", {"action": "DEACTIVATE",
                                         "memberID": _member_id_decimal(member_id),
                                         "alarm": alarm})

    def defragment(self, endpoint):
        """Defragment the db of the member at ``endpoint`` (it serves no request meanwhile:
        give the client a timeout for it)."""
        self._post("maintenance/defragment", {}, endpoint=endpoint)

    def compact(self, revision):
        """Compact the key history up to ``revision`` (physically: done when this returns).
        False when it was compacted that far already."""
        try:
            self._post("kv/compaction", {"revision": int(revision), "physical": True})
        except errors.EtcdCompacted:
            return False
        return True

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

    def snapshot(self, endpoint, handle, timeout=600):
        """
        Stream the snapshot of the member at ``endpoint`` into ``handle`` (a binary file), as
        ``etcdctl snapshot save`` writes it: the db, then etcd's sha256 of it (the stream's
        last message). Bytes written. A member serves it from its own db, leader or not.
        """
        url = endpoint.rstrip("/") + API_PATH + "maintenance/snapshot"
        written = 0
        try:
            token = self._token(endpoint)
        except _Unreachable as exc:
            raise errors.EtcdUnreachable(str(exc), failures={endpoint: exc.message},
                                         endpoint=endpoint, refused=exc.refused) from None
        try:
            with self.session.post(url, json={}, stream=True, timeout=(self.timeout, timeout),
                                   headers={"Authorization": token} if token else None) as answer:
                if answer.status_code != 200:
                    message, code = _refusal_message(answer.text)
                    raise refusal(message or "HTTP {}".format(answer.status_code),
                                  endpoint=endpoint, code=code)
                for line in answer.iter_lines(chunk_size=1 << 20):
                    if not line:
                        continue
                    message = json.loads(line)
                    if "error" in message:
                        error = message["error"]
                        raise refusal(error.get("message", str(error)), endpoint=endpoint,
                                      code=error.get("grpc_code"))
                    blob = base64.b64decode((message.get("result") or {}).get("blob") or "")
                    handle.write(blob)
                    written += len(blob)
        except requests.exceptions.RequestException as exc:
            text = str(exc)
            raise errors.EtcdUnreachable(
                "{}: {}".format(endpoint, _connection_failure(text)),
                failures={endpoint: _connection_failure(text)}, endpoint=endpoint,
                refused=_is_refused(text)) from None
        return written

    def revision(self):
        """The cluster's current revision."""
        answer = self._post("kv/range", {"key": _b64("\0"), "limit": 1})
        return int((answer.get("header") or {}).get("revision", 0))

    def keys(self, prefix=""):
        """{key: value} of every key under ``prefix`` ("" for all): what a restore must give back."""
        body = {"key": _b64(prefix or "\0")}
        if prefix:
            end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            body["range_end"] = _b64(end)
        else:
            body["range_end"] = _b64("\0")
        answer = self._post("kv/range", body)
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in answer.get("kvs") or []}

    # -- keys -----------------------------------------------------------------------------------

    def put(self, key, value, lease=None):
        body = {"key": _b64(key), "value": _b64(str(value))}
        if lease is not None:
            body["lease"] = lease
        self._post("kv/put", body)

    def get(self, key):
        """The value of ``key``, or None when there is no such key."""
        found = self.get_versioned(key)
        return found["value"] if found else None

    def get_versioned(self, key):
        """``key``'s {"value", "create_revision", "mod_revision"}, or None when there is no
        such key. ``create_revision`` changes only when the key is deleted and made again (a
        patroni leader key lost and taken anew, even by the same host)."""
        answer = self._post("kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs") or []
        if not kvs:
            return None
        return {"value": _unb64(kvs[0].get("value", "")),
                "create_revision": int(kvs[0].get("create_revision", 0)),
                "mod_revision": int(kvs[0].get("mod_revision", 0))}

    def delete(self, key):
        """Delete ``key``; the number of keys deleted (0 or 1)."""
        answer = self._post("kv/deleterange", {"key": _b64(key)})
        return int(answer.get("deleted", 0))

    # -- authentication (RBAC) ------------------------------------------------------------------

    def auth_enabled(self):
        """Whether the cluster has authentication on (asked by authenticating: etcd 3.4 has
        no auth/status)."""
        user, password = self._credentials or ("", "")
        try:
            self._post("auth/authenticate", {"name": user, "password": password})
        except errors.EtcdAuthNotEnabled:
            return False
        except errors.EtcdAuthFailed:
            return True  # a wrong or empty user: refused because authentication is on
        return True

    def auth_enable(self):
        """Turn authentication on (etcd refuses unless user root exists with role root)."""
        self._post("auth/enable", {})
        with self._tokens_lock:
            self._tokens.clear()

    def auth_disable(self):
        self._post("auth/disable", {})
        with self._tokens_lock:
            self._tokens.clear()

    def users(self):
        """{user: [its roles]}."""
        names = self._post("auth/user/list", {}).get("users") or []
        return {name: sorted(self._post("auth/user/get", {"name": name}).get("roles") or [])
                for name in names}

    def user_add(self, name, password):
        self._post("auth/user/add", {"name": name, "password": password})

    def user_password(self, name, password):
        self._post("auth/user/changepw", {"name": name, "password": password})

    def user_delete(self, name):
        self._post("auth/user/delete", {"name": name})

    def user_grant(self, name, role):
        self._post("auth/user/grant", {"user": name, "role": role})

    def user_revoke(self, name, role):
        self._post("auth/user/revoke", {"name": name, "role": role})

    def password_works(self, name, password):
        """Whether etcd (authentication on) takes ``password`` for ``name``."""
        try:
            self._post("auth/authenticate", {"name": name, "password": password})
        except errors.EtcdAuthFailed:
            return False
        return True

    def roles(self):
        """{role: sorted [(READ|WRITE|READWRITE, key, range_end)]} (key, range_end as text;
        range_end "" for a single key)."""
        names = self._post("auth/role/list", {}).get("roles") or []
        found = {}
        for name in names:
            perms = self._post("auth/role/get", {"role": name}).get("perm") or []
            found[name] = sorted(
                # the gateway leaves out READ, the enum's zero value
                (perm.get("permType") or "READ", _unb64(perm.get("key") or ""),
                 _unb64(perm.get("range_end") or "")) for perm in perms)
        return found

    def role_add(self, name):
        self._post("auth/role/add", {"name": name})

    def role_delete(self, name):
        self._post("auth/role/delete", {"role": name})

    def role_grant(self, name, perm_type, key, range_end=""):
        perm = {"permType": perm_type, "key": _b64(key)}
        if range_end:
            perm["range_end"] = _b64(range_end)
        self._post("auth/role/grant", {"name": name, "perm": perm})

    def role_revoke(self, name, key, range_end=""):
        body = {"role": name, "key": _b64(key)}
        if range_end:
            body["range_end"] = _b64(range_end)
        self._post("auth/role/revoke", body)

    # -- lock -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name, ttl=60, wait=300, holder=None):
        """
        Hold the cluster-wide lock ``name`` for the ``with`` block: a key created only if
        absent, bound to a lease kept alive meanwhile (so a holder that dies frees it after
        ``ttl`` seconds), deleted on exit. Waits up to ``wait`` seconds for another holder,
        then raises EtcdLockHeld naming it. Yields a ``Held`` lock: ``held.check()`` raises
        EtcdLockLost once the lease could not be kept (check it before what it guards).
        """
        key = LOCK_PREFIX + name
        holder = holder or "{}:{}:{}".format(socket.gethostname(), os.getpid(), uuid.uuid4().hex)
        lease = int(self._post("lease/grant", {"TTL": int(ttl), "ID": 0})["ID"])
        try:
            self._acquire(key, holder, lease, wait, ttl)
            held = Held(self, key, holder, lease, ttl)
            held.start()
            try:
                yield held
            finally:
                held.stop()
                self._release(key, holder)
        finally:
            try:
                self._post("kv/lease/revoke", {"ID": lease})
            except errors.EtcdError as exc:
                log.warning("could not revoke lease %x of lock %s: %s", lease, key, exc)

    def lock_holder(self, name):
        """Who holds lock ``name`` now, or None."""
        return self.get(LOCK_PREFIX + name)

    def _acquire(self, key, holder, lease, wait, ttl=60):
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
                raise errors.EtcdLockHeld(
                    "lock {} is held by {} (waited {} s)".format(key, held_by, wait),
                    holder=held_by,
                )
            time.sleep(pause)
            pause = min(pause * 2, 2.0, ttl / 3.0)
            # a wait longer than the TTL must not lose the lease the lock is taken with
            self._post("lease/keepalive", {"ID": lease})

    def _release(self, key, holder):
        txn = {
            "compare": [{"key": _b64(key), "result": "EQUAL", "target": "VALUE", "value": _b64(holder)}],
            "success": [{"request_delete_range": {"key": _b64(key)}}],
            "failure": [],
        }
        try:
            self._post("kv/txn", txn)
        except errors.EtcdError as exc:
            # the lease is revoked next, which deletes the key anyway
            log.warning("could not delete lock %s: %s", key, exc)


class Held(threading.Thread):
    """A held lock: refreshes its lease every third of its TTL until stopped, and knows when
    the lease is lost (etcd says it expired, or no refresh got through for a whole TTL)."""

    def __init__(self, client, key, holder, lease, ttl):
        super().__init__(name="etcd-lease-{:x}".format(lease), daemon=True)
        self.client = client
        self.key = key
        self.holder = holder
        self.lease = lease
        self.ttl = ttl
        self.interval = max(ttl / 3.0, 0.5)
        self._stopped = threading.Event()
        self._last_ok = time.monotonic()
        self.lost = None  # why the lease is lost, once it is
        self.pid = os.getpid()

    def run(self):
        while not self._stopped.wait(self.interval):
            try:
                answer = self.client._post("lease/keepalive", {"ID": self.lease})
            except errors.EtcdError as exc:
                log.warning("could not refresh etcd lease %x: %s", self.lease, exc)
                if time.monotonic() - self._last_ok >= self.ttl:
                    self.lost = "its lease {:x} was not refreshed for {} s".format(
                        self.lease, self.ttl)
                    return
                continue
            if int((answer.get("result") or {}).get("TTL", -1)) <= 0:
                self.lost = "its lease {:x} expired".format(self.lease)
                log.error("etcd lock %s lost: %s", self.key, self.lost)
                return
            self._last_ok = time.monotonic()

    def check(self):
        """Raise EtcdLockLost unless the lock is still held (call it before acting). In a
        process forked from the holder (a parallel orchestration step) the holder's keeper is
        the judge: nothing is checked here."""
        if os.getpid() != self.pid:
            return
        if self.lost is None and time.monotonic() - self._last_ok >= self.ttl:
            self.lost = "its lease {:x} was not refreshed for {} s".format(self.lease, self.ttl)
        if self.lost is not None:
            raise errors.EtcdLockLost("lock {} is lost: {}".format(self.key, self.lost))

    def stop(self):
        self._stopped.set()
        self.join()

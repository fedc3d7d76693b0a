"""
The formula's CA, on the CA server (pillar ``etcd:pki:ca_server``, never an etcd member): it
signs what members and clients ask for, with the identity the pillar gives each of them
(``etcd_pki.identity``: who holds which certificate, pinned), never what the request says.

Requests arrive as events: a minion fires ``etcd/cert/request`` (``event.fire_master``) with
its certificate requests; the master's reactor (``etcd/reactor/sign.sls``) runs ``sign`` here
with the requester's id as the master authenticated it; the certificates go back through the
mine (``etcd_issued_<minion>``), where the requester reads them. No master worker waits on
this minion meanwhile (what x509_v2's peer-published remote signing does, which starves a
master's workers when many minions apply at once).

The CA key never leaves ``<ca_dir>/ca.key`` (0600).

A CA rotation (``salt-run etcd.rotate_ca``, which sequences the rest) moves the CA files in
three steps, each recorded in ``<ca_dir>/rotation.json`` and each a no-op when done already,
so an interrupted rotation converges when run again:

- ``rotation_begin``: new CAs in ``<ca_dir>/next`` (phase ``trust-both``: the bundles the CA
  server publishes hold the CA that signs, then the next one);
- ``rotation_switch``: the CAs in place go to ``<ca_dir>/previous``, the next ones take their
  place (phase ``reissue``: the new CAs sign; the old ones are still trusted);
- ``rotation_finish``: ``previous`` is archived to ``<ca_dir>/retired/<UTC time>`` (its keys
  kept, 0600; phase ``trust-new``: the bundles hold the new CAs only);
- ``rotation_end``: the record removed once every member and client trusts the new CAs only.
"""

import datetime
import json
import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "etcd_ca"

ISSUED_DIR = "issued"
# A rotation's phases, in order; None: no rotation.
PHASES = ("trust-both", "reissue", "trust-new")


def __virtual__():
    if "etcd_pki.sign" not in __utils__:
        return (False, "etcd_ca needs the formula's _utils (etcd_pki) and cryptography")
    return __virtualname__


def _pillar():
    return __salt__["config.get"]("etcd", {})


def _pki():
    return __utils__["etcd_settings.pki"](_pillar())


def _files(pki, which):
    key, cert = __utils__["etcd_pki.cas"]()[which]
    return os.path.join(pki["ca_dir"], key), os.path.join(pki["ca_dir"], cert)


def _issued_path(pki, requester):
    return os.path.join(pki["ca_dir"], ISSUED_DIR, "{}.json".format(requester))


def mine_name(requester):
    """The mine entry the CA server publishes ``requester``'s certificates under.

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.mine_name h1
    """
    return __utils__["etcd_pki.issued_mine_name"](requester)


def sign(requester, requests, request_id=""):
    """
    Sign ``requester``'s certificate requests with the identities the pillar gives it, and
    publish the answer in the mine (``etcd_issued_<requester>``): {request_id, certificates:
    {usage: PEM}, refused: {usage: why}}. Run by the master's reactor on ``etcd/cert/request``
    events (``requester`` is the minion the master authenticated).

    requester
        The minion id the certificates are for.
    requests
        [{"usage": peer|server|client|patroni|vip_manager, "csr": PEM}, ...].
    request_id
        The requester's id of this request, handed back with the answer.

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.sign h1 '[{"usage": "peer", "csr": "..."}]' request_id=abc
    """
    problem = __utils__["etcd_validate.minion_id_problem"](requester, "requester")
    if problem:
        raise SaltInvocationError(problem)
    pki = _pki()
    if __opts__["id"] != pki["ca_server"]:
        raise CommandExecutionError("{} is not the CA server of pillar etcd:pki ({})".format(
            __opts__["id"], pki["ca_server"]))
    if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
        raise SaltInvocationError("requests: {!r}: expected a list of {{usage, csr}}".format(
            requests)[:300])
    loaded = {}
    pillar = _pillar()
    certificates, refused = {}, {}
    for request in requests:
        usage = request.get("usage")
        try:
            identity = __utils__["etcd_pki.identity"](pillar, requester, usage)
            which = __utils__["etcd_pki.ca_of"](usage)
            if which not in loaded:
                loaded[which] = __utils__["etcd_pki.load_ca"](*_files(pki, which))
            ca_key, ca_cert = loaded[which]
            certificates[usage] = __utils__["etcd_pki.sign"](ca_key, ca_cert, request.get("csr", ""),
                                                             identity)
        except CommandExecutionError as exc:
            refused[str(usage)] = str(exc)
        except ValueError as exc:
            refused[str(usage)] = "not a certificate request: {}".format(exc)
    answer = {"request_id": str(request_id), "certificates": certificates, "refused": refused,
              "issued_at": datetime.datetime.now(datetime.timezone.utc).strftime(
                  "%Y-%m-%dT%H:%M:%SZ")}
    path = _issued_path(pki, requester)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    known = issued(requester)
    # the listing keeps every usage's latest certificate (etcd.certificates)
    answer["all"] = dict(known.get("all") or {}, **certificates)
    partial = path + ".new"
    with open(partial, "w") as handle:
        json.dump(answer, handle)
    os.replace(partial, path)
    with __utils__["etcd_files.exclusive"](
            __utils__["etcd_pki.mine_lock_file"](pki["ca_dir"])):
        sent = __salt__["mine.send"](mine_name(requester), mine_function="etcd_ca.issued",
                                     requester=requester)
    if not sent:
        raise CommandExecutionError("the master did not store the answer for {} in the "
                                    "mine".format(requester))
    return {"request_id": answer["request_id"], "issued": sorted(certificates),
            "refused": refused}


def sign_external(name, csr, cluster):
    """
    Sign the client certificate request ``csr`` of ``name``, a client outside Salt, for
    ``cluster`` (``etcd_pki.external_identity``: no CN, a URI SAN naming it, clientAuth):
    the certificate's PEM. For ``salt-run etcd.credentials`` (a job only the master
    publishes here: no minion's event reaches this function).

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.sign_external app "$(cat app.csr)" etcd
    """
    pki = _pki()
    if __opts__["id"] != pki["ca_server"]:
        raise CommandExecutionError("{} is not the CA server of pillar etcd:pki ({})".format(
            __opts__["id"], pki["ca_server"]))
    identity = __utils__["etcd_pki.external_identity"](_pillar(), cluster, name)
    ca_key, ca_cert = __utils__["etcd_pki.load_ca"](*_files(pki, "client"))
    try:
        return __utils__["etcd_pki.sign"](ca_key, ca_cert, csr, identity)
    except ValueError as exc:
        raise SaltInvocationError("csr: not a certificate request: {}".format(exc)) from None


def issued(requester):
    """
    The CA server's last answer to ``requester`` (what the mine publishes): {request_id,
    certificates, refused, issued_at, all}; {} when it never asked.

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.issued h1
    """
    try:
        with open(_issued_path(_pki(), requester)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def certificates():
    """
    Every certificate this CA issued last to each holder: {minion: {usage: PEM}}.

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.certificates
    """
    directory = os.path.join(_pki()["ca_dir"], ISSUED_DIR)
    found = {}
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.endswith(".json"):
            found[name[:-5]] = issued(name[:-5]).get("all") or {}
    return found


# -- CA rotation ----------------------------------------------------------------------------------

def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _rotation_path(pki):
    return __utils__["etcd_pki.rotation_file"](pki["ca_dir"])


def _record(pki, phase, **data):
    record = dict(rotation(), phase=phase, **data)
    __utils__["etcd_files.replace"](_rotation_path(pki), json.dumps(record, sort_keys=True) + "\n",
                                    mode=0o600)
    return record


def _labels(pki, where):
    found = {}
    for which, (_, cert) in __utils__["etcd_pki.cas"]().items():
        try:
            with open(os.path.join(pki["ca_dir"], where, cert)) as handle:
                found[which] = __utils__["etcd_pki.ca_label"](handle.read())[0]
        except (OSError, IndexError, ValueError):
            found[which] = None
    return found


def rotation():
    """
    The CA rotation under way on this CA server: {phase, started, ...}; {"phase": None}
    when none is.

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.rotation
    """
    try:
        with open(_rotation_path(_pki())) as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return {"phase": None}
    except (OSError, ValueError) as exc:
        raise CommandExecutionError("{}: unreadable ({}): restore it, or see "
                                    "docs/operations.md (CA rotation)".format(
                                        _rotation_path(_pki()), exc)) from None
    if record.get("phase") not in PHASES:
        raise CommandExecutionError("{}: phase {!r}: expected one of {}".format(
            _rotation_path(_pki()), record.get("phase"), ", ".join(PHASES)))
    return record


def _expect(*phases):
    found = rotation()["phase"]
    if found not in phases:
        raise CommandExecutionError("the CA rotation is in phase {}, not {}: run salt-run "
                                    "etcd.rotate_ca, which takes each step in order".format(
                                        found or "none", " or ".join(p or "none" for p in phases)))
    return found


def rotation_begin(common_name="etcd CA", split=False):
    """
    Step 1 of a CA rotation: a new CA for the clients and one for the peers in
    ``<ca_dir>/next`` (keys 0600, the CA key settings of pillar etcd:pki), then phase
    ``trust-both``. Nothing trusts them before that record exists, so a half-made ``next``
    is made again. Refused for your own CA (``ca_provided``). The rotation's record.

    split
        The clusters were built before peers had a CA of their own: their peer
        certificates are the clients' CA's, and their peer ports trust it. The peers' CA in
        place (made by etcd.ca since, trusted by no running member) is archived to
        ``<ca_dir>/retired/<UTC time>-unused``, and the clients' CA takes its place as the
        peers' CA too, so the rotation starts from what the members trust and ends with two
        CAs apart (``salt-run etcd.rotate_ca`` passes it when a member serves such a peer
        certificate).

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.rotation_begin
    """
    pki = _pki()
    if pki["ca_provided"]:
        raise CommandExecutionError("ca_provided is true: the CA is yours, the formula does "
                                    "not rotate it (docs/operations.md)")
    if _expect(None, *PHASES) is not None:
        return rotation()
    if split:
        _peers_from_the_clients_ca(pki)
    for which in ("client", "peer"):
        problem = __utils__["etcd_pki.ca_problem"](*(_read_pair(*_files(pki, which))),
                                                   *_files(pki, which))
        if problem:
            raise CommandExecutionError("the CA in place cannot be rotated: " + problem)
    started = _now()
    next_dir = os.path.join(pki["ca_dir"], "next")
    os.makedirs(next_dir, mode=0o700, exist_ok=True)
    for which, (key_name, cert_name) in __utils__["etcd_pki.cas"]().items():
        key = __utils__["etcd_pki.new_key"](pki["ca_key_algo"], pki["ca_key_size"])
        cn = "{}{} {}".format(common_name, " (peers)" if which == "peer" else "", started)
        cert = __utils__["etcd_pki.new_ca"](key, cn, pki["ca_days_valid"])
        # one file at a time: nothing trusts next/ before the record below exists
        __utils__["etcd_files.replace"](os.path.join(next_dir, key_name),
                                        __utils__["etcd_pki.key_pem"](key), mode=0o600)
        __utils__["etcd_files.replace"](os.path.join(next_dir, cert_name), cert, mode=0o644)
    return _record(pki, "trust-both", started=started, old=_labels(pki, ""),
                   new=_labels(pki, "next"))


def _peers_from_the_clients_ca(pki):
    """The clients' CA copied as the peers' (key 0600); the peers' files in place first
    archived (never deleted). Run again after an interruption, it ends the same way."""
    client, peer = _read_pair(*_files(pki, "client")), _read_pair(*_files(pki, "peer"))
    problem = __utils__["etcd_pki.ca_problem"](*client, *_files(pki, "client"))
    if problem:
        raise CommandExecutionError("the clients' CA cannot become the peers' too: " + problem)
    if peer == client:
        return
    if any(peer):
        archive = os.path.join(pki["ca_dir"], "retired", _now() + "-unused")
        os.makedirs(archive, mode=0o700, exist_ok=True)
        for text, path, mode in zip(peer, _files(pki, "peer"), (0o600, 0o644)):
            if text is not None:
                __utils__["etcd_files.replace"](
                    os.path.join(archive, os.path.basename(path)), text, mode=mode)
    for text, path, mode in zip(client, _files(pki, "peer"), (0o600, 0o644)):
        __utils__["etcd_files.replace"](path, text, mode=mode)


def _read_pair(key_path, cert_path):
    texts = []
    for path in (key_path, cert_path):
        try:
            with open(path) as handle:
                texts.append(handle.read())
        except OSError:
            texts.append(None)
    return texts


def rotation_switch():
    """
    Step 2 of a CA rotation (phase ``trust-both``, once every member and client trusts the
    next CAs): the CAs in place move to ``<ca_dir>/previous``, the next ones take their
    place and sign from now on; phase ``reissue``. Each file moves by one rename: run again
    after an interruption, it goes on where it stopped.

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.rotation_switch
    """
    pki = _pki()
    if _expect("trust-both", "reissue") == "reissue":
        return rotation()
    ca_dir = pki["ca_dir"]
    previous = os.path.join(ca_dir, "previous")
    os.makedirs(previous, mode=0o700, exist_ok=True)
    names = [n for pair in __utils__["etcd_pki.cas"]().values() for n in pair]
    for name in names:
        here, old, new = (os.path.join(ca_dir, name), os.path.join(previous, name),
                          os.path.join(ca_dir, "next", name))
        if os.path.exists(here) and not os.path.exists(old) and os.path.exists(new):
            os.replace(here, old)
        if os.path.exists(new) and not os.path.exists(here):
            os.replace(new, here)
    missing = [n for n in names if not os.path.exists(os.path.join(ca_dir, n))
               or not os.path.exists(os.path.join(previous, n))]
    if missing:
        raise CommandExecutionError("the switch to the next CAs is incomplete ({} missing in {} "
                                    "or {}): nothing more moved; see docs/operations.md".format(
                                        ", ".join(missing), ca_dir, previous))
    if os.path.isdir(os.path.join(ca_dir, "next")):  # gone already when killed after this
        os.rmdir(os.path.join(ca_dir, "next"))
    return _record(pki, "reissue", switched=_now())


def rotation_finish():
    """
    Step 3 of a CA rotation (phase ``reissue``, once every leaf is issued by the new CAs):
    the previous CAs are archived to ``<ca_dir>/retired/<UTC time>`` (kept, keys 0600, never
    trusted again); phase ``trust-new``.

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.rotation_finish
    """
    pki = _pki()
    if _expect("reissue", "trust-new") == "trust-new":
        return rotation()
    previous = os.path.join(pki["ca_dir"], "previous")
    retired = os.path.join(pki["ca_dir"], "retired")
    os.makedirs(retired, mode=0o700, exist_ok=True)
    archive = os.path.join(retired, rotation().get("started") or _now())
    if os.path.isdir(previous):
        os.replace(previous, archive)
    return _record(pki, "trust-new", retired=archive)


def rotation_end():
    """
    Step 4 of a CA rotation (phase ``trust-new``, once every member and client trusts the
    new CAs only): its record removed. What it was.

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.rotation_end
    """
    pki = _pki()
    if _expect("trust-new", None) is None:
        return {"phase": None}
    record = rotation()
    os.remove(_rotation_path(pki))
    return dict(record, phase=None)


def bundles():
    """
    The trust bundles this CA server publishes, with a label per CA ("CN [key id]", the
    signing one first) and the rotation under way: {client, peer, labels, rotation}.

    CLI Example:

    .. code-block:: bash

        salt master etcd_ca.bundles
    """
    pki = _pki()
    found = {which: __utils__["etcd_pki.bundle"](pki["ca_dir"], which)
             for which in ("client", "peer")}
    found["labels"] = {which: __utils__["etcd_pki.ca_label"](found[which])
                       for which in ("client", "peer")}
    found["rotation"] = rotation()
    return found

"""
etcd RBAC from the pillar (``salt-run etcd.auth``, docs/operations.md): the users and roles
``etcd_settings.auth_users`` derives from a cluster's pillar, each client given its
credentials, then authentication turned on, on a running cluster, without a patroni
failover:

1. the members' root credentials file (etcd.auth: etcdctl's, and the formula's on them);
2. users and roles (root, one per patroni cluster, one per vip-manager 2.x+), passwords set
   or changed (a password etcd already takes is left alone);
3. the patroni clients given their user (etcd.clients.patroni: patroni's ``etcd3`` section,
   then a reload; patroni authenticates when etcd asks for it, and ignores credentials
   while authentication is off);
4. ``auth enable`` when the pillar says ``auth: true`` (``auth disable`` when it says false
   and etcd has it on), then checked: root authenticates, patroni's leader keys are the
   ones there were before.

Holds the cluster's operation lock. Re-run after any failure: every step looks first.

The same virtual name as etcd_runner.py (``etcd``): one ``salt-run etcd.*`` namespace.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_steps  # noqa: E402
from etcd_steps import StepFailed, ok, step  # noqa: E402

__virtualname__ = "etcd"

CLIENT_SLS = {"patroni": "etcd.clients.patroni", "vip_manager": "etcd.clients.vip_manager"}


def __virtual__():
    return __virtualname__


def _steps():
    return etcd_steps.of(globals())


def _settings(function):
    return __utils__["etcd_settings." + function]


def _wanted(s, settings):
    """The pillar's users and roles, every password present (an sdb URI read on the
    master; else StepFailed naming it)."""
    users, roles = s.secrets("auth_users", settings)
    missing = sorted(u for u, spec in users.items() if not spec["password"])
    if missing:
        raise StepFailed("cluster {}: no password in pillar for etcd user(s) {} (root: "
                         "root_password; a client: its password)".format(
                             settings["name"], ", ".join(missing)))
    return users, roles


def _users_and_roles(client, users, roles, auth_on):
    """Make etcd's users and roles the pillar's (the formula's users only: others are left
    alone). With authentication off every password is set here; with it on, the users whose
    password etcd does not take are returned to be changed later (a client is given its new
    password first, so that its token, which the change revokes, is renewed with it).
    (what was done, as text: never a password; the users whose password is to change)."""
    done, pending = [], []
    have_roles = client.roles()
    for role, perms in sorted(roles.items()):
        if role not in have_roles:
            client.role_add(role)
            done.append("role {} added".format(role))
            have_roles[role] = []
        if role == "root":
            continue  # etcd's own: every permission
        for perm in sorted(set(perms) - set(have_roles[role])):
            client.role_grant(role, *perm)
            done.append("role {}: {} on {}{} granted".format(
                role, perm[0], perm[1], " (prefix)" if perm[2] else ""))
        for perm in sorted(set(have_roles[role]) - set(perms)):
            client.role_revoke(role, perm[1], perm[2])
            done.append("role {}: {} on {} revoked".format(role, perm[0], perm[1]))
    have_users = client.users()
    for user, spec in sorted(users.items()):
        if user not in have_users:
            client.user_add(user, spec["password"])
            done.append("user {} added".format(user))
            have_users[user] = []
        elif not auth_on:
            # with authentication off etcd cannot say whether it takes a password: set it
            client.user_password(user, spec["password"])
        elif not client.password_works(user, spec["password"]):
            pending.append(user)
        for role in sorted(set(spec["roles"]) - set(have_users[user])):
            client.user_grant(user, role)
            done.append("user {}: role {} granted".format(user, role))
    return done, pending


def _root_store(settings):
    """The master's copy of the root password it last set (root's 0600 file in its
    cachedir): what etcd.auth logs in with while the pillar's is not etcd's yet (a rotation)."""
    return os.path.join(__opts__["cachedir"], "etcd-formula", "auth",
                        "{}.root".format(settings["name"]))


def _stored_root_password(settings):
    try:
        with open(_root_store(settings)) as handle:
            return handle.read().rstrip("\n") or None
    except OSError:
        return None


def _store_root_password(settings, password):
    path = _root_store(settings)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temporary = path + ".new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    os.replace(temporary, path)


def _working_root_password(s, etcd_pillar, settings, wanted):
    """(the root password etcd takes now: the pillar's, else the one this master last set;
    whether authentication is on)."""
    with s.layer("connect")(_settings("client_urls")(settings), timeout=5,
                            **s.admin_tls(etcd_pillar)) as anonymous:
        if not anonymous.auth_enabled():
            return wanted, False
        for candidate in (wanted, _stored_root_password(settings)):
            if candidate and anonymous.password_works("root", candidate):
                return candidate, True
    raise StepFailed("etcd takes neither the pillar's root_password nor the one this master "
                     "last set ({}): set the pillar's to the one etcd has".format(
                         _root_store(settings)))


def _leader_keys(client, settings):
    """{key: (holder, create revision)} of every patroni leader key of the cluster's patroni
    clients: a leader key lost and taken again, even by the same host, has a new create
    revision (patroni's refreshes keep it)."""
    found = {}
    for spec in _settings("client_specs")(settings).values():
        if spec["kind"] == "patroni" and spec.get("scope"):
            key = "{}/{}/leader".format(str(spec.get("namespace") or "/service").rstrip("/"),
                                        spec["scope"])
            kv = client.get_versioned(key)
            found[key] = (kv["value"], kv["create_revision"]) if kv else None
    return found


@step
def auth(cluster=None):
    """
    Apply the pillar's etcd RBAC to a running cluster (see the module doc): users and
    roles, root's credentials on the members, each client given its user, then
    authentication on (pillar ``auth: true``) or off (``auth: false``). A password changed
    in pillar is rotated: root's first (the members' file follows), a client's once the
    client has it. Checks that root authenticates and that patroni's leader keys did not
    change.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.auth
        salt-run etcd.auth cluster=etcd
    """
    s = _steps()
    etcd_pillar, settings = s.cluster_context(cluster)
    users, roles = _wanted(s, settings)
    root_password = users["root"]["password"]
    done = []

    def did(line):
        s.progress(line)
        done.append(line)

    def client(password):
        return s.layer("connect")(_settings("client_urls")(settings), timeout=5,
                                  credentials=("root", password), **s.admin_tls(etcd_pillar))

    with s.operation(etcd_pillar, settings, "auth"):
        current, auth_on = _working_root_password(s, etcd_pillar, settings, root_password)
        with client(current) as root:
            leaders = _leader_keys(root, settings)
            lines, pending = _users_and_roles(root, users, roles, auth_on)
            for line in lines:
                did(line)
            if "root" in pending:
                root.user_password("root", root_password)
                pending.remove("root")
                did("user root: password changed")
        _store_root_password(settings, root_password)
        members = sorted(settings["members"])
        failures = s.apply(",".join(members), "list", "etcd.auth", {})
        if failures:
            raise StepFailed("etcd.auth failed on {} (nothing enabled); done: {}".format(
                "; ".join("{}: {}".format(m, why) for m, why in sorted(failures.items())),
                "; ".join(done) or "nothing"))
        s.progress("root's credentials on {}".format(", ".join(members)))
        for name, spec in sorted(_settings("client_specs")(settings).items()):
            target, tgt_type = _settings("client_target")(spec)
            if spec["kind"] not in CLIENT_SLS or not target:
                continue
            handed = {"etcd_client": {"cluster": settings["name"]}}
            failures = s.apply(target, tgt_type, CLIENT_SLS[spec["kind"]], handed)
            if failures:
                raise StepFailed("{} ({}) not given its credentials: {}; done: {}".format(
                    name, target, "; ".join("{}: {}".format(m, why)
                                            for m, why in sorted(failures.items())),
                    "; ".join(done) or "nothing"))
            did("{} on {}: credentials given".format(name, target))
        with client(root_password) as root:
            for user in pending:  # the client has its new password: its old token goes now
                root.user_password(user, users[user]["password"])
                did("user {}: password changed".format(user))
            if settings.get("auth") is True and not auth_on:
                root.auth_enable()
                did("authentication enabled")
            elif settings.get("auth") is not True and auth_on:
                root.auth_disable()
                did("authentication disabled")
            now_on = root.auth_enabled()
            if now_on != (settings.get("auth") is True):
                raise StepFailed("authentication is {} on cluster {} after the change; done: "
                                 "{}".format("on" if now_on else "off", settings["name"],
                                             "; ".join(done)))
            if now_on and not root.password_works("root", root_password):
                raise StepFailed("root does not authenticate with the pillar's root_password "
                                 "after the change; done: {}".format("; ".join(done)))
            after = _leader_keys(root, settings)
        if after != leaders:
            raise StepFailed("patroni's leader keys changed during the change ({} before, {} "
                             "after): look at patroni; done: {}".format(
                                 leaders, after, "; ".join(done)))
    return ok("cluster {}: authentication {}; {}".format(
        settings["name"], "on" if now_on else "off", "; ".join(done) or "nothing to change"),
        done=done, enabled=now_on)


# -- credentials for a client outside Salt ----------------------------------------------------------

PERMISSIONS = {"read": "READ", "readwrite": "READWRITE"}


def _external_user(name):
    return "ext-" + name


def _credentials_dir(settings, name, directory=None):
    return directory or os.path.join(__opts__["cachedir"], "etcd-formula", "credentials",
                                     settings["name"], name)


def _write_private(path, text):
    temporary = path + ".new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


@step
def credentials(name, prefix, permission="readwrite", cluster=None, directory=None):
    """
    Credentials for a client outside Salt (a workstation, an application): a key made here,
    its client certificate signed by the CA server (no CN, ``URI:urn:etcd-formula:external:
    <cluster>:<name>``), an etcd user ``ext-<name>`` with a new random password and a role of
    ``permission`` (read or readwrite) on ``prefix`` only, packed on the master (a 0700
    directory, files 0600: ca.crt, client.crt, client.key, etcdctl.env). Run again to
    renew them (new key, certificate and password). The password is in the env file only.

    name
        The client's name: letters, digits, '.', '_', '-'.
    prefix
        The keys it may use: a path ending in '/' (e.g. /app/).
    directory
        Where to pack them (default ``<cachedir>/etcd-formula/credentials/<cluster>/<name>``).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.credentials app /app/
        salt-run etcd.credentials name=report prefix=/service/pg-a/ permission=read
    """
    s = _steps()
    problem = __utils__["etcd_validate.minion_id_problem"](name, "name")
    if problem:
        raise StepFailed(problem)
    if not isinstance(prefix, str) or not prefix.startswith("/") or not prefix.endswith("/") \
            or prefix == "/":
        raise StepFailed("prefix: {!r}: expected a key prefix such as /app/ (a path ending in "
                         "'/', not all of etcd)".format(prefix))
    if permission not in PERMISSIONS:
        raise StepFailed("permission: {!r}: expected read or readwrite".format(permission))
    etcd_pillar, settings = s.cluster_context(cluster)
    pki = _settings("pki")(etcd_pillar)
    key = __utils__["etcd_pki.new_key"](pki["key_algo"], pki["key_size"])
    found = s.answers(pki["ca_server"], "etcd_ca.sign_external",
                      [name, __utils__["etcd_pki.csr_pem"](key), settings["name"]])
    cert, retcode = found.get(pki["ca_server"], (None, 1))
    if retcode or not isinstance(cert, str) or "BEGIN CERTIFICATE" not in cert:
        raise StepFailed("the CA server {} did not sign {}'s certificate: {}".format(
            pki["ca_server"], name, cert))
    user = _external_user(name)
    password = __utils__["etcd_pki.random_password"]()
    perm = (PERMISSIONS[permission], prefix, _settings("prefix_end")(prefix))
    with s.operation(etcd_pillar, settings, "credentials " + name):
        with s.client(etcd_pillar, settings) as root:
            auth_on = root.auth_enabled()
            # as with authentication off: the password is set (a renewal: its tokens revoked)
            lines, _ = _users_and_roles(root, {user: {"password": password, "roles": [user]}},
                                        {user: [perm]}, auth_on=False)
    tls = s.admin_tls(etcd_pillar)
    where = _credentials_dir(settings, name, directory)
    os.makedirs(where, mode=0o700, exist_ok=True)
    os.chmod(where, 0o700)
    with open(tls["ca_file"]) as handle:
        _write_private(os.path.join(where, "ca.crt"), handle.read())
    _write_private(os.path.join(where, "client.key"), __utils__["etcd_pki.key_pem"](key))
    _write_private(os.path.join(where, "client.crt"), cert)
    _write_private(os.path.join(where, "etcdctl.env"), "\n".join([
        "# etcd credentials of {} for cluster {} (salt-run etcd.credentials): source it".format(
            name, settings["name"]),
        "export ETCDCTL_API=3",
        "export ETCDCTL_ENDPOINTS={}".format(",".join(_settings("client_urls")(settings))),
        "export ETCDCTL_CACERT={}".format(os.path.join(where, "ca.crt")),
        "export ETCDCTL_CERT={}".format(os.path.join(where, "client.crt")),
        "export ETCDCTL_KEY={}".format(os.path.join(where, "client.key")),
        "export ETCDCTL_USER='{}:{}'".format(user, password), ""]))
    return ok("credentials of {} in {} (user {}: {} on {}){}".format(
        name, where, user, permission, prefix,
        "" if auth_on else "; authentication is off in etcd: the user counts once it is on"),
        directory=where, user=user, done=lines)


@step
def revoke_credentials(name, cluster=None, directory=None):
    """
    Revoke what ``salt-run etcd.credentials`` gave ``name``: its etcd user and role are
    deleted (with authentication on, its certificate alone opens nothing), its pack removed.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.revoke_credentials app
    """
    s = _steps()
    problem = __utils__["etcd_validate.minion_id_problem"](name, "name")
    if problem:
        raise StepFailed(problem)
    etcd_pillar, settings = s.cluster_context(cluster)
    user = _external_user(name)
    done = []
    with s.operation(etcd_pillar, settings, "revoke credentials " + name):
        with s.client(etcd_pillar, settings) as root:
            if user in root.users():
                root.user_delete(user)
                done.append("user {} deleted".format(user))
            if user in root.roles():
                root.role_delete(user)
                done.append("role {} deleted".format(user))
    where = _credentials_dir(settings, name, directory)
    if os.path.isdir(where):
        for entry in ("ca.crt", "client.crt", "client.key", "etcdctl.env"):
            path = os.path.join(where, entry)
            if os.path.exists(path):
                os.remove(path)
        os.rmdir(where)
        done.append("{} removed".format(where))
    return ok("credentials of {} revoked: {}".format(name, "; ".join(done) or "nothing to do"),
              done=done)


# -- what the CA issued --------------------------------------------------------------------------

CERTIFICATES_HEADER = ["HOLDER", "USAGE", "NOT AFTER", "DAYS LEFT", "ISSUER", "NAMES"]


@step
def certificates(table=True):
    """
    Every certificate the CA server issued last to each holder (members, clients, the
    master's admin one, clients outside Salt), with its days left, the soonest first (like
    kubeadm's ``certs check-expiration``). Highstate renews one with fewer than
    pki:days_remaining days left; one below that was not renewed.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.certificates
    """
    s = _steps()
    etcd_pillar = s.etcd_pillar()
    pki = _settings("pki")(etcd_pillar)
    found = s.answers(pki["ca_server"], "etcd_ca.certificates")
    issued, retcode = found.get(pki["ca_server"], (None, 1))
    if retcode or not isinstance(issued, dict):
        raise StepFailed("the CA server {} did not list its certificates: {}".format(
            pki["ca_server"], issued))
    bundles = s.on_minion(pki["ca_server"], "etcd_ca.bundles", expect=dict)
    rows = __utils__["etcd_pki.issued_rows"](issued, bundles["client"] + bundles["peer"])
    late = [r for r in rows if r[3] < pki["days_remaining"]]
    phase = bundles["rotation"]["phase"]
    rotating = ("CA rotation under way, phase {}: continue with salt-run etcd.rotate_ca".format(
        phase) if phase else None)
    if not table:
        return ok("{} certificate(s), {} inside the renewal window{}".format(
            len(rows), len(late), "; " + rotating if rotating else ""),
            certificates=rows, trusted=bundles["labels"], rotation=phase)
    text = __utils__["etcd_report.table"](CERTIFICATES_HEADER, [[str(c) for c in r] for r in rows])
    text += "\ntrusted: clients' CA {}; peers' CA {} (the first signs)".format(
        ", ".join(bundles["labels"]["client"]), ", ".join(bundles["labels"]["peer"]))
    if rotating:
        text += "\n" + rotating
    if late:
        text += "\n{} certificate(s) with fewer than {} days left: not renewed".format(
            len(late), pki["days_remaining"])
    return text

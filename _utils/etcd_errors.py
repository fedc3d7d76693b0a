"""
The formula's errors: one base, ``EtcdError`` (a ``CommandExecutionError``, so Salt's states
and modules catch it with Salt's own errors), and one class per decision a caller makes.
Callers decide by class, never by message text: etcd's own messages are mapped to these
classes in one place, ``etcd_client.refusal``.

Every ``_utils`` module imports this one by its plain name (see ``etcd_client``'s module
doc), so there is one copy of each class per process, whoever raises or catches it.
"""

from salt.exceptions import CommandExecutionError


class EtcdError(CommandExecutionError):
    """Something about etcd failed; ``message`` says what (etcd's own text when etcd said it)."""

    def __init__(self, message, endpoint=None, code=None, **info):
        super().__init__(message, info=info or None)
        self.message = message
        self.endpoint = endpoint
        self.code = code
        self.details = info


# -- the request never got an answer -------------------------------------------------------------


class EtcdUnreachable(EtcdError):
    """No endpoint answered (refused, timed out, TLS failure); ``failures``: {endpoint: why};
    ``refused``: nothing listened there (etcd does not run), rather than an unknown state."""

    def __init__(self, message, failures=None, refused=False, **kwargs):
        super().__init__(message, **kwargs)
        self.failures = dict(failures or {})
        self.refused = refused


# -- etcd answered no ----------------------------------------------------------------------------


class EtcdRefused(EtcdError):
    """etcd refused the request; ``message`` is etcd's own text."""


class EtcdRetryable(EtcdRefused):
    """A refusal that goes away by itself: retried with back-off until a deadline."""


class EtcdUnhealthyCluster(EtcdRetryable):
    """etcdserver: unhealthy cluster (the member must see every voter for 5 s)."""


class EtcdTooManyLearners(EtcdRetryable):
    """etcdserver: too many learner members in cluster (3.4/3.5: one at a time)."""


class EtcdLearnerNotReady(EtcdRetryable):
    """etcdserver: can only promote a learner member which is in sync with leader."""


class EtcdAlreadyMember(EtcdRefused):
    """The peer URLs (or the new member ID) are a member's already: the add happened."""


class EtcdNotLearner(EtcdRefused):
    """etcdserver: can only promote a learner member (it is a voter: promoted already)."""


class EtcdMemberNotFound(EtcdRefused):
    """etcdserver: member not found."""


class EtcdPermissionDenied(EtcdRefused):
    """etcdserver: permission denied (RBAC)."""


class EtcdAuthFailed(EtcdRefused):
    """Authentication failed, or the token is invalid or expired: authenticate again."""


class EtcdAuthNotEnabled(EtcdRefused):
    """etcdserver: authentication is not enabled (asked to authenticate: every request is root's)."""


class EtcdAuthExists(EtcdRefused):
    """etcdserver: user (or role) name already exists."""


class EtcdAuthNotFound(EtcdRefused):
    """etcdserver: user (or role) name not found, or the role grants no such permission."""


class EtcdNoSpace(EtcdRefused):
    """mvcc: database space exceeded (the NOSPACE alarm is raised)."""


class EtcdCompacted(EtcdRefused):
    """mvcc: required revision has been compacted (a compaction that is done already)."""


class EtcdLearnerRefusal(EtcdRefused):
    """A learner serves no linearizable request (ask a voter)."""


# -- the formula's own decisions -----------------------------------------------------------------


class EtcdTimeout(EtcdError):
    """A wait of the formula ran out (catch-up, health, lock); ``waited`` seconds."""

    def __init__(self, message, waited=None, **kwargs):
        super().__init__(message, **kwargs)
        self.waited = waited


class EtcdCatchUpTimeout(EtcdTimeout):
    """A learner did not catch up with the leader in time: the only case promote rolls back."""


class EtcdUnsafe(EtcdError):
    """The formula refuses: doing it would lose quorum, data or a member (the message says how)."""


class EtcdSplit(EtcdUnsafe):
    """The pillar's endpoints answer for more than one cluster; ``clusters``: {id: [endpoints]}."""

    def __init__(self, message, clusters=None, **kwargs):
        super().__init__(message, **kwargs)
        self.clusters = dict(clusters or {})


class EtcdNoProof(EtcdUnsafe):
    """A member with no data cannot prove that no cluster exists: it must not bootstrap one."""


class EtcdLockHeld(EtcdError):
    """The cluster lock is held by another operation; ``holder`` names it."""

    def __init__(self, message, holder=None, **kwargs):
        super().__init__(message, **kwargs)
        self.holder = holder


class EtcdLockLost(EtcdError):
    """The lock's lease expired while held: what it guarded must stop."""

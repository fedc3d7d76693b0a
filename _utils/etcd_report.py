"""
How the formula shows a cluster to an operator: the text of ``salt-run etcd.status`` (a table
like ``etcdctl endpoint status -w table``, the health line with a split or a quorum loss
spelled out, learners, alarms, certificates). Pure functions of what the layer read.
"""

__virtualname__ = "etcd_report"

STATUS_HEADER = [
    "ENDPOINT", "ID", "NAME", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
    "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "CLUSTER", "ERRORS",
]


def __virtual__():
    return __virtualname__


def human_size(size):
    if size is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return "{:.0f} {}".format(size, unit) if unit == "B" else "{:.1f} {}".format(size, unit)
        size /= 1000.0
    return str(size)


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(row):
        return "|" + "|".join(" {} ".format(str(c).center(w)) for c, w in zip(row, widths)) + "|"

    return "\n".join([line, fmt(header), line] + [fmt(r) for r in rows] + [line])


def status_rows(health, names):
    """One row per pillar endpoint, from ``etcd_membership.health``'s views (so a member of
    another cluster, or one without a leader, shows as what it is). ``names``: {endpoint:
    minion}."""
    rows = []
    for endpoint, view in sorted((health.get("views") or {}).items()):
        status = view.get("status")
        if status is None:
            state = "down (nothing listens)" if view.get("refused") else view.get("error", "")
            rows.append([endpoint, "-", names.get(endpoint, "-"), "-", "-", "-", "-", "-", "-",
                         "-", "-", state])
            continue
        problems = list(status.get("errors") or [])
        entry = (health.get("members") or {}).get(status.get("name")) or {}
        if entry.get("error"):
            problems.append(entry["error"])
        if not int(status["leader"], 16) and not status["is_learner"]:
            problems.append("no leader")
        rows.append([
            endpoint, status["id"],
            status.get("name") or "{} (not a member)".format(names.get(endpoint, "?")),
            status.get("version", "-"), human_size(status.get("db_size")),
            str(status["leader"] == status["id"]).lower(), str(bool(status["is_learner"])).lower(),
            str(status.get("raft_term", "-")), str(status.get("raft_index", "-")),
            str(status.get("raft_applied_index", "-")), status.get("cluster_id", "-"),
            ", ".join(problems),
        ])
    return rows


def health_line(cluster_name, health):
    """``cluster <name>: healthy``, or UNHEALTHY with what is wrong."""
    if health.get("healthy"):
        return "cluster {}: healthy".format(cluster_name)
    return "cluster {}: UNHEALTHY: {}".format(cluster_name, health.get("error") or "see below")


def status_text(cluster_name, health, names, expiry_rows=None, extra_lines=()):
    """The whole of ``salt-run etcd.status``."""
    lines = [
        health_line(cluster_name, health),
        table(STATUS_HEADER, status_rows(health, names)),
        "learners: {}".format(", ".join(health.get("learners") or []) or "none"),
        "alarms: {}".format(", ".join(health.get("alarms") or []) or "none"),
    ]
    lines.extend(extra_lines)
    if expiry_rows is not None:
        lines += ["certificates:", table(["MINION", "CERT", "WHERE", "NOT AFTER", "DAYS LEFT"],
                                         expiry_rows)]
    return "\n".join(lines)


def snapshot_line(last, age_hours, max_age_hours):
    """The last good snapshot, its age, and a warning when it is too old."""
    if not last:
        return "last good snapshot: NONE: take one (salt-run etcd.snapshot), schedule it (etcd.backup)"
    line = "last good snapshot: {} ({:.1f} h ago, revision {}, {} keys)".format(
        last["file"], age_hours, last["revision"], last["keys"])
    if age_hours > max_age_hours:
        line += ": OLDER THAN {} h: take one (salt-run etcd.snapshot)".format(max_age_hours)
    return line

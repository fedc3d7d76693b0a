"""
What the monitoring tests share: where the formula's rule files and dashboard are, the
PromQL expressions in them, the metric names those expressions use, the markers of metrics
not every etcd exports, the metrics etcd 3.4 and 3.5 export, and the Debian 13 lab image's
binaries (promtool, etcd 3.5), which this machine lacks.

Imported by test/unit/monitoring and test/functional/monitoring (that one puts this
directory on sys.path).
"""

import glob
import json
import os
import re
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "_utils"))

import etcd_metrics  # noqa: E402
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
ALERTS_FILE = os.path.join(REPO, "etcd", "files", "prometheus", "etcd-alerts.yml")
RECORDING_FILE = os.path.join(REPO, "etcd", "files", "prometheus", "etcd-recording.yml")
RULE_FILES = (ALERTS_FILE, RECORDING_FILE)
DASHBOARD_FILE = os.path.join(REPO, "etcd", "files", "grafana", "etcd-dashboard.json")
IMAGES = "/var/cache/etcd-formula/images"

# The formula's own metrics (etcd_metrics writes them; etcd never does).
FORMULA_METRICS = set(etcd_metrics.NAMES)
# Made by prometheus for every target, not exported by etcd.
PROMETHEUS_METRICS = {"up"}

# Metric families etcd 3.4.23 and 3.5.16 both export (their /metrics, read on a 3-member TLS
# cluster with one member stopped; grpc_server_handling_seconds only with --metrics
# extensive), by type. A histogram's samples are <name>_bucket, _sum and _count. Families
# only one of the two versions has (3.4's etcd_debugging_mvcc_db_total_size_in_bytes, 3.5's
# etcd_server_apply_duration_seconds, etcd_disk_wal_write_duration_seconds...) are not here:
# a rule using one must be marked (see metric_conditions) and listed here with a note.
ETCD_FAMILIES = {
    "etcd_cluster_version": "gauge",
    "etcd_disk_backend_commit_duration_seconds": "histogram",
    "etcd_disk_backend_defrag_duration_seconds": "histogram",
    "etcd_disk_backend_snapshot_duration_seconds": "histogram",
    "etcd_disk_defrag_inflight": "gauge",
    "etcd_disk_wal_fsync_duration_seconds": "histogram",
    "etcd_disk_wal_write_bytes_total": "gauge",
    "etcd_mvcc_db_open_read_transactions": "gauge",
    "etcd_mvcc_db_total_size_in_bytes": "gauge",
    "etcd_mvcc_db_total_size_in_use_in_bytes": "gauge",
    "etcd_mvcc_delete_total": "counter",
    "etcd_mvcc_put_total": "counter",
    "etcd_mvcc_range_total": "counter",
    "etcd_mvcc_txn_total": "counter",
    "etcd_network_active_peers": "gauge",
    "etcd_network_client_grpc_received_bytes_total": "counter",
    "etcd_network_client_grpc_sent_bytes_total": "counter",
    "etcd_network_peer_received_bytes_total": "counter",
    "etcd_network_peer_round_trip_time_seconds": "histogram",
    "etcd_network_peer_sent_bytes_total": "counter",
    "etcd_network_peer_sent_failures_total": "counter",  # once a send to a peer failed
    "etcd_server_client_requests_total": "counter",
    "etcd_server_has_leader": "gauge",
    "etcd_server_health_failures": "counter",
    "etcd_server_health_success": "counter",
    "etcd_server_heartbeat_send_failures_total": "counter",
    "etcd_server_id": "gauge",
    "etcd_server_is_leader": "gauge",
    "etcd_server_is_learner": "gauge",
    "etcd_server_leader_changes_seen_total": "counter",
    "etcd_server_proposals_applied_total": "gauge",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_failed_total": "counter",
    "etcd_server_proposals_pending": "gauge",
    "etcd_server_quota_backend_bytes": "gauge",
    "etcd_server_read_indexes_failed_total": "counter",
    "etcd_server_slow_apply_total": "counter",
    "etcd_server_slow_read_indexes_total": "counter",
    "etcd_server_version": "gauge",
    "etcd_snap_db_fsync_duration_seconds": "histogram",
    "etcd_snap_db_save_total_duration_seconds": "histogram",
    "etcd_snap_fsync_duration_seconds": "histogram",
    "grpc_server_handled_total": "counter",
    "grpc_server_handling_seconds": "histogram",  # only with --metrics extensive
    "grpc_server_msg_received_total": "counter",
    "grpc_server_msg_sent_total": "counter",
    "grpc_server_started_total": "counter",
    "os_fd_limit": "gauge",
    "os_fd_used": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_max_fds": "gauge",
    "process_open_fds": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_virtual_memory_bytes": "gauge",
}


def etcd_sample_names():
    """The sample names ETCD_FAMILIES stands for (histograms as _bucket, _sum, _count)."""
    names = set()
    for family, kind in ETCD_FAMILIES.items():
        if kind == "histogram":
            names.update(family + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family)
    return names


# -- the Debian 13 image's binaries ------------------------------------------------------------


def image_binary(name, release="trixie"):
    """``/var/cache/etcd-formula/images/<release>-*/usr/bin/<name>`` (the newest image), or None."""
    found = [path for path in glob.glob(os.path.join(IMAGES, release + "-*", "usr", "bin", name))
             if os.access(path, os.X_OK)]
    return max(found, key=os.path.getmtime) if found else None


def require_image_binary(name, release="trixie"):
    """The path of ``name`` in the lab image; without it a failure in CI (test/setup builds
    the image there), a skip elsewhere."""
    path = image_binary(name, release)
    if path is None:
        reason = (
            "no {name} in the Debian {release} lab image ({images}/{release}-*/usr/bin/{name}): "
            "build it with `test/lab image --release {release}`".format(
                name=name, release=release, images=IMAGES)
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


# -- the expressions ---------------------------------------------------------------------------


def load_rules(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def rules(path):
    """Every rule of ``path``: dicts with ``alert`` or ``record``, ``expr``, ``group``."""
    found = []
    for group in load_rules(path)["groups"]:
        for rule in group["rules"]:
            found.append(dict(rule, group=group["name"]))
    return found


def recording_names():
    return {rule["record"] for rule in rules(RECORDING_FILE)}


def alert_names():
    return {rule["alert"] for rule in rules(ALERTS_FILE)}


def rule_exprs():
    """[(where, expr)] of both rule files."""
    found = []
    for path in RULE_FILES:
        for rule in rules(path):
            where = "{}: {}".format(os.path.basename(path), rule.get("alert") or rule.get("record"))
            found.append((where, rule["expr"]))
    return found


def load_dashboard():
    with open(DASHBOARD_FILE, encoding="utf-8") as handle:
        return json.load(handle)


def dashboard_exprs(dashboard=None):
    """[(where, expr)] of the dashboard: every panel target's, with Grafana's variables
    still in, plus the selector inside each query variable's label_values()."""
    dashboard = dashboard or load_dashboard()
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            where = "panel {} ({!r}) target {}".format(panel.get("id"), panel.get("title"),
                                                      target.get("refId"))
            found.append((where, target.get("expr", "")))
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
            assert match, "variable {}: expected label_values(<selector>, <label>): {}".format(
                variable["name"], query)
            found.append(("variable " + variable["name"], match.group(1)))
    return found


# Grafana's interval variables, and a stand-in value for the dashboard's own variables: what
# prometheus would get once Grafana has filled them in.
GRAFANA_INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def grafana_to_promql(expr):
    """``expr`` with Grafana's variables replaced as Grafana would (``$__rate_interval`` ->
    ``5m``, ``$etcd_cluster`` -> a value)."""

    def value(match):
        name = match.group(1) or match.group(2)
        return GRAFANA_INTERVALS.get(name, "x")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


# PromQL's functions, aggregations, operators and keywords: identifiers that are no metric.
PROMQL_WORDS = {
    # aggregation operators
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    # keywords, set and vector-matching operators, modifiers
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "atan2", "inf", "nan", "start", "end",
    # functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "ln", "log10", "log2", "minute",
    "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
    "sort_by_label", "sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh",
    "sin", "sinh", "tan", "tanh", "deg", "rad", "pi",
}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr):
    """The metric names ``expr`` selects: identifiers that are no PromQL word, once strings,
    label matchers, ranges and grouping label lists are taken out (label names live only
    there)."""
    text = _STRINGS.sub('""', grafana_to_promql(expr))
    text = _MATCHERS.sub("{}", text)
    text = _RANGES.sub("[]", text)
    text = _LABEL_LISTS.sub(r"\1", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in PROMQL_WORDS}


def names_by_where(exprs):
    """{metric name: [where it is used]} over ``exprs`` ([(where, expr)])."""
    found = {}
    for where, expr in exprs:
        for name in metric_names(expr):
            found.setdefault(name, []).append(where)
    return found


def etcd_metric_names(exprs):
    """The names in ``exprs`` that etcd itself must export: not the formula's own, not the
    recording rules', not prometheus's ``up``."""
    ours = FORMULA_METRICS | PROMETHEUS_METRICS | recording_names()
    return {name: wheres for name, wheres in names_by_where(exprs).items() if name not in ours}


# -- metrics not every etcd exports ------------------------------------------------------------

_CONDITION = re.compile(
    r"^\s*#\s*metric-condition:\s*(?P<metric>[A-Za-z_:][A-Za-z0-9_:]*)\s*:\s*"
    r"(?P<condition>metrics=extensive|etcd(?:>=|<)\d+\.\d+)\s*$"
)


def metric_conditions():
    """{metric family: condition} from the rule files' ``# metric-condition:`` comments.
    ``metrics=extensive``: exported only when etcd runs with ``--metrics extensive``;
    ``etcd>=3.5`` / ``etcd<3.5``: only by those versions."""
    found = {}
    for path in RULE_FILES:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if re.match(r"^\s*#\s*metric-condition:", line):
                    match = _CONDITION.match(line)
                    if not match:
                        raise ValueError("{}:{}: expected `# metric-condition: <metric>: "
                                         "metrics=extensive | etcd>=X.Y | etcd<X.Y`: {}".format(
                                             path, number, line.strip()))
                    found[match.group("metric")] = match.group("condition")
    return found


def version_satisfies(version, condition):
    """Whether etcd ``version`` (a tuple) meets ``etcd>=X.Y`` / ``etcd<X.Y``."""
    match = re.fullmatch(r"etcd(>=|<)(\d+)\.(\d+)", condition)
    wanted = (int(match.group(2)), int(match.group(3)))
    return version[:2] >= wanted if match.group(1) == ">=" else version[:2] < wanted


def family_of(name):
    """The family a sample name belongs to: a histogram's without _bucket/_sum/_count."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and ETCD_FAMILIES.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return name

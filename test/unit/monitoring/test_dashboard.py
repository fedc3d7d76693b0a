"""
The formula's Grafana dashboard (etcd/files/grafana/etcd-dashboard.json): its shape (a
datasource variable and an etcd_cluster variable, every panel on the datasource variable with
PromQL targets, unique ids), what it shows (the panels the monitoring issue asks for), and
every expression in it: valid PromQL (``promtool check rules`` on a rules file made of them)
naming only metrics etcd 3.4 and 3.5 export, the formula's own, or recorded ones.
"""

import subprocess

import pytest
import yaml
from monitoring_promql import (
    FORMULA_METRICS,
    PROMETHEUS_METRICS,
    dashboard_exprs,
    etcd_metric_names,
    etcd_sample_names,
    grafana_to_promql,
    load_dashboard,
    metric_names,
    names_by_where,
    recording_names,
    require_image_binary,
)

DATASOURCE_UIDS = ("${datasource}", "$datasource")


@pytest.fixture(scope="module")
def dashboard():
    return load_dashboard()


def variables(dashboard):
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def test_schema_is_recent_enough(dashboard):
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]


def test_datasource_variable_picks_a_prometheus(dashboard):
    datasource = variables(dashboard)["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")


def test_cluster_variable_lists_the_formula_s_clusters(dashboard):
    cluster = variables(dashboard)["etcd_cluster"]
    assert cluster["type"] == "query"
    assert cluster["datasource"]["uid"] in DATASOURCE_UIDS
    query = cluster["query"]["query"] if isinstance(cluster["query"], dict) else cluster["query"]
    assert query.replace(" ", "") == 'label_values(up{job="etcd"},etcd_cluster)'


def test_panel_ids_are_unique(dashboard):
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_queries_the_datasource_variable(dashboard):
    for panel in dashboard["panels"]:
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["datasource"]["uid"] in DATASOURCE_UIDS, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), (panel["title"], target["refId"])
            assert target.get("datasource", panel["datasource"])["uid"] in DATASOURCE_UIDS


def test_every_panel_shows_the_chosen_cluster_only(dashboard):
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            assert 'etcd_cluster="$etcd_cluster"' in expr, (panel["title"], expr)


def test_panels_fit_the_grid_without_overlapping(dashboard):
    cells = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, (panel["title"], "overlaps", cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_dashboard_shows_what_the_issue_asks(dashboard):
    used = set(names_by_where(dashboard_exprs(dashboard)))
    wanted = {
        "up",  # members up
        "etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_leader_changes_seen_total",
        "etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_server_quota_backend_bytes",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending", "etcd_server_proposals_failed_total",
        "etcd_network_peer_round_trip_time_seconds_bucket",
        "grpc_server_handled_total",  # gRPC and the JSON gateway alike
    } | FORMULA_METRICS
    assert sorted(wanted - used) == []


def test_dashboard_uses_only_metrics_etcd_3_4_and_3_5_export(dashboard):
    used = etcd_metric_names(dashboard_exprs(dashboard))
    unknown = {name: wheres for name, wheres in used.items() if name not in etcd_sample_names()}
    assert unknown == {}
    allowed = etcd_sample_names() | FORMULA_METRICS | PROMETHEUS_METRICS | recording_names()
    assert sorted(set(names_by_where(dashboard_exprs(dashboard))) - allowed) == []


def test_every_expression_is_valid_promql(dashboard, tmp_path):
    promtool = require_image_binary("promtool")
    exprs = dashboard_exprs(dashboard)
    # one recording rule per expression, Grafana's variables filled in: promtool parses each
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:expr_{}:check".format(number), "expr": grafana_to_promql(expr)}
        for number, (_, expr) in enumerate(exprs)
    ]}]}
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=60)
    where = "\n".join("expr_{}: {}".format(number, w) for number, (w, _) in enumerate(exprs))
    assert done.returncode == 0, done.stdout + done.stderr + "\n" + where
    assert "SUCCESS: {} rules found".format(len(exprs)) in done.stdout


def test_grafana_variables_become_what_prometheus_gets():
    assert grafana_to_promql('rate(x{c="$etcd_cluster"}[$__rate_interval])') == 'rate(x{c="x"}[5m])'
    assert grafana_to_promql("increase(x[${__range}])") == "increase(x[1h])"


@pytest.mark.parametrize("expr, names", [
    ('sum by (job, etcd_cluster) (rate(a_total{job="etcd", x=~"b{1}|c"}[5m]))', {"a_total"}),
    ("histogram_quantile(0.99, sum by (instance, le) (rate(h_bucket{j='x'}[$__rate_interval])))",
     {"h_bucket"}),
    ("a / on (etcd_cluster) group_left (peer) label_replace(b, \"To\", \"$1\", \"id\", \"(.*)\")",
     {"a", "b"}),
    ("count by (c) (up{job=\"etcd\"}) unless on (c) count by (c) (m)", {"up", "m"}),
    ("time() - max(ts) > 26 * 3600 and bool_metric == bool 1", {"ts", "bool_metric"}),
    ("predict_linear(db[4h], 4 * 3600) > quota offset 5m", {"db", "quota"}),
    ("level:metric:rate5m", {"level:metric:rate5m"}),
])
def test_metric_names_are_told_from_labels_functions_and_strings(expr, names):
    assert metric_names(expr) == names

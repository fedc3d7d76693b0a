"""
The formula's prometheus rules (etcd/files/prometheus/): ``promtool check rules`` accepts
both files, ``promtool test rules`` passes the *.test.yml beside this file (series in,
alerts out, a healthy cluster raising none), and the rules keep to the formula's house:
every alert says what to do, names its cluster, uses only metrics etcd 3.4 and 3.5 export
or the formula's own, and alerts at the formula's own defaults.

promtool is not installed on this machine: the lab images' are run from there (Debian 13's
prometheus 2.53 and Debian 12's 2.42, the two a prometheus host of the lab may run).
"""

import glob
import os
import subprocess

import etcd_settings
import pytest
import yaml
from monitoring_promql import (
    ALERTS_FILE,
    FORMULA_METRICS,
    HERE,
    PROMETHEUS_METRICS,
    RECORDING_FILE,
    RULE_FILES,
    alert_names,
    etcd_metric_names,
    etcd_sample_names,
    family_of,
    metric_conditions,
    names_by_where,
    recording_names,
    require_image_binary,
    rule_exprs,
    rules,
)

TEST_FILES = sorted(glob.glob(os.path.join(HERE, "*.test.yml")))
HEALTHY_TEST = os.path.join(HERE, "etcd-alerts-healthy.test.yml")


# Debian 13's prometheus (2.53) and Debian 12's (2.42): the rules must load in either
@pytest.fixture(scope="module", params=["trixie", "bookworm"])
def promtool(request):
    return require_image_binary("promtool", release=request.param)


def run(argv, cwd=None):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("path", RULE_FILES, ids=os.path.basename)
def test_promtool_accepts_the_rule_file(promtool, path):
    code, output = run([promtool, "check", "rules", path])
    assert code == 0, output
    assert "SUCCESS: {} rules found".format(len(rules(path))) in output, output


def test_promtool_unit_tests_pass(promtool):
    # one run over every test file: promtool resolves each file's rule_files from its own dir
    assert TEST_FILES, "no *.test.yml in {}".format(HERE)
    names = [os.path.basename(path) for path in TEST_FILES]
    code, output = run([promtool, "test", "rules"] + names, cwd=HERE)
    assert code == 0, output
    assert output.count("SUCCESS") == len(TEST_FILES), output


def load_tests(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def alert_checks():
    """[(test file, alert name, expected alerts)] of every alert_rule_test."""
    found = []
    for path in TEST_FILES:
        for group in load_tests(path)["tests"]:
            for check in group.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                found.append((os.path.basename(path), check["alertname"], expected))
    return found


def test_every_alert_is_seen_firing_in_a_test():
    fired = {alert for _, alert, expected in alert_checks() if expected}
    assert sorted(alert_names() - fired) == []


def test_every_alert_is_checked_quiet_on_a_healthy_cluster():
    quiet = {alert for path, alert, expected in alert_checks()
             if path == os.path.basename(HEALTHY_TEST) and not expected}
    loud = {alert for path, alert, expected in alert_checks()
            if path == os.path.basename(HEALTHY_TEST) and expected}
    assert loud == set()
    assert sorted(alert_names() - quiet) == []


def test_every_recording_rule_value_is_tested():
    tested = set()
    for path in TEST_FILES:
        for group in load_tests(path)["tests"]:
            tested.update(check["expr"] for check in group.get("promql_expr_test", []))
    # the ones whose arithmetic is the formula's own (quorum, ratios, quantiles)
    wanted = {
        "etcd_cluster:members_up:sum", "etcd_cluster:members:count",
        "etcd_cluster:quorum_margin:members", "etcd_cluster:etcd_server_has_leader:sum",
        "instance:etcd_disk_wal_fsync_duration_seconds:p99_5m",
        "etcd_cluster:etcd_disk_wal_fsync_duration_seconds:p99_5m",
        "instance:etcd_disk_backend_commit_duration_seconds:p99_5m",
        "instance:etcd_mvcc_db_in_use:ratio", "instance:etcd_mvcc_db_fragmentation:ratio",
        "etcd_cluster:etcd_mvcc_db_quota_used:max_ratio",
    }
    assert wanted <= recording_names()
    assert sorted(wanted - tested) == []


def test_alerts_name_their_cluster_in_every_test():
    unlabelled = [(path, alert, exp["exp_labels"]) for path, alert, expected in alert_checks()
                  for exp in expected if "etcd_cluster" not in exp.get("exp_labels", {})]
    assert unlabelled == []


@pytest.mark.parametrize("rule", rules(ALERTS_FILE), ids=lambda rule: "{}-{}".format(
    rule["alert"], rule["labels"]["severity"]))
def test_every_alert_says_what_it_is_and_what_to_do(rule):
    annotations = rule["annotations"]
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert "{{ $labels.etcd_cluster }}" in annotations["summary"] + annotations["description"]
    # what to do: a formula command, a pillar key, or the state to apply
    hints = ("salt-run ", "salt ", "pillar", "state.apply", "data_dir")
    assert any(hint in annotations["description"] for hint in hints), annotations["description"]


def test_cluster_rules_read_the_formula_s_targets():
    # job "etcd", as etcd/clients/prometheus.sls makes prometheus scrape the members; the
    # formula's own metrics come from another job and are not bound to it
    for where, expr in rule_exprs():
        names = names_by_where([(where, expr)])
        if set(names) - FORMULA_METRICS - PROMETHEUS_METRICS - recording_names():
            assert 'job="etcd"' in expr, where


def test_rules_use_only_metrics_etcd_3_4_and_3_5_export():
    unknown = {name: wheres for name, wheres in etcd_metric_names(rule_exprs()).items()
               if name not in etcd_sample_names()}
    assert unknown == {}


def test_formula_metrics_are_the_exporter_s_names():
    used = {name for name in names_by_where(rule_exprs()) if name.startswith("etcd_formula_")}
    assert used == FORMULA_METRICS


def test_metric_condition_markers_name_metrics_the_rules_use():
    used = {family_of(name) for name in etcd_metric_names(rule_exprs())}
    assert sorted(set(metric_conditions()) - used) == []


def alert(name, severity):
    return next(rule for rule in rules(ALERTS_FILE)
                if rule["alert"] == name and rule["labels"]["severity"] == severity)


def test_certificate_alert_fires_at_the_formula_s_renewal_window():
    days = etcd_settings.PKI_DEFAULTS["days_remaining"]
    assert "< {} * 86400".format(days) in alert("etcdFormulaCertificateExpiring", "warning")["expr"]


def test_snapshot_alert_fires_at_the_formula_s_max_age():
    hours = etcd_settings.BACKUP_DEFAULTS["max_age_hours"]
    assert "> {} * 3600".format(hours) in alert("etcdFormulaSnapshotTooOld", "warning")["expr"]


def test_recording_rules_do_not_feed_the_alerts():
    # either file works alone: no alert reads a recorded series
    used = set(names_by_where([(rule["alert"], rule["expr"]) for rule in rules(ALERTS_FILE)]))
    assert used & recording_names() == set()
    assert os.path.exists(RECORDING_FILE)

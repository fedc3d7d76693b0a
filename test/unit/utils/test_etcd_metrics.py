"""
etcd_metrics: the formula's metrics files for node_exporter's textfile collector, as
prometheus parses them (the text exposition format), written whole or not at all.
"""

import os
import stat

import pytest

import etcd_metrics


def test_samples_render_in_the_exposition_format_each_family_once():
    text = etcd_metrics.render(
        [etcd_metrics.certificate_sample("pg-a", "h1", "peer", 1767225600),
         etcd_metrics.certificate_sample("pg-a", "h1", "server", 1767225601.5)]
        + etcd_metrics.snapshot_samples("pg-a", 1764547200, True))
    assert text == (
        "# HELP etcd_formula_certificate_expiry_timestamp_seconds notAfter of a certificate the "
        "formula issued (unix time)\n"
        "# TYPE etcd_formula_certificate_expiry_timestamp_seconds gauge\n"
        'etcd_formula_certificate_expiry_timestamp_seconds{certificate="peer",etcd_cluster="pg-a",minion="h1"} 1767225600.0\n'
        'etcd_formula_certificate_expiry_timestamp_seconds{certificate="server",etcd_cluster="pg-a",minion="h1"} 1767225601.5\n'
        "# HELP etcd_formula_last_snapshot_timestamp_seconds time of the newest verified snapshot "
        "salt-run etcd.snapshot took (unix time)\n"
        "# TYPE etcd_formula_last_snapshot_timestamp_seconds gauge\n"
        'etcd_formula_last_snapshot_timestamp_seconds{etcd_cluster="pg-a"} 1764547200.0\n'
        "# HELP etcd_formula_last_snapshot_success 1 when the last salt-run etcd.snapshot verified "
        "its snapshot, else 0\n"
        "# TYPE etcd_formula_last_snapshot_success gauge\n"
        'etcd_formula_last_snapshot_success{etcd_cluster="pg-a"} 1.0\n')


def test_a_failed_first_snapshot_has_no_time_and_a_zero_success():
    assert etcd_metrics.snapshot_samples("pg-a", None, False) == [
        ("etcd_formula_last_snapshot_success", {"etcd_cluster": "pg-a"}, 0)]


def test_label_values_are_escaped_and_unknown_metrics_refused():
    text = etcd_metrics.render([etcd_metrics.certificate_sample('a"b\\c', "h1", "peer", 1)])
    assert 'etcd_cluster="a\\"b\\\\c"' in text
    with pytest.raises(ValueError, match="no metric of the formula"):
        etcd_metrics.render([("etcd_formula_made_up", {}, 1)])


def test_a_file_is_written_0644_by_rename_and_only_when_it_changes(tmp_path):
    path, changed = etcd_metrics.write(str(tmp_path), "x.prom", "a 1\n")
    assert (path, changed) == (str(tmp_path / "x.prom"), True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644 and open(path).read() == "a 1\n"
    assert etcd_metrics.write(str(tmp_path), "x.prom", "a 1\n") == (path, False)
    assert os.listdir(str(tmp_path)) == ["x.prom"]  # no temporary left for the collector


def test_no_textfile_directory_writes_nothing(tmp_path):
    assert etcd_metrics.write(str(tmp_path / "absent"), "x.prom", "a 1\n") == (None, False)
    assert etcd_metrics.write(None, "x.prom", "a 1\n") == (None, False)

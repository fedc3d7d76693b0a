# -*- coding: utf-8 -*-
# vim: ft=sls
# Prometheus's etcd target list (file_sd_configs: re-read by prometheus by itself): the
# voting members' plain-HTTP metrics ports, and the formula's rules (then a reload). Nothing
# on a host without prometheus.
{%- from tpldir ~ "/map.jinja" import clients with context %}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set prometheus = clients.prometheus %}

{%- if salt['pkg.version']('prometheus') %}
etcd-clients-prometheus-targets-managed:
  file.serialize:
    - name: {{ prometheus.targets_file }}
    - serializer: yaml
    - makedirs: True
    - mode: '0644'
    - dataset:
        - targets: {{ prometheus.hosts | map('regex_replace', ':[0-9]+$', ':' ~ prometheus.metrics_port) | list | json }}
          labels:
            etcd_cluster: {{ prometheus.cluster }}

# the formula's alert and recording rules (promtool checks each before it is put in place);
# prometheus.yml names them: rule_files: ['{{ prometheus.rules_dir }}/etcd-*.yml']
etcd-clients-prometheus-rules-managed:
  file.managed:
    - names:
      - {{ prometheus.rules_dir }}/etcd-alerts.yml:
        - source: salt://{{ tplroot }}/files/prometheus/etcd-alerts.yml
      - {{ prometheus.rules_dir }}/etcd-recording.yml:
        - source: salt://{{ tplroot }}/files/prometheus/etcd-recording.yml
    - makedirs: True
    - mode: '0644'
    - check_cmd: promtool check rules

etcd-clients-prometheus-reloaded:
  module.run:
    - service.reload:
      - name: {{ prometheus.service }}
    - onlyif: systemctl is-active --quiet {{ prometheus.service }}
    - onchanges:
      - file: etcd-clients-prometheus-rules-managed
{%- else %}
etcd-clients-prometheus-absent:
  test.succeed_without_changes:
    - name: prometheus is not installed here: no target list to refresh
{%- endif %}

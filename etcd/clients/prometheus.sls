# -*- coding: utf-8 -*-
# vim: ft=sls
# Prometheus's etcd target list (file_sd_configs: re-read by prometheus by itself): the
# voting members' plain-HTTP metrics ports. Nothing on a host without prometheus.
{%- from tpldir ~ "/map.jinja" import clients with context %}
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
{%- else %}
etcd-clients-prometheus-absent:
  test.succeed_without_changes:
    - name: prometheus is not installed here: no target list to refresh
{%- endif %}

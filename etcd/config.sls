# -*- coding: utf-8 -*-
# vim: ft=sls
# initial-cluster-state is derived (new/existing) and kept once the data dir holds a
# member: see _states/etcd_config.py.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}

include:
  - {{ tplroot }}.dirs
  - {{ tplroot }}.pki

etcd-config-file-managed:
  etcd_config.managed:
    - name: {{ etcd.member.paths.config_file }}
    - group: {{ etcd.group }}
    - package: {{ etcd.pkg.server }}
    - require:
      - sls: {{ tplroot }}.dirs
      - sls: {{ tplroot }}.pki

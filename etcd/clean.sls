# -*- coding: utf-8 -*-
# vim: ft=sls
# Purge this etcd member (the reverse of init.sls; packages stay). A running member is
# purged only when its cluster has safeguard: false and clean: true (Pigsty's
# etcd_safeguard / etcd_clean); a stopped one always. Removing it from the cluster's
# membership first is etcd/remove_member.sls's job.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}
{%- set member = etcd.member %}
{%- set running = salt['service.status'](etcd.service.name) %}

{%- if not member %}
etcd-clean-refused:
  test.fail_without_changes:
    - name: etcd member {{ grains.id }}
    - comment: minion {{ grains.id }} is in no cluster of pillar etcd:clusters, so its paths are unknown
    - failhard: True
{%- elif running and (member.safeguard or not member.clean) %}
etcd-clean-refused:
  test.fail_without_changes:
    - name: etcd member {{ member.member_name }}
    - comment: >-
        etcd member {{ member.member_name }} is running and cluster {{ member.name }} has
        safeguard: {{ member.safeguard | lower }}, clean: {{ member.clean | lower }}: a
        running member is purged only with safeguard false and clean true
    - failhard: True
{%- else %}

etcd-env-file-absent:
  file.absent:
    - name: {{ member.paths.env_file }}

etcd-service-dead:
  service.dead:
    - name: {{ etcd.service.name }}
    - enable: False

etcd-unit-file-absent:
  file.absent:
    - name: {{ etcd.service.unit_file }}
    - require:
      - service: etcd-service-dead

etcd-config-file-absent:
  file.absent:
    - name: {{ member.paths.config_file }}
    - require:
      - service: etcd-service-dead

etcd-pki-dir-absent:
  file.absent:
    - name: {{ member.paths.pki_dir }}
    - require:
      - service: etcd-service-dead

etcd-data-dir-absent:
  file.absent:
    - name: {{ member.data_dir }}
    - require:
      - service: etcd-service-dead
{%- endif %}

# -*- coding: utf-8 -*-
# vim: ft=sls
# Health on Salt's event bus: a schedule runs etcd_health.watch on this member every
# health_interval seconds; it fires etcd/<cluster>/health/healthy|unhealthy when what it
# sees changes (a member down, no leader, an alarm, a certificate near expiry), for a
# reactor to act on (etcd/reactor/health.sls is an example). null: no schedule.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}
{%- set interval = etcd.member.health_interval %}
{%- if interval %}

etcd-health-scheduled:
  schedule.present:
    - name: etcd-health-watch
    - function: etcd_health.watch
    - seconds: {{ interval | int }}
    - splay: 5
    - persist: True
{%- else %}

etcd-health-unscheduled:
  schedule.absent:
    - name: etcd-health-watch
{%- endif %}

# -*- coding: utf-8 -*-
# vim: ft=sls
# An example reactor for the members' health events (etcd_health.watch, etcd/health.sls):
#
#   reactor:
#     - 'etcd/*/health/unhealthy':
#       - salt://etcd/reactor/health.sls
#
# It records what the member saw and the cluster's status, as the master sees it, in the
# master's job cache and log (salt-run jobs.list_jobs): a starting point to page someone,
# open a ticket, or run a drill. It changes nothing in the cluster.
{%- set cluster = (data.get('data') or {}).get('cluster') %}
{%- if cluster is string and cluster | regex_match('^([A-Za-z0-9_.-]{1,64})$') %}
etcd-health-status-recorded:
  runner.etcd.status:
    - args:
      - cluster: {{ cluster | json }}
{%- endif %}

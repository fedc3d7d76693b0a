# -*- coding: utf-8 -*-
# vim: ft=sls
# A rolling etcd upgrade under etcd's rules (_runners/etcd_upgrade.py: one minor at a time,
# the floors, no downgrade; a verified snapshot first; one member at a time, health-gated):
#
#   salt-run state.orchestrate etcd.upgrade pillar='{"etcd_version": "3.5.30"}'
#   salt-run etcd.upgrade version=3.5.30        # the same, with progress per member
etcd-upgrade:
  salt.runner:
    - name: etcd.upgrade
    - version: {{ pillar.get('etcd_version') | json }}
    - cluster: {{ pillar.get('etcd_cluster') | json }}
    - failhard: True

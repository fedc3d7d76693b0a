# -*- coding: utf-8 -*-
# vim: ft=sls
# Pillar `etcd` checked first: one failure naming every problem, and nothing else runs.
etcd-pillar-valid:
  etcd_assert.pillar_valid:
    - name: pillar etcd
    - failhard: True

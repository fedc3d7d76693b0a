# -*- coding: utf-8 -*-
# vim: ft=sls
# Rotate the formula's CAs (the clients' and the peers') without downtime, every cluster of
# the pillar serving throughout (_runners/etcd_rotation.py: trust both CAs everywhere, a
# rolling restart; every certificate issued anew; trust the new CAs only, a second rolling
# restart). Interrupted and run again, it goes on where it stopped:
#
#   salt-run state.orchestrate etcd.rotate_ca
#   salt-run etcd.rotate_ca                  # the same, with progress per member
etcd-rotate-ca:
  salt.runner:
    - name: etcd.rotate_ca
    - until: {{ pillar.get('etcd_until') | json }}
    - failhard: True

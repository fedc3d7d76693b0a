# -*- coding: utf-8 -*-
# vim: ft=sls
# Recover a cluster that lost its quorum, from the member that survived with the most data
# (or etcd_survivor): its data kept (--force-new-cluster, once), the others purged and added
# back as learners, one at a time:
#
#   salt-run state.orchestrate etcd.recover pillar='{"etcd_cluster": "etcd"}'
#
# Refused while the cluster has its quorum, while another old member still runs, and under
# safeguard (etcd_force: true overrides it: the other members' old data is purged, archived).
{%- set cluster = pillar.get('etcd_cluster') | json %}

etcd-recover-locked:
  salt.runner:
    - name: etcd.begin
    - what: recover
    - cluster: {{ cluster }}
    - failhard: True

# 1. quorum lost, the survivor chosen, no other old member running
etcd-recover-preflight:
  salt.runner:
    - name: etcd.recover_preflight
    - cluster: {{ cluster }}
    - survivor: {{ pillar.get('etcd_survivor') | json }}
    - force: {{ pillar.get('etcd_force', False) | json }}
    - failhard: True

# 2. a verified snapshot of the survivor's data first
etcd-recover-snapshot:
  salt.runner:
    - name: etcd.survivor_snapshot
    - cluster: {{ cluster }}
    - failhard: True

# 3. the survivor alone, with its data
etcd-recover-force-new-cluster:
  salt.runner:
    - name: etcd.force_new_cluster
    - cluster: {{ cluster }}
    - failhard: True

# 4. the others back through the add path (purge, learner, highstate, promote)
etcd-recover-rejoined:
  salt.runner:
    - name: etcd.rejoin
    - cluster: {{ cluster }}
    - failhard: True

# 5. clients on the voting members, final health, the lock released
etcd-recover-endpoints-refreshed:
  salt.runner:
    - name: etcd.refresh_endpoints
    - cluster: {{ cluster }}
    - failhard: True

etcd-recover-healthy:
  salt.runner:
    - name: etcd.health
    - cluster: {{ cluster }}
    - failhard: True

etcd-recover-unlocked:
  salt.runner:
    - name: etcd.end
    - cluster: {{ cluster }}

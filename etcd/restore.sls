# -*- coding: utf-8 -*-
# vim: ft=sls
# Restore a cluster from a verified snapshot (every member from the SAME file, a new cluster
# token, the pillar's membership), patroni paused meanwhile:
#
#   salt-run state.orchestrate etcd.restore pillar='{"etcd_snapshot": "latest", "etcd_confirm": "etcd"}'
#
# etcd_snapshot: latest, or a file of the cluster's manifest (salt-run etcd.snapshots).
# etcd_confirm: the cluster's name (it replaces the cluster's data). etcd_cluster: which
# cluster (default: the only one). etcd_force: true overrides safeguard. Interrupted, the
# same command again converges. Values are rendered quoted (| json), checked by the steps.
{%- set cluster = pillar.get('etcd_cluster') | json %}
{%- set snapshot = pillar.get('etcd_snapshot', 'latest') | json %}

# 1. one operation at a time
etcd-restore-locked:
  salt.runner:
    - name: etcd.begin
    - what: restore
    - cluster: {{ cluster }}
    - failhard: True

# 2. the snapshot verified anew, every member answers, safeguard, the confirmation
etcd-restore-preflight:
  salt.runner:
    - name: etcd.restore_preflight
    - snapshot: {{ snapshot }}
    - confirm: {{ pillar.get('etcd_confirm') | json }}
    - cluster: {{ cluster }}
    - force: {{ pillar.get('etcd_force', False) | json }}
    - failhard: True

# 3. patroni keeps its primaries while etcd is away
etcd-restore-patroni-paused:
  salt.runner:
    - name: etcd.patroni_pause
    - cluster: {{ cluster }}
    - failhard: True

# 4. every member stopped, then restored from the same file (old data archived)
etcd-restore-members-restored:
  salt.runner:
    - name: etcd.restore_members
    - cluster: {{ cluster }}
    - failhard: True

# 5. started together, healthy
etcd-restore-members-started:
  salt.runner:
    - name: etcd.start_members
    - cluster: {{ cluster }}
    - failhard: True

# 6. patroni resumed; the lock released
etcd-restore-patroni-resumed:
  salt.runner:
    - name: etcd.patroni_resume
    - cluster: {{ cluster }}
    - failhard: True

etcd-restore-unlocked:
  salt.runner:
    - name: etcd.end
    - cluster: {{ cluster }}

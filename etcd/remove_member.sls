# -*- coding: utf-8 -*-
# vim: ft=sls
# Remove one etcd member, the add's reverse, each step checked before the next:
#
#   salt-run state.orchestrate etcd.remove_member pillar='{"etcd_member": "h1"}'
#   ... pillar='{"etcd_member": "h1", "etcd_force": true}'   # unsafe: quorum, 2 -> 1
#
# Keep the minion in pillar until this is done, then delete it from etcd:clusters. A dead
# host (minion down) is removed the same way: its cleanup is skipped and said so.
# Values are rendered quoted (| json) and checked by the first step.
{%- set member = pillar.get('etcd_member') | json %}
{%- set force = pillar.get('etcd_force', False) | json %}

# 0. one operation at a time on the cluster (released by the last step, or a failing one)
etcd-remove-member-locked:
  salt.runner:
    - name: etcd.begin
    - what: remove_member
    - member: {{ member }}
    - failhard: True

# 1. refuse what breaks quorum (or leaves 1 of 2) unless forced
etcd-remove-member-preflight:
  salt.runner:
    - name: etcd.remove_preflight
    - member: {{ member }}
    - force: {{ force }}
    - failhard: True

# 2. a verified snapshot before anything changes
etcd-remove-member-snapshot:
  salt.runner:
    - name: etcd.snapshot
    - member: {{ member }}
    - failhard: True

# 3. clients stop using it first
etcd-remove-member-endpoints-refreshed:
  salt.runner:
    - name: etcd.refresh_endpoints
    - member: {{ member }}
    - exclude: {{ member }}
    - failhard: True

# 4. leadership moves off it
etcd-remove-member-leader-moved:
  salt.runner:
    - name: etcd.move_leader_off
    - member: {{ member }}
    - failhard: True

# 5. member remove
etcd-remove-member-removed:
  salt.runner:
    - name: etcd.member_remove
    - member: {{ member }}
    - force: {{ force }}
    - failhard: True

# 6. stop + disable etcd there; archive its data dir (0600), purge it unless safeguard
etcd-remove-member-retired:
  salt.runner:
    - name: etcd.retire
    - member: {{ member }}
    - failhard: True

# 7. the final health without it (a member in its restart delay is waited for), printed
etcd-remove-member-healthy:
  salt.runner:
    - name: etcd.health
    - member: {{ member }}
    - exclude: {{ member }}

etcd-remove-member-unlocked:
  salt.runner:
    - name: etcd.end
    - member: {{ member }}

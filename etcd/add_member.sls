# -*- coding: utf-8 -*-
# vim: ft=sls
# Add one etcd member, as the admin SOP does by hand, each step checked before the next:
#
#   salt-run state.orchestrate etcd.add_member pillar='{"etcd_member": "h4"}'
#
# The minion must be in its cluster's pillar first (etcd:clusters:<cluster>:members, a
# unique seq). Safe to run again after any failure: each step finds what is done.
# etcd_member is rendered quoted (| json) and checked to be one plain minion id by the
# first step, before anything targets it.
{%- set member = pillar.get('etcd_member') | json %}

# 0. one operation at a time on the cluster (released by the last step, or a failing one)
etcd-add-member-locked:
  salt.runner:
    - name: etcd.begin
    - what: add_member
    - member: {{ member }}
    - failhard: True

# 1. a plain minion id, in pillar (validated whole), its minion answers, cluster healthy,
#    no other member pending, its data dir empty or its own
etcd-add-member-preflight:
  salt.runner:
    - name: etcd.add_preflight
    - member: {{ member }}
    - failhard: True

# 2. member add --learner (idempotent)
etcd-add-member-learner-added:
  salt.runner:
    - name: etcd.add_learner
    - member: {{ member }}
    - failhard: True

# 3. the new member's highstate: it joins with initial-cluster-state existing
etcd-add-member-highstate:
  salt.state:
    - tgt: {{ member }}
    - tgt_type: list
    - sls: etcd
    - parallel: True
    - failhard: True
    - require:
      - salt: etcd-add-member-learner-added

# 4. beside it: promote within 50 ms of the learner catching up (a learner that does not
#    catch up in time is rolled back)
etcd-add-member-promoted:
  salt.runner:
    - name: etcd.promote
    - member: {{ member }}
    - parallel: True
    - failhard: True
    - require:
      - salt: etcd-add-member-learner-added

# 5. etcdctl env, patroni, vip-manager, prometheus: the voting members
etcd-add-member-endpoints-refreshed:
  salt.runner:
    - name: etcd.refresh_endpoints
    - member: {{ member }}
    - parallel: True
    - require:
      - salt: etcd-add-member-highstate
      - salt: etcd-add-member-promoted

# 6. beside it, the final health (a member in its restart delay is waited for), printed
etcd-add-member-healthy:
  salt.runner:
    - name: etcd.health
    - member: {{ member }}
    - parallel: True
    - require:
      - salt: etcd-add-member-highstate
      - salt: etcd-add-member-promoted

etcd-add-member-unlocked:
  salt.runner:
    - name: etcd.end
    - member: {{ member }}
    - require:
      - salt: etcd-add-member-endpoints-refreshed
      - salt: etcd-add-member-healthy

# -*- coding: utf-8 -*-
# vim: ft=sls
# Add one etcd member, as the admin SOP does by hand, each step checked before the next:
#
#   salt-run state.orchestrate etcd.add_member pillar='{"etcd_member": "h4"}'
#
# The minion must be in its cluster's pillar first (etcd:clusters:<cluster>:members, a
# unique seq). Safe to run again after any failure: each step finds what is done.
{%- set member = pillar.get('etcd_member') %}
{%- if not member %}
etcd-add-member-refused:
  test.fail_without_changes:
    - name: "no member given: salt-run state.orchestrate etcd.add_member pillar='{\"etcd_member\": \"<minion id>\"}'"
    - failhard: True
{%- else %}

# 1. in pillar with a unique seq, cluster healthy, no other learner, data dir clean
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
    - sls: etcd
    - failhard: True

# 4. promote once in sync (at the deadline: learner removed, data wiped, failure)
etcd-add-member-promoted:
  salt.runner:
    - name: etcd.promote
    - member: {{ member }}
    - failhard: True

# 5. etcdctl env, patroni, vip-manager, prometheus: the voting members
etcd-add-member-endpoints-refreshed:
  salt.runner:
    - name: etcd.refresh_endpoints
    - member: {{ member }}
    - failhard: True

# 6. final health, printed
etcd-add-member-healthy:
  salt.runner:
    - name: etcd.health
    - member: {{ member }}
{%- endif %}

# -*- coding: utf-8 -*-
# vim: ft=sls
# Remove one etcd member, the add's reverse, each step checked before the next:
#
#   salt-run state.orchestrate etcd.remove_member pillar='{"etcd_member": "h1"}'
#   ... pillar='{"etcd_member": "h1", "etcd_force": true}'   # unsafe: quorum, 2 -> 1
#
# Keep the minion in pillar until this is done, then delete it from etcd:clusters.
{%- set member = pillar.get('etcd_member') %}
{%- set force = pillar.get('etcd_force', False) %}
{%- if not member %}
etcd-remove-member-refused:
  test.fail_without_changes:
    - name: "no member given: salt-run state.orchestrate etcd.remove_member pillar='{\"etcd_member\": \"<minion id>\"}'"
    - failhard: True
{%- else %}

# 1. refuse what breaks quorum (or leaves 1 of 2) unless forced
etcd-remove-member-preflight:
  salt.runner:
    - name: etcd.remove_preflight
    - member: {{ member }}
    - force: {{ force }}
    - failhard: True

# 2. clients stop using it first
etcd-remove-member-endpoints-refreshed:
  salt.runner:
    - name: etcd.refresh_endpoints
    - member: {{ member }}
    - exclude: {{ member }}
    - failhard: True

# 3. leadership moves off it
etcd-remove-member-leader-moved:
  salt.runner:
    - name: etcd.move_leader_off
    - member: {{ member }}
    - failhard: True

# 4. member remove
etcd-remove-member-removed:
  salt.runner:
    - name: etcd.member_remove
    - member: {{ member }}
    - force: {{ force }}
    - failhard: True

# 5. stop + disable etcd there; archive its data dir, purge it unless safeguard
etcd-remove-member-retired:
  salt.runner:
    - name: etcd.retire
    - member: {{ member }}
    - failhard: True

# 6. the members' etcdctl env without it, and the final health, printed
etcd-remove-member-env-refreshed:
  salt.runner:
    - name: etcd.refresh_endpoints
    - member: {{ member }}
    - exclude: {{ member }}
    - failhard: True

etcd-remove-member-healthy:
  salt.runner:
    - name: etcd.health
    - member: {{ member }}
    - exclude: {{ member }}
{%- endif %}

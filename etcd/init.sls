# -*- coding: utf-8 -*-
# vim: ft=sls
# An etcd member, in order: the pillar is checked before anything changes. Salt renders
# every included file before running any: when the pillar is too broken to resolve this
# member, only the check is included, so that its report is the one failure shown.
include:
  - .assert
{%- if salt['etcd_cluster.settings']() %}
  - .install
  - .dirs
  - .pki
  - .config
  - .auth
  - .service
  - .env
  - .health
{%- endif %}

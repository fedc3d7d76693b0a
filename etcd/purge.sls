# -*- coding: utf-8 -*-
# vim: ft=sls
# Purge this etcd member with force (Pigsty's etcd_purge): safeguard and membership are
# not asked. etcd is stopped first (and checked stopped), the data dir archived
# (<data_dir>.removed-<time>.tar.gz, 0600, read back) before anything is deleted, and only
# etcd's own data is deleted. The comment says when the member was still in the cluster.
#
#   salt h1 state.apply etcd.purge
etcd-member-purged:
  etcd_data.purged:
    - name: etcd member {{ grains.id }}
    - mode: purge

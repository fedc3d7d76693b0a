# -*- coding: utf-8 -*-
# vim: ft=sls
# Purge this etcd member (the reverse of init.sls; packages stay), safely (Pigsty's
# etcd_clean): refused under safeguard: true, without clean: true, while etcd may hold or
# serve data (active, activating, an etcd process), and while the cluster still lists the
# member (asked of it; refused when it cannot be asked). The data dir is archived first
# (<data_dir>.removed-<time>.tar.gz, 0600). etcd/purge.sls is the explicit override;
# etcd/remove_member.sls takes a member out of the membership first.
etcd-member-purged:
  etcd_data.purged:
    - name: etcd member {{ grains.id }}
    - mode: clean

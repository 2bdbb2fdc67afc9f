#!/bin/sh
# Runs inside the freshly debootstrapped rootfs (chroot) of the lab node image. Turns a minbase Debian 12
# into a systemd "machine" that boots as PID 1 in a Docker container. Part of the image cache key.
set -eu

# Identity is per node: an empty machine-id (the lab writes one per container before its first start) and no
# SSH host keys (lab-ssh-keys.service generates them at first boot).
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -s /etc/machine-id /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*

# PID 1 of a node: with --cgroupns=host the node sees the host's whole cgroup tree and its systemd lives at
# /docker/<id>. systemd then creates kubelet's kubepods.slice at /docker/<id>/kubepods.slice while kubelet looks
# for /kubepods.slice (and, failing, creates cgroups in the HOST's root). kind's cgroup-v1 fix, done before
# systemd starts: bind the node's own cgroup over the root of each hierarchy, and bind that root back at
# /docker/<id> inside it, so both views name the same directory.
cat > /usr/local/sbin/lab-entrypoint <<'SCRIPT'
#!/bin/sh
set -eu
while IFS=: read -r _ controllers path; do
  [ "$path" != "/" ] || continue
  case "$controllers" in
    "") dir=/sys/fs/cgroup/unified ;;
    name=systemd) dir=/sys/fs/cgroup/systemd ;;
    *) dir="/sys/fs/cgroup/$controllers" ;;
  esac
  if mountpoint -q "$dir" && [ -d "$dir$path" ]; then
    mount --bind "$dir$path" "$dir"
    mkdir -p "$dir$path"
    mount --bind "$dir" "$dir$path"
  fi
done < /proc/self/cgroup
exec /sbin/init "$@"
SCRIPT
chmod 0755 /usr/local/sbin/lab-entrypoint

cat > /etc/systemd/system/lab-ssh-keys.service <<'UNIT'
[Unit]
Description=Generate this node's SSH host keys (lab image ships none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT

# What a real host has and a container lacks: shared mount propagation on / (kubelet and containerd need it;
# systemd leaves it private inside containers), and a default route (the lab network is --internal, Docker
# gives no gateway; Kubernetes components want one to pick the node address and to reach Service IPs).
cat > /usr/local/sbin/lab-node-init <<'SCRIPT'
#!/bin/sh
set -eu
mount --make-rshared /
if [ -r /etc/lab/gateway ] && ! ip -4 route show default | grep -q .; then
  ip route add default via "$(cat /etc/lab/gateway)"
fi
SCRIPT
chmod 0755 /usr/local/sbin/lab-node-init
cat > /etc/systemd/system/lab-node-init.service <<'UNIT'
[Unit]
Description=Lab node: shared mount propagation and default route
DefaultDependencies=no
After=local-fs.target
Before=network.target containerd.service ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-node-init

[Install]
WantedBy=multi-user.target
UNIT

systemctl enable lab-ssh-keys.service lab-node-init.service ssh.service

# Units that make no sense in a container (hardware, consoles, kernel modules, remounting /).
systemctl mask \
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket systemd-udev-trigger.service \
  systemd-modules-load.service systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount \
  sys-kernel-tracing.mount sys-fs-fuse-connections.mount getty.target console-getty.service \
  systemd-firstboot.service systemd-journald-audit.socket e2scrub_reap.service \
  apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true

# Journal in memory only, small.
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' > /etc/systemd/journald.conf.d/lab.conf

# SSH: keys only (root with the lab's key, installed per container).
mkdir -p /etc/ssh/sshd_config.d /root/.ssh
chmod 0700 /root/.ssh
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n' \
  > /etc/ssh/sshd_config.d/lab.conf

# No apt indexes, docs or caches in the image (the roles install nothing from apt when the packages are there).
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/info/* /var/cache/debconf/*-old \
  /var/log/*.log /tmp/* /var/tmp/*

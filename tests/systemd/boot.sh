#!/bin/bash
# Boot the host's systemd as PID 1 of new namespaces, for the unit tests.
# Boot systemd (the HOST's own /lib/systemd/systemd) as PID 1 of new namespaces, on a throw-away
# overlay of the host's root fs (lower=/ read-only, upper=tmpfs). No debootstrap, no nspawn.
# $1 = dir with unit files to install, $2 = pidfile, $3 = log
set -euo pipefail
UNITS=$(realpath "$1"); PIDFILE=$2; LOG=$3; CG=sdtest-$$
mkdir -p /sys/fs/cgroup/unified/$CG; echo $CG > "$PIDFILE.cg"
cat /proc/sys/kernel/random/uuid > "$PIDFILE.bootid"
inner() {
  set -e
  mount --make-rprivate /
  M=$OVL                                      # tmpfs on it is visible only inside this mount ns
  mount -t tmpfs -o mode=755 tmpfs "$M"; mkdir -p "$M/u" "$M/w" "$M/root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$M/u,workdir=$M/w" "$M/root"
  R=$M/root
  # test-only config in the upper layer: units under test, a minimal boot target, masks
  cp "$UNITS"/*.service "$R/etc/systemd/system/"
  printf '[Unit]\nDescription=sdtest boot target\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n' > "$R/etc/systemd/system/sdtest.target"
  for u in getty@tty1.service postgresql.service apt-daily.timer apt-daily-upgrade.timer man-db.timer \
           dpkg-db-backup.timer e2scrub_all.timer fstrim.timer e2scrub_reap.service systemd-timesyncd.service; do
    ln -sf /dev/null "$R/etc/systemd/system/$u"; done
  mkdir -p "$R/etc/systemd/journald.conf.d"; printf '[Journal]\nStorage=volatile\n' > "$R/etc/systemd/journald.conf.d/sdtest.conf"
  : > "$R/etc/machine-id"
  ln -sf /dev/null "$R/etc/tmpfiles.d/tmp.conf"   # do NOT let tmpfiles "D /tmp" wipe the (overlay view of the) host /tmp
  mount -t proc proc "$R/proc"
  mount --bind "$R/proc/sys" "$R/proc/sys"; mount -o remount,bind,ro "$R/proc/sys"   # no host sysctl changes
  if [ -e "$R/proc/sysrq-trigger" ]; then mount --bind "$R/proc/sysrq-trigger" "$R/proc/sysrq-trigger"; mount -o remount,bind,ro "$R/proc/sysrq-trigger"; fi
  mount --bind "$BOOTID" "$R/proc/sys/kernel/random/boot_id"
  mount -t sysfs -o ro sysfs "$R/sys"
  mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
  mount -t tmpfs -o mode=755,size=64m tmpfs "$R/dev"
  for d in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read n ma mi <<<"$d"; mknod -m 666 "$R/dev/$n" c $ma $mi; done
  mkdir -p "$R/dev/pts" "$R/dev/shm"; mount -t devpts -o newinstance,ptmxmode=666 devpts "$R/dev/pts"
  ln -s pts/ptmx "$R/dev/ptmx"; mount -t tmpfs tmpfs "$R/dev/shm"
  ln -s /proc/self/fd "$R/dev/fd"; for i in 0:stdin 1:stdout 2:stderr; do ln -s /proc/self/fd/${i%%:*} "$R/dev/${i#*:}"; done
  mount -t tmpfs -o mode=755 tmpfs "$R/run"
  cd "$R"; mkdir -p .oldroot; pivot_root . .oldroot; umount -l /.oldroot; rmdir /.oldroot
  export container=sdtest
  exec /lib/systemd/systemd --show-status=no --unit=sdtest.target
}
OVL=$(realpath "$PIDFILE").ovl; mkdir -p "$OVL"
export -f inner; export UNITS OVL BOOTID=$(realpath "$PIDFILE.bootid")
setsid bash -c "echo \$\$ > /sys/fs/cgroup/unified/$CG/cgroup.procs
  exec setpriv --bounding-set=-sys_module,-sys_rawio,-sys_time,-sys_pacct,-syslog,-wake_alarm,-block_suspend,-mac_admin,-mac_override,-bpf,-perfmon,-net_admin \\
  unshare --pid --fork --mount --uts --ipc --cgroup --kill-child=SIGKILL bash -c inner" </dev/null >"$LOG" 2>&1 &
UNSHARE=$!; echo $UNSHARE > "$PIDFILE.unshare"
for i in $(seq 100); do C=$(pgrep -P $UNSHARE || true); [ -n "$C" ] && break; sleep 0.05; done
[ -n "$C" ] || { echo "container did not start:"; cat "$LOG"; exit 1; }
echo "$C" > "$PIDFILE"
X="nsenter -t $C -m -p -u -i -C -r -w"
for i in $(seq 600); do case $($X systemctl is-system-running 2>/dev/null) in running|degraded) exit 0;; esac; sleep 0.05; done
echo "boot did not finish"; cat "$LOG"; $X systemctl --failed --no-pager; exit 1

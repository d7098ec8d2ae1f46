#!/usr/bin/env bash
# Run tests/test_cgroups.py (and the test files given) on a real cgroup v2 kernel: this
# machine's kernel is cgroup v1 (and has no netem qdisc), so boot Debian's
# linux-image-amd64, which has both, in qemu (software emulation, no KVM)
# with virtme-ng, which shares the host's filesystem read-only with a writable
# overlay, so the same checkout and Python run inside.  Its init (virtme-ng-init)
# mounts cgroup2 at /sys/fs/cgroup with every controller; we mount it ourselves if
# a future version does not.  Exits with pytest's status.
#
# Needs (as root): Debian packages linux-image-amd64 qemu-system-x86, pip package virtme-ng.
# Environment: KERNEL (default: newest /boot/vmlinuz-*), PYTHON (default: python3),
#              VM_TIMEOUT seconds (default 900), extra pytest arguments as "$@".
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

kernel=${KERNEL:-$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$kernel" ] || [ ! -r "$kernel" ]; then
    echo "run-cgroup-v2: no kernel in /boot: apt-get install linux-image-amd64" >&2
    exit 2
fi
version=${kernel#/boot/vmlinuz-}
if [ ! -d "/lib/modules/$version" ]; then
    echo "run-cgroup-v2: /lib/modules/$version is missing: reinstall linux-image-$version" >&2
    exit 2
fi
command -v vng >/dev/null || { echo "run-cgroup-v2: vng not found: pip install virtme-ng" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "run-cgroup-v2: apt-get install qemu-system-x86" >&2; exit 2; }

# The guest sees the host's files, so the host's own interpreter (with pytest) runs there.
python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
status_dir=$(mktemp -d /var/tmp/cgroup-v2.XXXXXX)
status_file=$status_dir/status
trap 'rm -rf "$status_dir"' EXIT

args=""
for arg in "$@"; do args+=" $(printf '%q' "$arg")"; done
guest_script="
set -u
grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
# The shared /tmp can't truncate unlinked files (pytest's capture needs that): a guest tmpfs can.
# Not mounted over /tmp itself: the checkout may live there (CI clones anywhere).
mkdir -p /run/guest-tmp && mount -t tmpfs tmpfs /run/guest-tmp
export TMPDIR=/run/guest-tmp
exec 2>&1  # one stream, so the guest's stderr does not garble the console
export PYTHONDONTWRITEBYTECODE=1
cd $(printf '%q' "$repo")
echo \"guest kernel \$(uname -r), /sys/fs/cgroup is \$(stat -f -c %T /sys/fs/cgroup)\"
$(printf '%q' "$python") -c 'from containerlab_magic.runtime.cgroups import describe_host; print(\"cgroup driver:\", describe_host())'
$(printf '%q' "$python") -m pytest -p no:cacheprovider --basetemp=/run/guest-tmp/pytest -v -rs tests/test_cgroups.py$args
echo \$? > $(printf '%q' "$status_file")
"

echo "run-cgroup-v2: booting $kernel under qemu (no KVM); about a minute"
# --rwdir: the one host path the guest writes, to hand pytest's status back.
timeout "${VM_TIMEOUT:-900}" vng --run "$kernel" --disable-kvm --memory 1G --cpus 2 \
    --rwdir "$status_dir" --exec "$guest_script" </dev/null 2>&1 | cat
# (through cat, stdout and stderr both: the VM's tools reopen their output, which
# truncates the caller's log file when that is where it points)

status=$(cat "$status_file" 2>/dev/null || true)
if [ -z "$status" ]; then
    echo "run-cgroup-v2: the VM did not report pytest's status (boot failure or timeout)" >&2
    exit 1
fi
exit "$status"

#!/usr/bin/env bash
# Run tests/test_cgroups.py (and the test files given) on a real cgroup v2 kernel: this
# machine's kernel is cgroup v1 (and has no netem qdisc), so boot Debian's
# linux-image-amd64, which has both, in qemu (software emulation, no KVM) with virtme-ng.
# Its init (virtme-ng-init) mounts cgroup2 at /sys/fs/cgroup with every controller; we
# mount it ourselves if a future version does not.  Exits with pytest's status.
#
# What the guest sees: virtme-ng shows it the host's root read-only, but mounts fresh
# tmpfs over /var/tmp, /var/log, /var/cache, ... and a throw-away overlay over /tmp, /home,
# /opt, /var.  A checkout (or a Python) under /var/tmp is therefore invisible in the
# guest ("can't cd", then "No module named containerlab_magic").  So the checkout is
# always shared explicitly (--rodir: 9p, read-only), and so is this Python's prefix when it
# lies under such a path; the guest imports the package from the checkout (PYTHONPATH),
# builds its own images in a guest tmpfs (CONTAINERLAB_DATA) and checks, before pytest,
# that it really runs this checkout's code.
#
# Needs (as root): Debian packages linux-image-amd64 qemu-system-x86, pip package virtme-ng.
# Environment: KERNEL (default: newest /boot/vmlinuz-*), PYTHON (default: python3),
#              VM_TIMEOUT seconds (default 1500), VM_VERBOSE=1 (the guest's boot messages),
#              extra pytest arguments as "$@".
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd -P)

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

# The host's own interpreter (with pytest) runs in the guest.
py=${PYTHON:-python3}
python=$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable))')
mapfile -t prefixes < <("$py" -c 'import os, sys; print(*sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}), sep="\n")')

# Host paths the guest does not see as they are on the host (virtme-ng-init's tmpfs and overlays).
hidden_in_guest() {
    case "$1/" in
        /tmp/* | /var/* | /run/* | /dev/shm/* | /home/* | /opt/* | /srv/*) return 0 ;;
        *) return 1 ;;
    esac
}

status_dir=$(mktemp -d /var/tmp/cgroup-v2.XXXXXX)
status_file=$status_dir/status
trap 'rm -rf "$status_dir"' EXIT

# --rwdir: the one host path the guest writes, to hand pytest's status back.
shares=(--rwdir "$status_dir" --rodir "$repo")
for prefix in "${prefixes[@]}"; do
    case "$repo/" in "$prefix"/*) continue ;; esac   # already inside the shared checkout (a .venv)
    if hidden_in_guest "$prefix"; then
        shares+=(--rodir "$prefix")
    fi
done

args=""
for arg in "$@"; do args+=" $(printf '%q' "$arg")"; done
q() { printf '%q' "$1"; }
guest_script="
set -u
grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
# The shared /tmp can't truncate unlinked files (pytest's capture needs that): a guest tmpfs can.
# Not mounted over /tmp itself: the checkout may live there (CI clones anywhere).
mkdir -p /run/guest-tmp && mount -t tmpfs tmpfs /run/guest-tmp
export TMPDIR=/run/guest-tmp
exec 2>&1  # one stream, so the guest's stderr does not garble the console
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$(q "$repo")
export CONTAINERLAB_DATA=/run/guest-tmp/containerlab-data   # images built in the guest, not the host's
export CONTAINERLAB_REQUIRE_PASSES=1   # a run in which no test passed fails (tests/conftest.py)
cd $(q "$repo") || { echo 'run-cgroup-v2: the guest cannot see $(q "$repo")'; echo 2 > $(q "$status_file"); exit; }
echo \"guest kernel \$(uname -r), /sys/fs/cgroup is \$(stat -f -c %T /sys/fs/cgroup)\"
$(q "$python") -c 'import sys, containerlab_magic as m
from containerlab_magic.runtime.cgroups import describe_host
print(\"package:\", m.__file__, \"cgroup driver:\", describe_host())
sys.exit(0 if m.__file__.startswith(sys.argv[1] + \"/\") else \"run-cgroup-v2: the guest imported the package from outside the checkout\")' $(q "$repo") \
    || { echo 2 > $(q "$status_file"); exit; }
$(q "$python") -m pytest -p no:cacheprovider --basetemp=/run/guest-tmp/pytest -v -rs tests/test_cgroups.py$args
echo \$? > $(q "$status_file")
"
# The script goes to the guest through the shared status directory: what --exec passes
# travels base64-encoded on the kernel's command line, whose 2048 bytes a script this long
# overflows (the guest then panics in early boot: "detected buffer overflow in __fortify_strlen").
printf '%s\n' "$guest_script" > "$status_dir/guest.sh"

echo "run-cgroup-v2: booting $kernel under qemu (no KVM); about a minute"
echo "run-cgroup-v2: shared with the guest: ${shares[*]}"
# cwd /: the guest's start directory must exist there (ours is cd'd to in the script).
verbose=()
[ "${VM_VERBOSE:-}" = 1 ] && verbose=(--verbose)
vm_status=0
(cd / && timeout "${VM_TIMEOUT:-1500}" vng --run "$kernel" --disable-kvm --memory 1G --cpus 2 \
    "${shares[@]}" ${verbose[@]+"${verbose[@]}"} --exec "bash $(q "$status_dir/guest.sh")") </dev/null 2>&1 | cat || vm_status=$?
# (through cat, stdout and stderr both: the VM's tools reopen their output, which
# truncates the caller's log file when that is where it points)

status=$(cat "$status_file" 2>/dev/null || true)
if [ -z "$status" ]; then
    reason="boot failure"; [ "$vm_status" = 124 ] && reason="timeout after ${VM_TIMEOUT:-1500} s (VM_TIMEOUT)"
    echo "run-cgroup-v2: the VM did not report pytest's status ($reason; vng exited $vm_status)" >&2
    exit 1
fi
exit "$status"

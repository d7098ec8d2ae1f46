"""Kernel interfaces a container sees hidden or read-only (a module of constants: the OCI
runtime's command line reads them without importing the rootfs code)."""

# runc's defaults (libcontainer/specconv): hidden, and read-only, kernel interfaces.
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
# Masked by Docker since (moby GHSA-6fw5-f8r9-fgfm: a side channel on the host's
# activity); the escape suite turns these off alone through the masked-paths guard.
NEWER_MASKED_PATHS = ("/proc/interrupts", "/proc/vmcoreinfo")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

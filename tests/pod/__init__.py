"""A locked-down notebook pod, emulated with runc, for the tests.

bundle.py writes an OCI bundle shaped like a Zero-to-JupyterHub or Binder user
pod (uid 1000, no capabilities, no_new_privs, read-only /sys/fs/cgroup, masked
/proc paths, a seccomp profile per container runtime); run.py runs a command in
it and removes what runc made.  users.py runs a command as a real unprivileged
user of this host.
"""

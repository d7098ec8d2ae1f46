"""/etc/hosts of the containers on a network: names to addresses.

The engine bind-mounts a host file over each container's /etc/hosts.  A bind
mount pins the file's inode, so we rewrite it *in place* (open r+, write,
truncate), never by rename.  Only our block, between the two marker lines, is
ours; whatever else the engine wrote (localhost, the hostname) stays.
"""

from __future__ import annotations

import os

BEGIN = "# containerlab network {network}: containers by name (rewritten as they join and leave)"
END = "# end of containerlab network"
MAX_HOSTS_BYTES = 1 << 20  # more is not ours: the rest is dropped at the next rewrite
LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def render_block(network: str, entries: list[tuple[str, str]]) -> str:
    lines = [BEGIN.format(network=network)]
    lines += [f"{ip}\t{name}" for ip, name in entries]
    lines.append(END)
    return "\n".join(lines) + "\n"


def strip_block(text: str) -> str:
    kept, inside = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("# containerlab network ") and not inside:
            inside = True
        elif inside and line.rstrip("\n") == END:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def rewrite(path: str, block: str) -> bool:
    """Replace our block in the file at `path` ('' removes it); False if the file is gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return False
    # Whatever bytes are there (a container could write it before it was made read-only,
    # an image could bring any), they pass through unchanged: never a UnicodeDecodeError.
    with os.fdopen(fd, "r+", encoding="utf-8", errors="surrogateescape") as f:
        rest = strip_block(f.read(MAX_HOSTS_BYTES))
        if rest and not rest.endswith("\n"):
            rest += "\n"
        if block and "localhost" not in rest:
            rest = LOCALHOST + rest
        f.seek(0)
        f.write(rest + block)
        f.truncate()
    return True

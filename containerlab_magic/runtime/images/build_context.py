"""The build context: its files, less what .containerignore (else .dockerignore) leaves out.

Docker's rule: one pattern a line (filepath.Match, `**` for any depth), `#`
comments, `!` re-includes; the last matching pattern wins, and a pattern that
matches a directory leaves out everything below it.
"""

from __future__ import annotations

import fnmatch
import os


def ignore_patterns(context: str) -> list[tuple[bool, str]]:
    """.containerignore (else .dockerignore): (negated, pattern) lines, # comments skipped."""
    for name in (".containerignore", ".dockerignore"):
        path = os.path.join(context, name)
        if os.path.isfile(path):
            with open(path) as f:
                lines = [line.strip() for line in f]
            return [(line.startswith("!"), os.path.normpath(line.lstrip("!").strip("/")))
                    for line in lines if line and not line.startswith("#")]
    return []


def ignored(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matches a path or any of its parents."""
    result = False
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for negated, pattern in patterns:
        pattern = pattern.replace("**/", "*").replace("/**", "/*")
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            result = not negated
    return result


def walk(context: str, patterns) -> list[str]:
    """Every path in the context (relative), less what the ignore file leaves out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(context):
        rel_dir = os.path.relpath(dirpath, context)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not ignored(rel, patterns):
                out.append(rel)
    return out

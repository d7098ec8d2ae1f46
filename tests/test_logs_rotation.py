"""A detached container's log is capped: past CONTAINERLAB_LOG_SIZE it rotates to log.1,
so a container that floods its output holds at most two logs on the host, and
`logs` / `logs -f` read across the rotation in order."""

from __future__ import annotations

import os

import pytest

from conftest import needs_root

pytestmark = needs_root

LIMIT = 64 << 10  # the smallest CONTAINERLAB_LOG_SIZE
# 3000 numbered lines of ~100 bytes: about 300 KB, so several rotations of 64 KiB
LINES = 3000
WRITE = ["sh", "-c", f"i=0; while [ $i -lt {LINES} ]; do printf '%05d %094d\\n' $i 0; i=$((i+1)); done"]


@pytest.fixture
def small_logs(module_no_leaks):
    from containerlab_magic.runtime import Engine

    old = os.environ.get("CONTAINERLAB_LOG_SIZE")
    os.environ["CONTAINERLAB_LOG_SIZE"] = "64K"
    try:
        with Engine(prewarm=False) as engine:  # (the shim reads it when it starts)
            yield engine
    finally:
        if old is None:
            os.environ.pop("CONTAINERLAB_LOG_SIZE")
        else:
            os.environ["CONTAINERLAB_LOG_SIZE"] = old


def numbers(chunks) -> list[int]:
    text = b"".join(data for _stream, data in chunks).decode()
    return [int(line.split()[0]) for line in text.splitlines()]


def test_a_flooding_container_keeps_two_bounded_logs_and_logs_shows_the_newest_in_order(small_logs):
    from containerlab_magic.runtime import ContainerSpec

    engine = small_logs
    box = engine.run(ContainerSpec(tuple(WRITE), image="busybox", detach=True, name="flood"))
    try:
        assert box.wait(timeout=60).exit_code == 0
        folder = engine.store.dir(box.id)
        logs = sorted(name for name in os.listdir(folder) if name.startswith("log"))
        assert logs == ["log", "log.1"]
        for name in logs:
            assert os.path.getsize(os.path.join(folder, name)) <= LIMIT
        seen = numbers(engine.logs("flood"))
        # the newest lines, each once and in order, ending with the last; older ones were rotated away
        assert seen == list(range(seen[0], LINES)) and 0 < seen[0] < LINES - 500, seen[:3]
    finally:
        engine.rm("flood", force=True)


def test_logs_follow_reads_on_across_rotations(small_logs):
    from containerlab_magic.runtime import ContainerSpec

    engine = small_logs
    # the follower is attached before the first line; the writer pauses now and then, as
    # programs do, so that a follower that reads as fast as it can keeps up
    slow = ["sh", "-c", "sleep 0.5; " + WRITE[2].replace("i=$((i+1));", "i=$((i+1)); [ $((i % 200)) = 0 ] && sleep 0.02;")]
    box = engine.run(ContainerSpec(tuple(slow), image="busybox", detach=True, name="flood-f"))
    try:
        seen = numbers(engine.logs("flood-f", follow=True, poll=0.01))
        # a follower that keeps up sees everything; one that fell two rotations behind may miss
        # a file's worth (as docker's rotated logs); here it keeps up with 64 KiB files
        assert seen == list(range(LINES)), (len(seen), seen[:3])
        assert box.wait(timeout=30).exit_code == 0
    finally:
        engine.rm("flood-f", force=True)


def test_a_bad_log_size_is_one_line_and_leaves_nothing(module_no_leaks):
    from containerlab_magic.runtime import ContainerSpec, Engine
    from containerlab_magic.runtime.errors import SpecError

    os.environ["CONTAINERLAB_LOG_SIZE"] = "lots"
    try:
        engine = Engine(prewarm=False)
        engine.start()
    finally:
        os.environ.pop("CONTAINERLAB_LOG_SIZE")
    with engine:
        with pytest.raises(SpecError) as info:
            engine.run(ContainerSpec(("true",), image="busybox", detach=True, name="badlog"))
        assert "CONTAINERLAB_LOG_SIZE" in str(info.value) and "\n" not in str(info.value)
        assert not [c for c in engine.ps(all=True) if c.get("name") == "badlog"]
        # a foreground container has no log: it runs
        assert engine.run(ContainerSpec(("true",), image="busybox")).wait(timeout=30).exit_code == 0

#!/usr/bin/env python3
"""Checks the timelines written by timeline_test: structure, per-tensor
negotiation with a tick per rank, queue/copy/backend spans, cycle markers,
that a timeline cut short by SIGKILL loads once its array is closed, and
(mode fast) the fast lane's negotiation and execution spans."""
import json
import sys


def load(path, repair=False):
    text = open(path).read()
    if repair:
        assert not text.rstrip().endswith("]"), "a killed timeline is unterminated"
        text = text.rstrip().rstrip(",") + "]"
    return json.loads(text)


def check(events, ranks, cycles):
    names = {e.get("name") for e in events}
    rows = {e["tid"]: e["args"]["name"] for e in events
            if e.get("name") == "thread_name"}
    assert "layer0.grad" in rows.values(), rows
    for needed in ("NEGOTIATE_ALLREDUCE", "NEGOTIATE_BROADCAST", "QUEUE",
                   "MEMCPY_IN_FUSION_BUFFER", "MEMCPY_OUT_FUSION_BUFFER"):
        assert needed in names, (needed, sorted(n for n in names if n))
    assert any(n and "_ALLREDUCE" in n and not n.startswith("NEGOTIATE")
               for n in names), names
    assert any(n and "_BROADCAST" in n and not n.startswith("NEGOTIATE")
               for n in names), names
    # Every rank ticks on every tensor it negotiated.
    tid = next(t for t, n in rows.items() if n == "layer0.grad")
    ticks = {e["args"]["rank"] for e in events
             if e.get("ph") == "i" and e.get("tid") == tid and "args" in e}
    assert ticks == set(range(ranks)), ticks
    begins = sum(1 for e in events if e.get("ph") == "B")
    ends = sum(1 for e in events if e.get("ph") == "E")
    assert begins >= 3 and ends >= 3, (begins, ends)
    assert ("CYCLE" in names) == cycles, cycles


def main():
    directory, ranks, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "fast":
        # The steps repeat: after the first ones, rank 0 records its wait in
        # the fast lane and the lane's execution spans.
        events = load(f"{directory}/api.json")
        names = {e.get("name") for e in events}
        # The shared-memory plane's choice of algorithm is in the name: the
        # fused small tensors take the direct path, 1 MiB the rounds.
        for needed in ("NEGOTIATE_FAST_ALLREDUCE", "FAST_SHM_ALLREDUCE_DIRECT",
                       "FAST_SHM_ALLREDUCE_REDUCE_SCATTER_ALLGATHER",
                       "FAST_SHM_BROADCAST_ROUNDS", "MEMCPY_IN_FUSION_BUFFER"):
            assert needed in names, (needed, sorted(n for n in names if n))
        rows = {e["tid"]: e["args"]["name"] for e in events
                if e.get("name") == "thread_name"}
        by_row = {}
        for e in events:
            if e.get("ph") == "X" and e["name"].startswith("FAST_SHM_ALLREDUCE"):
                by_row.setdefault(rows[e["tid"]], set()).add(e["name"])
        assert by_row["large.grad"] == {
            "FAST_SHM_ALLREDUCE_REDUCE_SCATTER_ALLGATHER"}, by_row
        assert by_row["layer0.grad"] == {"FAST_SHM_ALLREDUCE_DIRECT"}, by_row
        # A broadcast's span names its copy algorithm (slot rounds here).
        broadcasts = {e["name"] for e in events if e.get("ph") == "X"
                      and e["name"].startswith("FAST_SHM_BROADCAST")}
        assert broadcasts == {"FAST_SHM_BROADCAST_ROUNDS"}, broadcasts
        check(load(f"{directory}/started.json"), ranks, cycles=False)
    elif mode == "kill":
        check(load(f"{directory}/started.json"), ranks, cycles=False)
        check(load(f"{directory}/killed.json", repair=True), ranks, cycles=True)
    else:
        check(load(f"{directory}/started.json"), ranks, cycles=False)
        check(load(f"{directory}/api.json"), ranks, cycles=True)
    print("timeline ok:", mode)


main()

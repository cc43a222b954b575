#!/usr/bin/env python3
"""Summarize the pipbench reports of a run-suite folder as Markdown.

Usage: summarize.py FOLDER

Reads FOLDER/{tcp,ipc}-*.json and FOLDER/memory.json, prints one table of
every run (workload beside baseline) and the targets with their status.
"""
import json
import os
import sys

TRANSPORTS = ("tcp", "ipc")
WORKLOADS = ("noop", "counters-write", "settings-read", "logging-write")

# (transport, workload, concurrency, figure, limit kind, limit)
TARGETS = (
    ("tcp", "noop", 1, "calls_per_s", "min", 0.85),
    ("tcp", "noop", 32, "calls_per_s", "min", 0.85),
    ("tcp", "noop", 1, "p99", "max", 1.3),
    ("tcp", "noop", 32, "p99", "max", 1.3),
    ("tcp", "counters-write", 32, "calls_per_s", "min", 0.6),
    ("tcp", "settings-read", 32, "calls_per_s", "min", 0.6),
)
IDLE_RSS_MAX_KB = 16 * 1024
RSS_GROWTH_MAX_KB = 2 * 1024


def load(folder, name):
    path = os.path.join(folder, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_rows(reports):
    yield ("| transport | workload | conc | calls/s | baseline calls/s "
           "| ratio | p99 us | baseline p99 us | ratio | errors |")
    yield "| --- | --- |" + " ---: |" * 8
    for (transport, workload), doc in reports.items():
        for point in doc["points"]:
            w = point["workload"]
            b = point.get("baseline")
            r = point.get("ratio", {})
            yield ("| %s | %s | %d | %.0f | %s | %s | %.0f | %s | %s | %d |"
                   % (transport, workload, point["concurrency"],
                      w["calls_per_s"],
                      "%.0f" % b["calls_per_s"] if b else "",
                      "%.2fx" % r["calls_per_s"] if r else "",
                      w["latency_us"]["p99"],
                      "%.0f" % b["latency_us"]["p99"] if b else "",
                      "%.2fx" % r["p99"] if r else "",
                      w["errors"]))


def find_ratio(reports, transport, workload, concurrency, figure):
    doc = reports.get((transport, workload))
    if doc is None:
        return None
    for point in doc["points"]:
        if point["concurrency"] == concurrency and "ratio" in point:
            return point["ratio"][figure]
    return None


def target_rows(reports, memory):
    yield "| target | measured | status |"
    yield "| --- | ---: | --- |"
    for transport, workload, conc, figure, kind, limit in TARGETS:
        value = find_ratio(reports, transport, workload, conc, figure)
        label = "%s %s at concurrency %d: %s %s %.2fx the baseline" % (
            transport, workload, conc, figure,
            "at least" if kind == "min" else "at most", limit)
        if value is None:
            yield "| %s | not run | - |" % label
            continue
        met = value >= limit if kind == "min" else value <= limit
        status = "met" if met else "MISSED"
        yield "| %s | %.2fx | %s |" % (label, value, status)
    if memory is None or memory.get("memory") is None:
        yield "| node resident memory | not measured | - |"
        return
    mem = memory["memory"]
    calls = sum(p["workload"]["sent_calls"] for p in memory["points"])
    before, after = mem["rss_before_kb"], mem["rss_after_kb"]
    yield "| idle node at most %d KiB resident | %d KiB | %s |" % (
        IDLE_RSS_MAX_KB, before, "met" if before <= IDLE_RSS_MAX_KB
        else "MISSED")
    yield "| growth after %d calls at most %d KiB | %+d KiB | %s |" % (
        calls, RSS_GROWTH_MAX_KB, after - before,
        "met" if after - before <= RSS_GROWTH_MAX_KB else "MISSED")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    reports = {}
    for transport in TRANSPORTS:
        for workload in WORKLOADS:
            doc = load(folder, "%s-%s" % (transport, workload))
            if doc is not None:
                reports[(transport, workload)] = doc
    memory = load(folder, "memory")
    any_doc = next(iter(reports.values()), memory)
    if any_doc is None:
        sys.exit("summarize.py: no reports in %s" % folder)

    host = any_doc["host"]
    versions = any_doc["versions"]
    print("Host %s: %s %s %s, %d CPUs. pipbench %s, NNG %s, msgpack-c %s, "
          "jansson %s.\n" % (host["name"], host["system"], host["kernel"],
                             host["machine"], host["cpus"],
                             versions["pipbench"], versions["nng"],
                             versions["msgpack"], versions["jansson"]))
    for row in run_rows(reports):
        print(row)
    print()
    for row in target_rows(reports, memory):
        print(row)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Print the ratios DESIGN §9 sets targets for, from the last
`cargo bench -p marketgate-benches` run (target/criterion/*/new/estimates.json)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def ns(group, bench):
    path = root / group / bench / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


def row(label, value, target=None):
    print(f"{label:<58} {value:7.2f}" + (f"   (target {target})" if target else ""))


plain = ns("entitled", "plain")
print("entitled: time per call relative to the unannotated function")
for bench in ["annotated", "rwlock_hashset", "arcswap_hashset"]:
    row(f"  {bench} / plain", ns("entitled", bench) / plain, "<= 1.2" if bench == "annotated" else None)
for t in ["1t", "2t"]:
    g = f"metered_{t}"
    p = ns(g, "plain")
    print(f"metered ({t[0]} thread{'s' if t != '1t' else ''}): overhead over the plain call")
    over = {b: ns(g, b) - p for b in ["annotated", "draw", "metrics_counter", "mutex_hashmap"]}
    for b, v in over.items():
        print(f"  {b:<30} {v:8.2f} ns/call   ({ns(g, b) / p:5.2f}x plain)")
    row("  annotated overhead / metrics_counter overhead", over["annotated"] / over["metrics_counter"], "<= 0.33")
    row("  draw! overhead / annotated (#[metered]) overhead", over["draw"] / over["annotated"], "about 1")
# Per-call time with 2 threads over 1 thread, divided by the same ratio of the
# plain function: this cancels what the machine itself does to a second
# thread (a busy shared core slows every variant alike).
print("metered, per-call cost with 2 threads vs 1, relative to plain's own 2t/1t:")
scale = ns("metered_2t", "plain") / ns("metered_1t", "plain")
print(f"  (plain 2t/1t on this machine: {scale:.2f})")
for b in ["annotated", "draw", "metrics_counter", "mutex_hashmap"]:
    row(f"  {b} (2t/1t) / (plain 2t/1t)", ns("metered_2t", b) / ns("metered_1t", b) / scale,
        "<= 1 (flat)" if b == "annotated" else None)

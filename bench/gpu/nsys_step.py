"""Where a training step's GPU time goes, from an Nsight Systems report exported to SQLite.

  nsys profile -t cuda,nvtx --capture-range=cudaProfilerApi --capture-range-end=stop -o R \\
      python -m torch.distributed.run ... bench/peers/train_anchor.py ... (with ANCHOR_PROFILE_STEPS=N)
  nsys export --type sqlite -o R.sqlite R.nsys-rep
  python bench/gpu/nsys_step.py R.sqlite [--label NAME]

Per process (one per GPU) and NVTX range "anchor_step" (one per step), kernels, copies and sets are clipped to the
range and split into compute (everything not NCCL) and communication (NCCL kernels). Prints, per GPU, the median
step of: its length; compute busy (union of compute work); NCCL busy; NCCL overlapped with compute; exposed NCCL
(NCCL running while no compute runs); idle (nothing on the GPU: the host or a dependency is the pace); the busy time
by kernel class (gemm, attention, elementwise, optimizer, copies...); and the longest idle gaps with the work on
either side. One line each, prefixed NSYS.
"""
import argparse
import re
import sqlite3
import statistics
from collections import defaultdict


def merge(intervals):
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([s, e])
    return out


def length(merged):
    return sum(e - s for s, e in merged)


def intersect(a, b):
    i = j = 0
    total = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            total += e - s
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


CLASSES = [  # first match wins; names are the kernels' short names, lowercased
    ("nccl", re.compile(r"nccl")),
    ("attention", re.compile(r"flash|fmha|attention|attn|sdpa|cudnn")),
    ("gemm", re.compile(r"gemm|cutlass|xmma|nvjet|cublas|matmul|sm90_|sm80_")),
    ("optimizer", re.compile(r"adam|lamb|multi_tensor|foreach|fused_.*opt|zt_opt")),
    ("norm", re.compile(r"norm")),
    ("reduce", re.compile(r"reduce")),
    ("copy", re.compile(r"copy|cat|index|gather|scatter")),
    ("elementwise", re.compile(r"elementwise|vectorized|unrolled")),
]


def classify(name):
    low = name.lower()
    for cls, pat in CLASSES:
        if pat.search(low):
            return cls
    return "other"


def columns(db, table):
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sqlite")
    ap.add_argument("--label", default="")
    ap.add_argument("--range", default="anchor_step", help="NVTX range that marks one step")
    ap.add_argument("--gaps", type=int, default=6, help="longest idle gaps to print per GPU")
    a = ap.parse_args()
    db = sqlite3.connect(a.sqlite)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    strings = dict(db.execute("SELECT id, value FROM StringIds")) if "StringIds" in tables else {}
    label = f"{a.label} " if a.label else ""

    # Steps: NVTX push/pop ranges named --range, per process (globalTid >> 24 is the process).
    ncols = columns(db, "NVTX_EVENTS") if "NVTX_EVENTS" in tables else set()
    steps = defaultdict(list)
    if ncols:
        text_expr = "text" + (", textId" if "textId" in ncols else ", NULL")
        for start, end, text, text_id, tid in db.execute(
                f"SELECT start, end, {text_expr}, globalTid FROM NVTX_EVENTS WHERE end IS NOT NULL"):
            name = text if text is not None else strings.get(text_id, "")
            if name == a.range:
                steps[tid >> 24].append((start, end))
    if not steps:
        print(f"NSYS {label}no NVTX range '{a.range}' in {a.sqlite}")
        return 1

    # GPU work per process: (start, end, name, is_nccl)
    work = defaultdict(list)
    device_of = {}
    kcols = columns(db, "CUPTI_ACTIVITY_KIND_KERNEL")
    name_col = "shortName" if "shortName" in kcols else "demangledName"
    for start, end, dev, pid, nid in db.execute(
            f"SELECT start, end, deviceId, globalPid, {name_col} FROM CUPTI_ACTIVITY_KIND_KERNEL"):
        name = strings.get(nid, str(nid))
        work[pid >> 24].append((start, end, name))
        device_of[pid >> 24] = dev
    for table, what in (("CUPTI_ACTIVITY_KIND_MEMCPY", "memcpy"), ("CUPTI_ACTIVITY_KIND_MEMSET", "memset")):
        if table in tables:
            for start, end, pid in db.execute(f"SELECT start, end, globalPid FROM {table}"):
                work[pid >> 24].append((start, end, what))

    for proc in sorted(steps, key=lambda p: device_of.get(p, 99)):
        items = sorted(work.get(proc, []))
        rows = defaultdict(list)
        gaps = []
        for s0, e0 in steps[proc]:
            inside = [(max(s, s0), min(e, e0), n) for s, e, n in items if s < e0 and e > s0]
            comp = merge([(s, e) for s, e, n in inside if classify(n) != "nccl"])
            comm = merge([(s, e) for s, e, n in inside if classify(n) == "nccl"])
            allw = merge([(s, e) for s, e, _ in inside])
            span = e0 - s0
            ov = intersect(comp, comm)
            rows["step_ms"].append(span / 1e6)
            rows["compute_busy_ms"].append(length(comp) / 1e6)
            rows["nccl_busy_ms"].append(length(comm) / 1e6)
            rows["nccl_overlapped_ms"].append(ov / 1e6)
            rows["nccl_exposed_ms"].append((length(comm) - ov) / 1e6)
            rows["idle_ms"].append((span - length(allw)) / 1e6)
            by_class = defaultdict(int)
            for s, e, n in inside:
                by_class[classify(n)] += e - s
            for cls, t in by_class.items():
                rows["class_" + cls].append(t / 1e6)
            # idle gaps between consecutive busy intervals (not the step's edges: the loop's own sync and data)
            for (s1, e1), (s2, e2) in zip(allw, allw[1:]):
                if s2 - e1 > 20_000:
                    before = max((w for w in inside if w[1] <= e1 + 1), key=lambda w: w[1], default=(0, 0, "?"))
                    after = min((w for w in inside if w[0] >= s2 - 1), key=lambda w: w[0], default=(0, 0, "?"))
                    gaps.append(((s2 - e1) / 1e3, before[2][:40], after[2][:40]))
        med = {k: statistics.median(v) for k, v in rows.items()}
        n = len(steps[proc])
        step = med["step_ms"]
        print(f"NSYS {label}gpu {device_of.get(proc, '?')} ({n} steps, medians): step {step:.2f} ms, "
              f"compute busy {med['compute_busy_ms']:.2f} ({med['compute_busy_ms'] / step:.1%}), "
              f"nccl busy {med['nccl_busy_ms']:.2f}, overlapped {med['nccl_overlapped_ms']:.2f}, "
              f"exposed {med['nccl_exposed_ms']:.2f} ({med['nccl_exposed_ms'] / step:.1%}), "
              f"idle {med['idle_ms']:.2f} ({med['idle_ms'] / step:.1%})")
        classes = sorted(((k[6:], v) for k, v in med.items() if k.startswith("class_")), key=lambda kv: -kv[1])
        print(f"NSYS {label}gpu {device_of.get(proc, '?')} kernel time by class (ms): "
              + ", ".join(f"{k} {v:.2f}" for k, v in classes))
        gaps.sort(reverse=True)
        if gaps:
            total = sum(g[0] for g in gaps) / 1e3 / n
            print(f"NSYS {label}gpu {device_of.get(proc, '?')} idle gaps > 20 us: {len(gaps) / n:.0f} per step, "
                  f"{total:.2f} ms per step; longest: "
                  + "; ".join(f"{g:.0f} us after {b} before {c}" for g, b, c in gaps[:a.gaps]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a training step's GPU time goes, from PyTorch profiler (Kineto) traces: one Chrome-trace JSON per rank.

  ANCHOR_TRACE=/tmp/tr ANCHOR_PROFILE_STEPS=3 torchrun ... bench/peers/train_anchor.py ...   (writes /tmp/tr_rankR.json)
  python bench/gpu/trace_step.py /tmp/tr_rank*.json [--label NAME]

Per rank (one GPU each) and range "anchor_step" (one per step), kernels, copies and sets are clipped to the range and
split into compute (everything not NCCL) and communication (NCCL kernels). Prints, per GPU, the median step of: its
length; compute busy (union of compute work); NCCL busy; NCCL overlapped with compute; exposed NCCL (NCCL running
while no compute runs); idle (nothing on the GPU: the host or a dependency is the pace); the busy time by kernel
class (gemm, attention, elementwise, optimizer, copies...); and the longest idle gaps with the work on either side.
One line each, prefixed TRACE. (The GPU machines have no Nsight Systems; the profiler ships with torch.)
"""
import argparse
import re
import json
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
    ("optimizer", re.compile(r"adam|lamb(?!da)|lion|adagrad|sgd_kernel|multi_tensor|foreach")),
    ("norm", re.compile(r"norm")),
    ("reduce", re.compile(r"reduce")),
    ("copy", re.compile(r"copy|memcpy|memset|cat|index|gather|scatter")),
    ("elementwise", re.compile(r"elementwise|vectorized|unrolled")),
]


def short(name):
    """A kernel's name without the namespaces and template arguments that make every ATen kernel look alike."""
    for noise in ("void ", "at::native::", "(anonymous namespace)::", "zerotrain::detail::", "cutlass::"):
        name = name.replace(noise, "")
    return name[:70]


def classify(name):
    low = name.lower()
    for cls, pat in CLASSES:
        if pat.search(low):
            return cls
    return "other"


def load(path, step_range):
    """(steps, work, device): the step windows (us) and the GPU work (start, end, name) of one rank's trace."""
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    steps, work, device = [], [], None
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        cat = e.get("cat", "")
        start, end = float(e["ts"]), float(e["ts"]) + float(e["dur"])
        if cat == "user_annotation" and e.get("name") == step_range:
            steps.append((start, end))
        elif cat in ("kernel", "gpu_memcpy", "gpu_memset"):
            work.append((start, end, e.get("name", cat) if cat == "kernel" else cat[4:]))
            device = e.get("args", {}).get("device", device)
    return sorted(steps), sorted(work), device


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("traces", nargs="+", help="Chrome-trace JSON files, one per rank")
    ap.add_argument("--label", default="")
    ap.add_argument("--range", default="anchor_step", help="profiler range that marks one step")
    ap.add_argument("--gaps", type=int, default=6, help="longest idle gaps to print per GPU")
    ap.add_argument("--top", type=int, default=12, help="kernels with the most time to print per GPU")
    a = ap.parse_args()
    label = f"{a.label} " if a.label else ""
    for path in a.traces:
        steps, items, device = load(path, a.range)
        if not steps:
            print(f"TRACE {label}no range '{a.range}' in {path}")
            return 1
        rows = defaultdict(list)
        gaps = []
        by_name = defaultdict(float)  # total over the steps
        for s0, e0 in steps:
            inside = [(max(s, s0), min(e, e0), n) for s, e, n in items if s < e0 and e > s0]
            comp = merge([(s, e) for s, e, n in inside if classify(n) != "nccl"])
            comm = merge([(s, e) for s, e, n in inside if classify(n) == "nccl"])
            allw = merge([(s, e) for s, e, _ in inside])
            span = e0 - s0
            ov = intersect(comp, comm)
            rows["step_ms"].append(span / 1e3)
            rows["compute_busy_ms"].append(length(comp) / 1e3)
            rows["nccl_busy_ms"].append(length(comm) / 1e3)
            rows["nccl_overlapped_ms"].append(ov / 1e3)
            rows["nccl_exposed_ms"].append((length(comm) - ov) / 1e3)
            rows["idle_ms"].append((span - length(allw)) / 1e3)
            by_class = defaultdict(float)
            for s, e, n in inside:
                by_class[classify(n)] += e - s
                by_name[n] += e - s
            for cls, t in by_class.items():
                rows["class_" + cls].append(t / 1e3)
            # idle gaps between consecutive busy intervals (not the step's edges: the loop's own sync and data)
            for (s1, e1), (s2, e2) in zip(allw, allw[1:]):
                if s2 - e1 > 20:
                    before = max((w for w in inside if w[1] <= e1 + 0.01), key=lambda w: w[1], default=(0, 0, "?"))
                    after = min((w for w in inside if w[0] >= s2 - 0.01), key=lambda w: w[0], default=(0, 0, "?"))
                    gaps.append((s2 - e1, short(before[2])[:40], short(after[2])[:40]))
        med = {k: statistics.median(v) for k, v in rows.items()}
        n = len(steps)
        step = med["step_ms"]
        gpu = device if device is not None else path
        print(f"TRACE {label}gpu {gpu} ({n} steps, medians): step {step:.2f} ms, "
              f"compute busy {med['compute_busy_ms']:.2f} ({med['compute_busy_ms'] / step:.1%}), "
              f"nccl busy {med['nccl_busy_ms']:.2f}, overlapped {med['nccl_overlapped_ms']:.2f}, "
              f"exposed {med['nccl_exposed_ms']:.2f} ({med['nccl_exposed_ms'] / step:.1%}), "
              f"idle {med['idle_ms']:.2f} ({med['idle_ms'] / step:.1%})")
        classes = sorted(((k[6:], v) for k, v in med.items() if k.startswith("class_")), key=lambda kv: -kv[1])
        print(f"TRACE {label}gpu {gpu} kernel time by class (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in classes))
        top = sorted(by_name.items(), key=lambda kv: -kv[1])[:a.top]
        print(f"TRACE {label}gpu {gpu} top kernels (ms per step, class): " + "; ".join(
            f"{short(k)} {v / 1e3 / n:.2f} ({classify(k)})" for k, v in top))
        gaps.sort(reverse=True)
        if gaps:
            total = sum(g[0] for g in gaps) / 1e3 / n
            print(f"TRACE {label}gpu {gpu} idle gaps > 20 us: {len(gaps) / n:.0f} per step, {total:.2f} ms per step; "
                  "longest: " + "; ".join(f"{g:.0f} us after {b} before {c}" for g, b, c in gaps[:a.gaps]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

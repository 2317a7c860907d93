#!/usr/bin/env python3
"""The table of bench/run_mpi_comparison.sh, from the kolo_bench JSON files it
wrote: per binding, collective and size, the median iteration time (µs) of
kolo and of every baseline — median over the rounds, spread min–max — and
kolo's speed against the fastest baseline (baseline time / kolo time, so
above 1 means kolo is faster). Forms compared: allreduce out of place and in
place (Gloo reduces in place only), broadcast in place (kolo's only form),
the others out of place. Exits 1 when any measured element was wrong or a
run failed, 2 when the directory holds no runs.

    bench/mpi_comparison_report.py OUT_DIR
"""
import collections
import json
import pathlib
import re
import statistics
import sys

NAME = re.compile(r"^(ompi|mpich)-(none|core)-r(\d+)-(allreduce|others)$")
TUNED = re.compile(r"^tuned-(none|core)-(\w+)-(\d+)$")
ALGORITHMS = {
    "allreduce": ["", "basic_linear", "nonoverlapping", "recursive_doubling",
                  "ring", "segmented_ring", "rabenseifner"],
    "allgather": ["", "linear", "bruck", "recursive_doubling", "ring",
                  "neighbor", "two_proc"],
    "broadcast": ["", "basic_linear", "chain", "pipeline", "split_binary_tree",
                  "binary_tree", "binomial", "knomial", "scatter_allgather",
                  "scatter_allgather_ring"],
    "reducescatter": ["", "basic_linear", "recursive_doubling",
                      "recursive_halving", "butterfly"],
    "alltoall": ["", "linear", "pairwise", "modified_bruck", "linear_sync",
                 "two_proc"],
}
ORDER = ["allreduce", "allgather", "broadcast", "reducescatter", "alltoall"]


def forms(collective):
    if collective == "allreduce":
        return ["out_of_place", "in_place"]
    if collective == "broadcast":
        return ["in_place"]
    return ["out_of_place"]


def human(size):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or size % 1024:
            return f"{size} {unit}"
        size //= 1024
    return f"{size} TiB"


def fmt_us(value):
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def main():
    out = pathlib.Path(sys.argv[1])
    # samples[(bind, impl, collective, size, form)] = [median_us per round]
    samples = collections.defaultdict(list)
    # tuned[(bind, collective, size, form)] = [(median_us, algorithm)]
    tuned = collections.defaultdict(list)
    problems = []
    runs = 0
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        runs += 1
        if data.get("wrong_total", 0) or data.get("failed_operations", 0):
            problems.append(f"{path.name}: {data.get('wrong_total')} wrong "
                            f"elements, {data.get('failed_operations')} failed "
                            "operations")
        named = NAME.match(path.stem)
        tuned_name = TUNED.match(path.stem)
        for row in data["rows"]:
            for form in forms(row["collective"]):
                m = row.get(form)
                if not m or m.get("median_us") is None:
                    continue
                if m.get("error"):
                    problems.append(f"{path.name}: {row['label']} "
                                    f"{row['size_bytes']} B: {m['error']}")
                    continue
                key = (row["collective"], row["size_bytes"], form)
                if named:
                    lib, bind = named.group(1), named.group(2)
                    impl = row["implementation"]
                    if impl == "mpi":
                        impl = "Open MPI" if lib == "ompi" else "MPICH"
                    samples[(bind,) + (impl,) + key].append(m["median_us"])
                elif tuned_name:
                    bind, collective, algorithm = tuned_name.groups()
                    name = ALGORITHMS[collective][int(algorithm)]
                    tuned[(bind,) + key].append((m["median_us"], name))
    if runs == 0:
        print(f"mpi_comparison_report: no kolo_bench JSON in {out}",
              file=sys.stderr)
        return 2

    binds = sorted({k[0] for k in samples}, key=["none", "core"].index)
    verdicts = []
    for bind in binds:
        print(f"\n#### np 2, one host, `--bind-to {bind}` (µs, median over "
              "rounds (min–max); speed = fastest baseline's time / kolo's)\n")
        print("| collective | size | form | kolo | Open MPI default | "
              "Open MPI tuned (best algorithm) | MPICH | Gloo | kolo speed "
              "vs fastest |")
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        keys = sorted({k[2:] for k in samples if k[0] == bind and k[1] == "kolo"},
                      key=lambda k: (ORDER.index(k[0]), k[1], k[2] != "out_of_place"))
        for collective, size, form in keys:
            def cell(impl):
                values = samples.get((bind, impl, collective, size, form))
                if not values:
                    return None, "–"
                med = statistics.median(values)
                text = fmt_us(med)
                if len(values) > 1:
                    text += f" ({fmt_us(min(values))}–{fmt_us(max(values))})"
                return med, text
            kolo, kolo_text = cell("kolo")
            ompi, ompi_text = cell("Open MPI")
            mpich, mpich_text = cell("MPICH")
            gloo, gloo_text = cell("gloo")
            best_tuned = min(tuned.get((bind, collective, size, form), []),
                             default=None)
            tuned_text = "–"
            if best_tuned:
                tuned_text = f"{fmt_us(best_tuned[0])} ({best_tuned[1]})"
            baselines = [b for b in (ompi, best_tuned and best_tuned[0], mpich,
                                     gloo) if b]
            speed = min(baselines) / kolo if baselines and kolo else None
            speed_text = f"{speed:.2f}x" if speed else "–"
            if speed:
                verdicts.append((bind, collective, size, form, speed))
            print(f"| {collective} | {human(size)} | "
                  f"{form.replace('_', ' ')} | {kolo_text} | {ompi_text} | "
                  f"{tuned_text} | {mpich_text} | {gloo_text} | {speed_text} |")

    print("\n#### Issue 13's targets\n")
    def judge(label, selected, goal):
        if not selected:
            print(f"- {label}: not measured")
            return
        worst = min(selected, key=lambda v: v[4])
        verdict = "met" if worst[4] >= goal else "MISSED"
        misses = [v for v in selected if v[4] < goal]
        where = ", ".join(f"{v[1]} {human(v[2])} {v[3].replace('_', ' ')} "
                          f"--bind-to {v[0]} {v[4]:.2f}x" for v in misses)
        print(f"- {label} ≥ {goal}x: lowest {worst[4]:.2f}x "
              f"({worst[1]} {human(worst[2])}, --bind-to {worst[0]}): "
              f"**{verdict}**" + (f"; below the goal: {where}" if misses else ""))
    judge("allreduce, 4 KiB – 256 MiB, against the fastest baseline",
          [v for v in verdicts if v[1] == "allreduce"], 1.0)
    judge("allreduce, 64 MiB and above",
          [v for v in verdicts if v[1] == "allreduce" and v[2] >= 64 << 20], 1.5)
    judge("allgather, broadcast, reducescatter, alltoall, 64 KiB – 64 MiB",
          [v for v in verdicts if v[1] != "allreduce"
           and 64 << 10 <= v[2] <= 64 << 20], 1.0)
    if problems:
        print("\nProblems:")
        for p in problems:
            print(f"- {p}")
        return 1
    print("\nEvery result matched the reference (#wrong 0 in every run).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

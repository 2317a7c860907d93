"""Summarizes bench/cluster/run_cluster_bench.sh: results.md (a markdown
table of every configuration, the communication share of its step, kolo
against DDP row by row, the scaling from 1 rank) and summary.json.

Usage: summarize.py OUT ROUNDS SLOW FAST KEY...  (KEY = config@profile-ranks)
"""

import json
import statistics
import sys


def main(argv):
    out, rounds, slow, fast, keys = (argv[1], int(argv[2]), argv[3], argv[4],
                                     argv[5:])
    runs = {}
    for key in dict.fromkeys(keys):
        runs[key] = [json.load(open(f"{out}/round{r}/{key}.json"))
                     for r in range(1, rounds + 1)]
    ips = {k: statistics.median(j["images_per_s"] for j in v)
           for k, v in runs.items()}
    step = {k: statistics.median(j["step_s"]["median"] for j in v)
            for k, v in runs.items()}

    def parse(key):
        config, rest = key.split("@")
        profile, ranks = rest.rsplit("-", 1)
        return config, profile, int(ranks)

    def ceiling(key):
        config, _, ranks = parse(key)
        impl = "kolo" if config.startswith("kolo") else "ddp"
        return f"{impl}_alone@none-{ranks}"

    def share(key):
        base = ceiling(key)
        if base not in step or key == base:
            return None
        return max(0.0, 1.0 - step[base] / step[key])

    def rival(key):
        config, profile, ranks = parse(key)
        if (not config.startswith("kolo") or config.endswith("_alone")
                or config.startswith("kolo_overlap")):
            return None
        if config.endswith("_uif"):
            config = config[:-len("_uif")]
        other = "ddp" + config[len("kolo"):]
        return f"{other}@{profile}-{ranks}"

    rate = {"slow": slow, "fast": fast, "none": "no traffic"}
    names = {
        "kolo": "kolo (kolorun, automatic plane)",
        "ddp": "PyTorch DDP (Gloo)",
        "kolo_fp16": "kolo, fp16 gradient compression",
        "ddp_fp16": "DDP, fp16_compress_hook",
        "kolo_2ph": "kolo, 2 ranks per host (hierarchical)",
        "ddp_2ph": "DDP, 2 ranks per host",
        "kolo_uif": "kolo, updates in the forward pass",
        "kolo_fp16_uif": "kolo, fp16 + updates in the forward pass",
        "kolo_2ph_uif": "kolo, 2 ranks per host + updates in the forward pass",
        "kolo_overlap_off": "kolo, DistributedOptimizer overlap off",
        "kolo_overlap_auto": "kolo, DistributedOptimizer overlap auto",
        "kolo_alone": "kolo: independent 1-rank jobs (ceiling)",
        "ddp_alone": "DDP: independent 1-rank jobs (ceiling)",
    }
    first = next(iter(runs.values()))[0]
    lines = [
        f"DenseNet-121, {first['image_size']} px, batch {first['batch_size']}"
        f" per rank, 1 thread per rank, SGD (momentum 0.9), synthetic input, "
        f"{first['warmup_steps']} warm-up + {first['steps']} timed steps, "
        f"tcmalloc on both sides; median of {rounds} round(s) (spread: "
        f"min-max over rounds). Links: slow = {slow}, fast = {fast} per "
        f"direction per host (tbf).",
        "",
        "| configuration | link | ranks | images/s | per round | step (s) "
        "| communication share | kolo / DDP |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    ratios = {}
    for key in runs:
        config, profile, ranks = parse(key)
        s = share(key)
        r = rival(key)
        ratio = ips[key] / ips[r] if r in ips else None
        if ratio is not None:
            ratios[key] = ratio
        lines.append(
            f"| {names.get(config, config)} | {rate[profile]} | {ranks} | "
            f"{ips[key]:.2f} | "
            f"{', '.join('%.2f' % j['images_per_s'] for j in runs[key])} | "
            f"{step[key]:.3f} | "
            f"{'-' if s is None else '%.0f %%' % (100 * s)} | "
            f"{'-' if ratio is None else '%.2fx' % ratio} |")
    lines += ["", "Scaling (images/s; efficiency = images/s / (ranks x the "
              "1-rank figure)):", "",
              "| implementation | link | 1 | 2 | 4 |", "|---|---|---:|---:|---:|"]
    for impl in ("kolo", "ddp"):
        one = ips.get(f"{impl}_alone@none-1")
        for profile in ("slow", "fast"):
            cells = []
            for n in (1, 2, 4):
                key = (f"{impl}_alone@none-1" if n == 1
                       else f"{impl}@{profile}-{n}")
                if key not in ips:
                    cells.append("-")
                elif one and n > 1:
                    cells.append(f"{ips[key]:.1f} ({ips[key] / (n * one):.2f})")
                else:
                    cells.append(f"{ips[key]:.1f}")
            lines.append(f"| {impl} | {rate[profile]} | " + " | ".join(cells) + " |")
    targets = []
    for key, ratio in ratios.items():
        config, profile, ranks = parse(key)
        need = 1.25 if (config in ("kolo", "kolo_uif") and profile == "slow"
                        and ranks == 4) else 1.0
        targets.append(
            f"| {key} / {rival(key)} | {ratio:.2f}x | >= {need:.2f}x | "
            f"{'PASS' if ratio >= need else 'MISS'} |")
    for key in runs:
        config, profile, ranks = parse(key)
        if config != "kolo_overlap_auto":
            continue
        on, off = f"kolo@{profile}-{ranks}", f"kolo_overlap_off@{profile}-{ranks}"
        if on in ips and off in ips:
            best = max(ips[on], ips[off])
            targets.append(
                f"| overlap auto / best of on ({ips[on]:.2f}) and off "
                f"({ips[off]:.2f}), {ranks} ranks | {ips[key] / best:.2f}x | "
                f">= 0.97x | {'PASS' if ips[key] >= 0.97 * best else 'MISS'} |")
    if targets:
        lines += ["", "| target | measured | needs | verdict |",
                  "|---|---:|---:|---|"] + targets
    text = "\n".join(lines) + "\n"
    print(text)
    with open(f"{out}/results.md", "w") as f:
        f.write(text)
    with open(f"{out}/summary.json", "w") as f:
        json.dump({"images_per_s": ips, "step_s": step,
                   "communication_share": {k: share(k) for k in runs},
                   "kolo_over_ddp": ratios, "slow": slow, "fast": fast,
                   "rounds": rounds}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv)

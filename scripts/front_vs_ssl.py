"""Does the view-quality front predict SSL accuracy? Matches the demo's runs to the candidates of a
view-quality report by their policy, and writes a JSON and a chart of linear-probe accuracy (all
labels and the few-label probe) against each policy's label consistency and pixel change, with
the rank correlation (Spearman) of each pair.

    python scripts/front_vs_ssl.py --demo runs/demo_policies_1seed/demo_report.json \\
        --demo runs/demo_real_3seeds/demo_report.json --view-quality docs/view_quality_fashion.json \\
        --out docs/front_vs_ssl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlvgm_data._io import atomic_writer, write_text
from mlvgm_data.mi.quality_report import DEFAULT_MIN_CONSISTENCY


def _value(x: object) -> float:
    return float(x["value"]) if isinstance(x, dict) else float(x)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (``None`` for fewer than 3 points or a constant side)."""
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if not sxx or not syy else sxy / (sxx * syy) ** 0.5


def matched_points(demos: list[dict], report: dict) -> list[dict]:
    """One point per (demo run, report candidate) pair with the same policy, for the runs on prior
    anchors with the demo's own augmentation (the generated, baseline and extra-policy runs: the
    real-anchored runs' views and the crop + flip recipe's augmentation are not what the report
    measured)."""
    candidates = {json.dumps(c["policy"], sort_keys=True): (name, c) for name, c in report["policies"].items()}
    number = {name: i for i, name in enumerate(report.get("order") or report["policies"], 1)}  # the report's #
    points = []
    for demo in demos:
        for run, policy in demo["policies"].items():
            if run not in demo["runs"] or not (run in ("generated", "baseline_policy") or run.startswith("policy:")):
                continue
            found = candidates.get(json.dumps(policy, sort_keys=True))
            if found is None:
                continue
            name, c = found
            r = demo["runs"][run]
            points.append({"run": run, "candidate": name, "number": number[name], "probe_accuracy": r["probe_accuracy"],
                           "probe_sd": r.get("probe_sd"), "few_label_accuracy": r.get("few_label_accuracy"),
                           "seeds": len(r["probe_accuracy_seeds"]),
                           "consistency": _value(c["consistency"]), "pixel_change": _value(c["pixel_change"]),
                           "on_front": name in report["front"]})
    best: dict[str, dict] = {}  # a candidate trained by several demos counts once: its run with the most seeds
    for point in points:
        if point["candidate"] not in best or point["seeds"] > best[point["candidate"]]["seeds"]:
            best[point["candidate"]] = point
    return sorted(best.values(), key=lambda pt: -pt["consistency"])


def correlations(points: list[dict], floor: float | None = None) -> dict[str, float | None]:
    """Spearman's correlation of each accuracy with each axis, over the points whose consistency is
    at least ``floor`` (all of them by default)."""
    out = {}
    kept = [p for p in points if floor is None or p["consistency"] >= floor]
    for acc in ("probe_accuracy", "few_label_accuracy"):
        usable = [p for p in kept if p[acc] is not None]
        for axis in ("consistency", "pixel_change"):
            out[f"{acc} vs {axis}"] = spearman([p[axis] for p in usable], [p[acc] for p in usable])
    return out


def plot(points: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"right": 0.7})
    for ax, axis in zip(axes, ("consistency", "pixel_change")):
        for acc, marker in (("probe_accuracy", "o"), ("few_label_accuracy", "s")):
            pts = [p for p in points if p[acc] is not None]
            sds = [(p.get("probe_sd") or 0.0) * 100 if acc == "probe_accuracy" else 0.0 for p in pts]
            ax.errorbar([p[axis] for p in pts], [p[acc] * 100 for p in pts], yerr=sds, fmt=marker, capsize=2,
                        label="all labels (± sd over seeds)" if acc == "probe_accuracy" else "60 per class")
            for p in pts:  # the report's numbers: the legend on the right names them
                ax.annotate(str(p["number"]), (p[axis], p[acc] * 100), textcoords="offset points", xytext=(3, 3),
                            fontsize=7)
        ax.set_xlabel("label consistency (judge)" if axis == "consistency" else "RMS pixel change")
        ax.set_ylabel("linear probe accuracy %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left" if axis == "consistency" else "center right")
    legend = "\n".join(f"{p['number']:>2}  {p['candidate'][:44]}  ({p['seeds']} seed{'s' * (p['seeds'] > 1)})"
                       for p in sorted(points, key=lambda q: q["number"]))
    fig.text(0.715, 0.88, legend, va="top", ha="left", fontsize=7, family="monospace")
    fig.suptitle("SSL accuracy of the demo's runs against the view-quality report of their policy")
    with atomic_writer(path, "chart") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", action="append", required=True, help="a demo_report.json (repeat for several)")
    p.add_argument("--view-quality", required=True, help="the view-quality report (mlvgm-data mi --judge --json)")
    p.add_argument("--out", required=True, help="writes OUT.json and OUT.png")
    args = p.parse_args(argv)
    demos = [json.loads(Path(d).read_text()) for d in args.demo]
    report = json.loads(Path(args.view_quality).read_text())
    points = matched_points(demos, report)
    floor = report.get("settings", {}).get("min_consistency") or DEFAULT_MIN_CONSISTENCY
    result = {"points": points, "spearman": correlations(points), "floor": floor,
              "spearman_above_floor": correlations(points, floor), "view_quality": args.view_quality,
              "demos": args.demo}
    write_text(Path(args.out + ".json"), json.dumps(result, indent=2) + "\n", "--out")
    if points:
        result["plot"] = str(plot(points, Path(args.out + ".png")))
    for pt in points:
        print(f"{pt['candidate'][:50]:50s} consistency {pt['consistency']:.3f} change {pt['pixel_change']:.3f} "
              f"probe {pt['probe_accuracy'] * 100:.1f} ({pt['seeds']} seeds)")
    for k, v in result["spearman"].items():
        above = result["spearman_above_floor"][k]
        print(f"Spearman {k}: {'—' if v is None else f'{v:+.2f}'} (consistency ≥ {floor}: "
              f"{'—' if above is None else f'{above:+.2f}'})")
    return result


if __name__ == "__main__":
    main()

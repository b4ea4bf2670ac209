"""The demo's report: per-run figures over seeds, the README's table, the markdown report and the
probe-accuracy curves."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..._io import atomic_writer
from .config import CURVES, FASHION_REFERENCES, LABELS, POLICY_RUN, DemoConfig, RunResult, label
from .sources import DemoData


def summarise(per_seed: list[dict[str, Any]], curves: list[list[tuple[int, float]]]) -> RunResult:
    """A run's figures: the mean over seeds (and the probe's sd), every seed's kept."""
    def mean(key: str) -> float | None:
        values = [r[key] for r in per_seed if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    accs = [r["probe_accuracy"] for r in per_seed]
    steps = [step for step, _ in curves[0]] if curves else []
    curve = [(step, statistics.fmean(c[i][1] for c in curves)) for i, step in enumerate(steps)]
    seeds = {key: [r.get(key) for r in per_seed] for key in ("probe_accuracy", "knn_accuracy", "few_label_accuracy")}
    return RunResult(mean("probe_accuracy"), statistics.stdev(accs) if len(accs) > 1 else None,
                     mean("knn_accuracy"), mean("few_label_accuracy"), mean("pairs_per_s"), mean("train_seconds"),
                     mean("final_loss"), seeds, curve)


def markdown_table(runs: dict[str, RunResult], cfg: DemoConfig) -> str:
    """The README's table: probe and k-NN accuracy (mean ± sd over seeds) and training speed."""
    def pct(value: float | None, sd: float | None = None) -> str:
        if value is None:
            return "—"
        return f"{value * 100:.1f}" + ("" if sd is None else f" ± {sd * 100:.1f}")

    def sd(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.stdev(values) if len(values) > 1 else None

    seeds = f"{cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}"
    few = f"{cfg.few_labels}-per-class probe %"
    lines = [f"| run ({cfg.method}, {cfg.steps} steps of {cfg.batch_size}, {seeds}) | linear probe % | {few} | "
             f"{cfg.knn_k}-NN % | training pairs/s |", "|---|---:|---:|---:|---:|"]
    for key in [k for k in cfg.reported() if k in runs]:
        r = runs[key]
        pps = "—" if r.pairs_per_s is None else f"{r.pairs_per_s:,.0f}"
        name = key[len(POLICY_RUN):] if key.startswith(POLICY_RUN) else None
        note = f" — {cfg.policy_notes[name]}" if name in cfg.policy_notes else ""
        lines.append(f"| {label(key)}{note} | {pct(r.probe_accuracy, r.probe_sd)} | "
                     f"{pct(r.few_label_accuracy, sd(r.seeds['few_label_accuracy']))} | "
                     f"{pct(r.knn_accuracy, sd(r.seeds['knn_accuracy']))} | {pps} |")
    if cfg.data == "fashion-mnist":
        for name, value in FASHION_REFERENCES:
            lines.append(f"| *reference: {name}* | *{value}* | | | |")
    return "\n".join(lines)


def markdown_report(doc: dict, table: str, cfg: DemoConfig, report: Any, data: DemoData) -> str:
    """``demo_report.md``: the setup in a sentence, the table, the MI analysis and the pictures."""
    probe = f"{len(data.probe_train[0]):,} real train / {len(data.probe_test[0]):,} real test images"
    parts = [f"# mlvgm-data demo\n\nGenerator `{doc['generator']}` on {cfg.data}; every run trains the same encoder "
             f"with {cfg.method} for {cfg.steps} steps of {cfg.batch_size} pairs; linear probe and {cfg.knn_k}-NN on "
             f"frozen features of {probe} (chance {100 / data.num_classes:.1f} %). The fixed set (e) has "
             f"{doc['fixed_set_size']:,} anchors.\n\n{table}\n\nRecommended policy: `{json.dumps(doc['policy'])}`\n"]
    if report is not None:
        parts.append(f"\n## MI analysis\n\n{report.to_markdown()}\n\n![MI chart](mi.png)\n")
    parts.append("\n## Views (rows: anchors; column 0: the anchor)\n")
    for key in ("generated", "baseline_policy", "augment_only"):
        parts.append(f"\n{LABELS[key]}:\n\n![views](views_{key}.png)\n")
    if "views_real" in doc["pictures"]:
        parts.append("\nReal images (column 0), their reconstruction (column 1) and generated variants under the "
                     "recommended policy:\n\n![real views](views_real.png)\n")
    if "curves" in doc["pictures"]:
        parts.append("\n## Probe accuracy during training\n\n![curves](curves.png)\n")
    return "".join(parts)


def plot_curves(runs: dict[str, RunResult], path: Path, cfg: DemoConfig, probe: tuple[int, int]) -> Path | None:
    """Probe accuracy against SSL steps for the runs of :data:`CURVES` (``None`` without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in [k for k in CURVES if k in runs]:
        if runs[key].curve:
            steps, accs = zip(*runs[key].curve)
            ax.plot(steps, [a * 100 for a in accs], marker="o", label=LABELS[key])
    for key, style in [(k, s) for k, s in (("random", ":"), ("pixels", "--")) if k in runs]:
        ax.axhline(runs[key].probe_accuracy * 100, color="grey", linestyle=style, label=f"{LABELS[key]} (full probe)")
    ax.set_xlabel("SSL steps")
    ax.set_ylabel(f"linear probe accuracy % ({probe[0]:,} / {probe[1]:,} images)")
    ax.set_title(f"{cfg.data}: {cfg.method}, batch {cfg.batch_size}, mean of {cfg.seeds} seed(s)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_writer(path, "curve plot") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path

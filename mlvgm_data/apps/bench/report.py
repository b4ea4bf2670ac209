"""The bench table as markdown and as a bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def markdown(result: dict[str, Any]) -> str:
    """The side-by-side table, skipped rows, the sweep and the cross-over statements."""
    lines = ["| loader | res | threads | workers | pairs/s (median) | min–max | × PIL baseline |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        ratio = "—" if r.get("ratio_to_pil") is None else f"{r['ratio_to_pil']:.2f}×"
        lines.append(f"| {r['name']} | {r['resolution']}² | {r['threads']} | {r['workers']} | {r['pairs_per_s']:,.0f} "
                     f"| {r['min']:,.0f}–{r['max']:,.0f} | {ratio} |")
    for s in result["skipped"]:
        lines.append(f"\nSkipped: {s['name']} — {s['reason']}.")
    for note in result.get("notes", []):
        lines.append(f"\nNote: {note}.")
    if result["sweep"]:
        first = result["sweep"][0]
        layout = ", channels_last" if first["channels_last"] else ""
        lines += ["", "Decoder-width sweep at 32² (fresh HVAEs of the shipped architecture; "
                      f"pipe with {first['threads']} thread(s){layout}):", "",
                  "| decoder width | decoder params | MFLOP / image | pairs/s (median) | min–max |",
                  "|---:|---:|---:|---:|---:|"]
        for s in result["sweep"]:
            lines.append(f"| ×{s['width_scale']:g} {s['channels']} | {s['params'] / 1e6:.2f} M "
                         f"| {s['decode_mflops']:.0f} | {s['pairs_per_s']:,.0f} | {s['min']:,.0f}–{s['max']:,.0f} |")
        lines += [""] + [f"- {line}" for line in result["crossover"]]
    m = result["machine"]
    lines.append(f"\ntorch {m['torch']}, {m['cpu_count']} cores, load average {m['loadavg']} → {m.get('loadavg_end')}, "
                 f"batch {result['settings']['batch_size']}, {result['settings']['repeats']} rounds of "
                 f"{result['settings']['batches']} batches after {result['settings']['warmup']} warm-up, "
                 f"THP_MEM_ALLOC_ENABLE={m['THP_MEM_ALLOC_ENABLE']}, OMP_WAIT_POLICY={m.get('OMP_WAIT_POLICY')}")
    return "\n".join(lines)


def bar_chart(result: dict[str, Any], path: str | Path) -> Path:
    """One horizontal bar per row and resolution: speed relative to the PIL baseline at that
    resolution (absolute pairs/s when there is no baseline row), min–max whiskers, pairs/s
    written at the bar ends."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the bar chart needs matplotlib: pip install matplotlib (or 'mlvgm-data[bench]')") from None
    rows = result["rows"]
    resolutions = sorted({r["resolution"] for r in rows})
    relative = all(r.get("ratio_to_pil") is not None for r in rows)
    labels: list[tuple] = []
    for r in rows:
        label = (r["name"], r["threads"] if r["workers"] == 0 else None)
        if label not in labels:
            labels.append(label)
    height = 0.8 / len(resolutions)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(labels) * max(1, len(resolutions) / 1.5) + 1.5))
    for k, res in enumerate(resolutions):
        sub = {(r["name"], r["threads"] if r["workers"] == 0 else None): r for r in rows if r["resolution"] == res}
        ys, med, lo, hi, text = [], [], [], [], []
        for i, label in enumerate(labels):
            if label not in sub:
                continue
            r = sub[label]
            scale = r["pairs_per_s"] / r["ratio_to_pil"] if relative else 1.0
            ys.append(len(labels) - 1 - i + (len(resolutions) / 2 - k - 0.5) * height)
            med.append(r["pairs_per_s"] / scale)
            lo.append((r["pairs_per_s"] - r["min"]) / scale)
            hi.append((r["max"] - r["pairs_per_s"]) / scale)
            text.append(f"  {r['pairs_per_s']:,.0f}/s")
        ax.barh(ys, med, height=height, xerr=[lo, hi], color=colours[k % len(colours)], capsize=2, label=f"{res}²")
        for y, m, h, t in zip(ys, med, hi, text):
            ax.text(m + h, y, t, va="center", fontsize=7)
    ax.set_yticks(range(len(labels)), [f"{n} [{t} thr]" if t is not None else n for n, t in labels][::-1], fontsize=8)
    if relative:
        ax.axvline(1.0, color="k", linestyle="--", linewidth=0.8)
        ax.set_xlabel("view pairs/s ÷ PIL baseline at the same resolution (median, min–max)")
    else:
        ax.set_xlabel("view pairs/s (median, min–max)")
    ax.margins(x=0.15)
    ax.legend(loc="lower right", fontsize=8)
    m = result["machine"]
    ax.set_title(f"Two SimCLR views per item — torch {m['torch']}, {m['cpu_count']} cores, load {m['loadavg'][0]}",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""The tables of the README and the manual, rendered from the measured reports in ``docs/*.json``.

A page holds a table between markers::

    <!-- table: demo-headline -->
    | … the rendered table … |
    <!-- /table -->

and this script rewrites what lies between them from the JSON the table is made from, so a figure
is written down once (in the report of the run that measured it) and every page that quotes it
shows the same number. ``tests/test_docs.py`` fails when a page's table differs from what this
script renders. A table whose report does not exist yet renders as a line saying which command
writes it.

    python scripts/docs_tables.py            # rewrite the tables of README.md and docs/**/*.md
    python scripts/docs_tables.py --check    # list the pages whose tables are out of date (exit 1)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout: the package in place
sys.path.insert(0, str(ROOT / "scripts"))

from compare_runs import table as compare_table  # noqa: E402  (the comparison script's own table)

from mlvgm_data._io import write_text  # noqa: E402
from mlvgm_data.apps.bench.report import markdown as bench_markdown  # noqa: E402  (the bench's own table)
from mlvgm_data.apps.demo.config import FASHION_REFERENCES, LABELS, RUNS  # noqa: E402

MARKER = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every page of the manual (``docs/bench.md`` is the bench's raw output, not a page)."""
    return [root / "README.md", *sorted(p for p in (root / "docs").rglob("*.md") if p.name != "bench.md")]


def _report(root: Path, name: str) -> dict[str, Any] | None:
    path = root / "docs" / name
    return json.loads(path.read_text()) if path.is_file() else None


def _missing(name: str, command: str) -> str:
    return (f"*Not measured yet: `{command}` writes `docs/{name}`; `python scripts/docs_tables.py` then fills "
            "this table.*")


def _num(value: float, digits: int = 2) -> str:
    """A number with a real minus sign."""
    return f"{value:.{digits}f}".replace("-", "−")


def _pct(value: float | None, sd: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.1f}" + ("" if sd is None else f" ± {sd * 100:.1f}")


def _sd(values: list | None) -> float | None:
    values = [v for v in values or [] if v is not None]
    return statistics.stdev(values) if len(values) > 1 else None


# --- the demo -------------------------------------------------------------------------------------

def demo_table(doc: dict[str, Any], runs: tuple[str, ...] = RUNS, seeds_column: bool = False,
               speed_column: bool = False, references: bool = False) -> str:
    """One row per run of a demo report (``mlvgm-data demo --json``): linear probe (mean ± sd over
    seeds), the few-label probe when the report has it, 20-NN; optionally the per-seed probes and
    the training pairs/s, and the published reference points."""
    cfg, measured = doc["config"], doc["runs"]
    keys = [k for k in runs if k in measured]
    few = any(measured[k].get("few_label_accuracy") is not None for k in keys)
    n = cfg["seeds"]
    head = [f"run ({cfg['method']}, {cfg['steps']} steps of {cfg['batch_size']} pairs, {n} seed{'s' * (n > 1)})",
            "linear probe %"]
    head += ["seeds " + " / ".join(str(s) for s in range(n))] if seeds_column and n > 1 else []
    head += ["few-label probe %"] if few else []
    head += [f"{cfg.get('knn_k', 20)}-NN %"]
    head += ["training pairs/s"] if speed_column else []
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for key in keys:
        r, seeds = measured[key], measured[key].get("seeds", {})
        cells = [LABELS[key], _pct(r["probe_accuracy"], r.get("probe_sd"))]
        if seeds_column and n > 1:
            per_seed = seeds.get("probe_accuracy") or []
            cells.append(" / ".join(f"{v * 100:.1f}" for v in per_seed) if len(per_seed) > 1 else "")
        if few:
            cells.append(_pct(r.get("few_label_accuracy"), _sd(seeds.get("few_label_accuracy"))))
        cells.append(_pct(r.get("knn_accuracy"), _sd(seeds.get("knn_accuracy"))))
        if speed_column:
            cells.append("—" if r.get("pairs_per_s") is None else f"{r['pairs_per_s']:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if references and doc.get("data") == "fashion-mnist":
        for name, value in FASHION_REFERENCES:
            lines.append("| " + " | ".join([f"*published: {name}*", f"*{value}*"] + [""] * (len(head) - 2)) + " |")
    return "\n".join(lines)


def _demo(name: str, command: str, **kw: Any) -> Callable[[Path], str]:
    def render(root: Path) -> str:
        doc = _report(root, name)
        return _missing(name, command) if doc is None else demo_table(doc, **kw)
    return render


# --- the MI analysis ------------------------------------------------------------------------------

def _estimate(e: dict[str, Any]) -> str:
    text = f"{_num(e['value'])} [{_num(e['low'])}, {_num(e['high'])}]"
    return text + (" ≥ ceiling" if e.get("saturated") else "")


def mi_table(doc: dict[str, Any]) -> str:
    """Per group of an MI report (``mlvgm-data mi --json``), in its ranking: both bounds with their
    intervals, the pixel change, the encoder's figures when measured, and the recommendation."""
    encoder = (doc.get("encoder") or {}).get("groups")
    head = ["group", "dims", "I(z_g; x) nats [95 % CI]", "I(x; x′), g resampled [95 % CI]", "pixel change"]
    head += ["KL", "I_q(x; z_g)", "active units"] if encoder else []
    lines = ["| " + " | ".join(head + ["under-used"]) + " |", "|---|---:|---|---|---:|" + "---:|" * (3 * bool(encoder))
             + ":---:|"]
    for name in doc["ranking"]:
        g = doc["groups"][name]
        cells = [name, str(g["dims"]), _estimate(g["latent_mi"]), _estimate(g["image_mi"]),
                 f"{100 * g['pixel_change']:.0f} %"]
        if encoder:
            e = encoder[name]
            cells += [f"{e['kl']:.1f}", _num(e["mi"]), f"{e['active']} / {e['dims']}"]
        lines.append("| " + " | ".join(cells + ["yes" if g["underused"] else ""]) + " |")
    s, rec = doc["settings"], doc["recommended"]
    ceiling = next(iter(doc["groups"].values()))["image_mi"]["ceiling"]
    lines += ["", f"Recommended: {rec['description']} (views' I(x0; x1) {_estimate(rec['mi'])} nats, nearest the "
                  f"target {_num(rec['target'])}). {s['samples']:,} samples per estimate, {s['steps']} critic steps, "
                  f"seed {s['seed']}, {s['elapsed_s']:.0f} s on {s['device']}; InfoNCE ceiling log B = "
                  f"{_num(ceiling)} nats."]
    return "\n".join(lines)


def _mi(name: str, generator: str) -> Callable[[Path], str]:
    def render(root: Path) -> str:
        doc = _report(root, name)
        return _missing(name, f"mlvgm-data mi {generator} --json docs/{name}") if doc is None else mi_table(doc)
    return render


# --- sample quality, the comparison, the benchmarks, the view-quality report ----------------------

def quality_table(doc: dict[str, Any]) -> str:
    """A generator's sample quality as scored by the shipped classifier (``classifiers.fashion score``)."""
    shares = sorted(doc["class_fractions"].items(), key=lambda kv: kv[1])
    (low_name, low), (high_name, high) = shares[0], shares[-1]
    return "\n".join([
        f"| {doc['generator']}, {doc['n']:,} prior samples | measured |", "|---|---:|",
        f"| mean max-softmax confidence | {doc['mean_confidence']:.3f} |",
        f"| class shares | {100 * low:.1f} % ({low_name}) – {100 * high:.1f} % ({high_name}) |",
        f"| Fréchet distance to the test split | {doc['frechet_distance']:.1f} |",
        f"| floor: the same distance from real train images | {doc['floor']:.2f} |",
        f"| distance / floor | {doc['frechet_vs_floor']:.0f} × |",
    ])


def _quality(root: Path) -> str:
    doc = _report(root, "fashion_quality.json")
    command = "python -m mlvgm_data.apps.classifiers.fashion score builtin:fashion --json docs/fashion_quality.json"
    return _missing("fashion_quality.json", command) if doc is None else quality_table(doc)


def reconstruction_table(doc: dict[str, Any]) -> str:
    """How well a generator's ``invert`` + ``decode`` keeps real images (``classifiers.fashion reconstruct``)."""
    return "\n".join([
        f"| {doc['generator']} on {doc['n']:,} real test images | |", "|---|---:|",
        f"| pixel RMSE of the reconstructions (images in [0, 1]) | {doc['pixel_rmse']:.3f} |",
        f"| pixel MAE of the reconstructions | {doc['pixel_mae']:.3f} |",
        f"| the shipped classifier's accuracy on the real images | {100 * doc['real_accuracy']:.1f} % |",
        f"| … on their reconstructions | {100 * doc['reconstruction_accuracy']:.1f} % |",
        f"| … on their views under the recommended policy | {100 * doc['view_accuracy']:.1f} % |",
        "", f"`{doc['command']}`",
    ])


def _reconstruction(root: Path) -> str:
    doc = _report(root, "fashion_reconstruction.json")
    command = ("python -m mlvgm_data.apps.classifiers.fashion reconstruct builtin:fashion --n 2000 "
               "--policy recommended --json docs/fashion_reconstruction.json")
    return _missing("fashion_reconstruction.json", command) if doc is None else reconstruction_table(doc)


def _compare(root: Path) -> str:
    doc = _report(root, "compare_runs.json")
    if doc is None:
        return _missing("compare_runs.json", "python scripts/compare_runs.py ... --json docs/compare_runs.json")
    return compare_table({name: list(runs.values()) for name, runs in doc.items()})


def _bench(name: str, command: str) -> Callable[[Path], str]:
    def render(root: Path) -> str:
        doc = _report(root, name)
        return _missing(name, command) if doc is None else bench_markdown(doc)
    return render


def _machine(doc: dict[str, Any]) -> str:
    m = doc.get("machine", {})
    load = m.get("loadavg")
    return (f"torch {m.get('torch')}, {m.get('cpu_count')} CPUs, {m.get('torch_threads')} torch thread(s)"
            + (f", load average {load[0]:.1f} when it started" if load else ""))


def _ratio(cell: list[float]) -> str:
    return f"{cell[0]:.2f}× (rounds {cell[1]:.2f}–{cell[2]:.2f})"


def _real_anchors(root: Path) -> str:
    """``benchmarks/real_anchors.py --json``: the three feeds' pairs/s and their ratios to the pipe."""
    name = "bench_real_anchors.json"
    doc = _report(root, name)
    if doc is None:
        return _missing(name, f"python benchmarks/real_anchors.py --json docs/{name}")
    rates, ratios = doc["pairs_per_s"], doc["ratios"]
    what = {"pipe": "prior anchors (the plain pipe)", "real": "real anchors (every image inverted)",
            "mixed": "half prior, half real (prior_fraction=0.5)"}
    lines = ["| feed | pairs/s | ÷ prior-anchored pipe |", "|---|---:|---:|"]
    lines += [f"| {what[k]} | {rates[k]:,.0f} | {_ratio(ratios[k]) if k in ratios else '1'} |" for k in what]
    return "\n".join(lines + ["", f"`{doc['command']}`; {_machine(doc)}."])


def _export(root: Path) -> str:
    """``benchmarks/export.py --json``: pairs/s of the export beside the pipe's, and the ratios."""
    name = "bench_export.json"
    doc = _report(root, name)
    if doc is None:
        return _missing(name, f"python benchmarks/export.py --json docs/{name}")
    lines = ["| feed | pairs/s (median, rounds) |", "|---|---:|"]
    for k, r in doc["pairs_per_s"].items():
        lines.append(f"| {k} | {r['median']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f}) |")
    lines += ["", *(f"- {k}: {_ratio(v)}" for k, v in doc["ratios"].items())]
    return "\n".join(lines + ["", f"{doc['generator']}, batch {doc['batch_size']}, {doc['batches']} batches per call; "
                               f"{_machine(doc)}."])


def _front_vs_ssl(root: Path) -> str:
    """``scripts/front_vs_ssl.py``: each policy's view-quality figures beside its SSL accuracy."""
    name = "front_vs_ssl.json"
    doc = _report(root, name)
    if doc is None:
        return _missing(name, "python scripts/front_vs_ssl.py --demo … --view-quality … --out docs/front_vs_ssl")
    lines = ["| policy | consistency | pixel change | linear probe % | 60-per-class probe % | seeds | front |",
             "|---|---:|---:|---:|---:|---:|:---:|"]
    for pt in doc["points"]:
        lines.append(f"| {pt['candidate']} | {pt['consistency']:.3f} | {pt['pixel_change']:.3f} | "
                     f"{_pct(pt['probe_accuracy'], pt.get('probe_sd'))} | {_pct(pt.get('few_label_accuracy'))} | "
                     f"{pt['seeds']} | {'yes' if pt['on_front'] else ''} |")

    def rho(v: float | None) -> str:
        return "—" if v is None else _num(v)

    lines.append("")
    for key, value in doc["spearman"].items():
        above = doc["spearman_above_floor"][key]
        lines.append(f"- Spearman, {key.replace('_', ' ')}: {rho(value)} over every policy, {rho(above)} over "
                     f"those with consistency ≥ {doc['floor']}")
    return "\n".join(lines)


def _view_quality(name: str, generator: str, judge: str) -> Callable[[Path], str]:
    def render(root: Path) -> str:
        from mlvgm_data.mi import ViewQualityReport  # the report's own table, as the command prints it

        path = root / "docs" / name
        if not path.is_file():
            return _missing(name, f"mlvgm-data mi {generator} --judge {judge} --json docs/{name}")
        return ViewQualityReport.from_json(path).to_markdown()
    return render


DEMO = "mlvgm-data demo --seeds 3 --json docs/demo_fashion_report.json"
TABLES: dict[str, Callable[[Path], str]] = {
    "demo-headline": _demo("demo_fashion_report.json", DEMO, runs=RUNS[:5] + ("random", "pixels"), references=True),
    "demo-seeds": _demo("demo_fashion_report.json", DEMO, seeds_column=True, speed_column=True, references=True),
    "demo-cs480": _demo("demo_fashion_cs480_report.json", "mlvgm-data demo --runs generated,fixed_set --steps 480"),
    "demo-1000": _demo("demo_fashion_1000_report.json",
                       "mlvgm-data demo --runs generated,real,baseline_policy,augment_only --steps 1000"),
    "demo-real": _demo("demo_real_report.json", "mlvgm-data demo --seeds 3 --runs generated,real,real_anchored,"
                       "real_view,mixed,recon_only,random,pixels --json docs/demo_real_report.json",
                       seeds_column=True, speed_column=True, references=True),
    "mi-shapes": _mi("mi_shapes.json", "builtin:shapes"),
    "mi-fashion": _mi("mi_fashion.json", "builtin:fashion"),
    "mi-stylegan": _mi("mi_stylegan.json", "builtin:shapes-stylegan"),
    "fashion-quality": _quality,
    "fashion-reconstruction": _reconstruction,
    "compare-runs": _compare,
    "bench-loaders": _bench("bench.json", "mlvgm-data bench --json docs/bench.json"),
    "bench-fashion": _bench("bench_fashion.json",
                            "mlvgm-data bench --data fashion-mnist --json docs/bench_fashion.json"),
    "front-vs-ssl": _front_vs_ssl,
    "bench-real-anchors": _real_anchors,
    "bench-export": _export,
    "view-quality-fashion": _view_quality("view_quality_fashion.json", "builtin:fashion", "builtin:fashion-classifier"),
    "view-quality-shapes": _view_quality("view_quality_shapes.json", "builtin:shapes", "builtin:shapes-classifier"),
}


def render(text: str, root: Path = ROOT, where: str = "page") -> str:
    """``text`` with every marked table rendered anew; ``ValueError`` for an unknown table name."""
    def one(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"{where}: unknown table {name!r} (known: {', '.join(TABLES)})")
        return f"{match.group(1)}{TABLES[name](root).rstrip()}\n{match.group(4)}"

    return MARKER.sub(one, text)


def stale(root: Path = ROOT) -> list[Path]:
    """The pages whose tables differ from what :func:`render` makes of them."""
    return [p for p in pages(root) if render(p.read_text(), root, str(p)) != p.read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the pages whose tables are out of date")
    args = parser.parse_args(argv)
    out_of_date = stale()
    for page in out_of_date:
        if args.check:
            print(f"out of date: {page.relative_to(ROOT)}")
        else:
            write_text(page, render(page.read_text(), ROOT, str(page)), "page")
            print(f"rewrote the tables of {page.relative_to(ROOT)}")
    return 1 if args.check and out_of_date else 0


if __name__ == "__main__":
    sys.exit(main())

"""Side-by-side table of trainer runs that differ in one option (the Skip-VAE / VMI-VAE comparisons).

    python scripts/compare_runs.py skip=runs/cmp-skip-s0,runs/cmp-skip-s1 \\
        noskip=runs/cmp-noskip-s0,runs/cmp-noskip-s1 --json docs/compare_skip.json

Each run folder holds what ``mlvgm-data train ... --probe --out RUN`` and ``mlvgm-data mi RUN
--encoder-data fashion-mnist --json RUN/mi.json`` wrote. Per variant, over its runs (the seeds),
the table gives mean ± sd (sample sd) of: the held-out ELBO and KL per group (``summary.json``),
the linear-probe accuracy on posterior means, I_q(x; z_g) and the active units (the encoder
metrics of ``mi.json``), the held-out Barber–Agakov bound on I(z_g; x) (the MI analysis), the
mean squared pixel change when g alone is resampled, measured here on ``--pixel-samples`` prior
anchors (an absolute figure, unlike the analysis's relative one), and the sample-quality score
of ``summary.json`` when the run has one.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from mlvgm_data import Resample, ViewPolicy, load_generator
from mlvgm_data._io import write_text
from mlvgm_data.generators.base import decode_views, eval_mode


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run 'mlvgm-data train ... --probe' and 'mlvgm-data mi ... --json' first")
    return json.loads(path.read_text())


def pixel_change(run: Path, samples: int, seed: int) -> dict[str, float]:
    """Mean squared pixel difference per pixel between an anchor and its view with only g resampled."""
    generator = load_generator(run)
    out = {}
    with eval_mode(generator):
        for g in generator.latent_spec:
            images = decode_views(generator, ViewPolicy({g.name: Resample()}), samples, 2, seed=seed, step=0).images
            out[g.name] = float((images[0] - images[1]).pow(2).mean())
    return out


def run_metrics(run: Path, samples: int, seed: int) -> dict[str, float]:
    """One run's figures, flat: ``metric`` or ``metric/group``."""
    summary, mi = read_json(run / "summary.json"), read_json(run / "mi.json")
    if "probe_accuracy" not in summary:
        raise SystemExit(f"{run}: trained without --probe (no probe accuracy in summary.json)")
    if "encoder" not in mi:
        raise SystemExit(f"{run}/mi.json has no encoder metrics: run 'mlvgm-data mi' with --encoder-data")
    m = {"elbo": summary["elbo"], "kl/all": summary["kl_total"]}
    m.update({f"kl/{g}": v for g, v in summary["kl"].items()})
    m.update({f"probe/{g}": 100 * v for g, v in summary["probe_accuracy"].items()})
    if "quality" in summary:  # the Fashion-MNIST classifier's score of the run's prior samples
        q = summary["quality"]
        m.update({"confidence": q["mean_confidence"], "frechet": q["frechet_distance"],
                  "largest_class": 100 * q["max_fraction"]})
    enc = mi["encoder"]
    for g, d in [*enc["groups"].items(), ("all", enc["total"])]:
        m[f"iq/{g}"], m[f"active/{g}"] = d["mi"], d["active"]
    m.update({f"ba/{g}": d["latent_mi"]["value"] for g, d in mi["groups"].items()})
    m.update({f"pixel/{g}": v for g, v in pixel_change(run, samples, seed).items()})
    return m


ROWS = [  # (metric prefix, label, format)
    ("elbo", "held-out ELBO (nats / image)", "{:.1f}"),
    ("kl", "KL {g} (nats)", "{:.2f}"),
    ("iq", "I_q(x; {g}) (nats, at most log n)", "{:.2f}"),
    ("active", "active units {g}", "{:.0f}"),
    ("probe", "linear probe on posterior means of {g} (%)", "{:.2f}"),
    ("ba", "BA bound on I({g}; x) (nats)", "{:.2f}"),
    ("pixel", "pixel MSE when {g} is resampled (×10⁻³)", "{:.3f}"),
    ("confidence", "samples: mean max-softmax confidence", "{:.3f}"),
    ("frechet", "samples: Fréchet distance to the test split", "{:.0f}"),
    ("largest_class", "samples: share of the most frequent class (%)", "{:.1f}"),
]


def cell(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def table(metrics: dict[str, list[dict[str, float]]]) -> str:
    """A markdown table: a row per metric, a column per variant (mean ± sd over its runs)."""
    names = list(metrics)
    seeds = ", ".join(f"{n}: {len(runs)}" for n, runs in metrics.items())
    lines = [f"| measure (runs per variant — {seeds}) | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    keys = list(metrics[names[0]][0])
    for prefix, label, fmt in ROWS:
        for key in [k for k in keys if k == prefix or k.startswith(prefix + "/")]:
            g = key.partition("/")[2] or "all"
            scale = 1000 if prefix == "pixel" else 1
            cols = [cell([scale * r[key] for r in runs if key in r], fmt) if all(key in r for r in runs) else "—"
                    for runs in metrics.values()]
            lines.append(f"| {label.format(g=g)} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, list[Path]]:
    name, sep, runs = text.partition("=")
    if not sep or not name or not runs:
        raise argparse.ArgumentTypeError(f"expected NAME=RUN[,RUN...], got {text!r}")
    return name, [Path(r) for r in runs.split(",")]


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", type=parse_variant, metavar="NAME=RUN[,RUN...]")
    p.add_argument("--pixel-samples", type=int, default=1000, help="anchors for the pixel change (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write every run's figures to this file")
    args = p.parse_args(argv)
    if args.pixel_samples < 1:
        p.error("--pixel-samples must be at least 1")
    metrics = {name: [run_metrics(r, args.pixel_samples, args.seed) for r in runs] for name, runs in args.variants}
    text = table(metrics)
    print(text)
    if args.json is not None:
        doc = {name: {str(r): m for r, m in zip(runs, metrics[name])} for name, runs in args.variants}
        write_text(args.json, json.dumps(doc, indent=2, allow_nan=False) + "\n", "comparison")
    return text


if __name__ == "__main__":
    main()

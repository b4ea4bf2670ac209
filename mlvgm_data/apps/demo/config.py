"""The demo's runs, their labels and every knob (:class:`DemoConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUNS = ("generated", "real", "baseline_policy", "augment_only", "fixed_set", "real_anchored", "real_view", "mixed",
        "recon_only", "crop_flip_recipe", "random", "pixels")
TRAINED = RUNS[:10]
UNTRAINED = ("random", "pixels")
REAL_ANCHORED = ("real_anchored", "real_view", "mixed", "recon_only")
DEFAULT_RUNS = ("generated", "real", "baseline_policy", "real_anchored", "real_view", "random", "pixels")
"""``make demo``'s runs: what fits about 12 minutes on a 2-core CPU (the others with ``--runs``)."""
CURVES = ("generated", "real", "fixed_set", "real_anchored", "real_view")
MIXED_PRIOR_FRACTION = 0.5
BASELINE_SIGMA = 0.2
DATA = ("fashion-mnist", "shapes")
DEFAULT_GENERATOR = {"fashion-mnist": "builtin:fashion", "shapes": "builtin:shapes"}
LABELS = {
    "generated": "(a) generated views, MI-recommended policy, Continuous Sampling",
    "real": "(b) real images",
    "baseline_policy": f"(c) generated views, σ = {BASELINE_SIGMA} on every group",
    "augment_only": "(d) generated views, no latent change (augmentation only)",
    "fixed_set": "(e) generated, recommended policy, fixed anchor set reused every epoch",
    "random": "(f) random encoder (no training)",
    "pixels": "(g) raw pixels",
    "real_anchored": "(h) real images inverted, recommended policy around them",
    "real_view": "(i) the real image paired with its generated variant (recommended policy)",
    "mixed": "(j) half prior, half real anchors, recommended policy",
    "recon_only": "(k) reconstructions of real images, augmentation only (no latent change)",
    "crop_flip_recipe": "(l) generated, recommended policy, crop + flip only (mi_ml_gen's latent-view recipe)",
}
POLICY_RUN = "policy:"
"""Runs of the extra policies (``DemoConfig.policies``) are named ``policy:NAME``."""


def label(run: str) -> str:
    """A run's label in the report (an extra policy's is its name)."""
    return f"(p) {run[len(POLICY_RUN):]}" if run.startswith(POLICY_RUN) else LABELS[run]
# Published and measured reference points on the Fashion-MNIST test set (REFERENCE.md).
FASHION_REFERENCES = (("human", "83.5"), ("logistic regression on the raw pixels (the dataset's benchmark)", "84.2"),
                      ("2-conv nets trained with labels", "87.6–93.4"))


@dataclass
class DemoConfig:
    """Every knob of the demo; the defaults are the README's run."""

    data: str = "fashion-mnist"
    generator: str | None = None  # default: builtin:fashion / builtin:shapes
    out: str = "demo_out"
    method: str = "simclr"
    seeds: int = 1
    steps: int = 200
    batch_size: int = 256
    width: int = 16
    lr: float = 1e-3
    temperature: float = 0.2
    real_train: int | None = None  # real images for SSL (b) and the fixed set (e); None: the whole split
    fixed_set: int | None = None  # anchors of (e); None: as many as real_train
    fixed_set_shards: str | None = None  # (e) trains on an export's view pairs (mlvgm-data export OUT) instead
    probe_train: int | None = None  # real train images for the probes; None: the whole split
    probe_test: int | None = None  # real test images for the probes; None: the whole split
    eval_every: int = 100  # steps between the curve evaluations of (a), (b), (e); 0: none
    curve_probe: int = 10_000  # train and test images of each curve evaluation
    knn_k: int = 20
    probe_iters: int = 200  # L-BFGS iterations of each linear probe
    few_labels: int = 60  # labelled images per class of the few-label probe (0: none)
    mi_budget: float | None = None  # seconds: run the MI analysis afresh (None: the stored policy)
    prefetch: int = 2
    # torch's intra-op threads while training (the training step, the producer thread's decode,
    # the curve evaluations): float reductions split per thread, so results repeat only at a
    # fixed count. One leaves the second core of a 2-core machine to the producer.
    threads: int = 1
    # threads of the final evaluations (embedding, probes, k-NN), which run when no producer
    # does: both cores of a 2-core machine (the evaluations are half of a run's time).
    eval_threads: int = 2
    runs: tuple[str, ...] = DEFAULT_RUNS  # any subset of RUNS, e.g. ("generated", "fixed_set")
    # extra generated runs, name -> ViewPolicy dict (e.g. candidates of a view-quality report), each
    # trained as run "policy:NAME"; ``policy_notes`` says how each was chosen (e.g. with a labelled judge)
    policies: dict[str, dict] = field(default_factory=dict)
    policy_notes: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    progress: bool = True

    def trained(self) -> list[str]:
        """The runs that train an encoder, in order: the chosen ones, then the extra policies'."""
        return [k for k in TRAINED if k in self.runs] + [POLICY_RUN + name for name in self.policies]

    def reported(self) -> list[str]:
        """Every run of the report, in the table's order."""
        return [k for k in RUNS if k in self.runs] + [POLICY_RUN + name for name in self.policies]

    @classmethod
    def quick_config(cls, **overrides: Any) -> "DemoConfig":
        """The ``--quick`` sizes (a smoke run of a minute or two): not a measurement."""
        base = dict(steps=30, batch_size=64, real_train=4_000, probe_train=2_000, probe_test=1_000, eval_every=15,
                    curve_probe=1_000)
        base.update(overrides)
        return cls(**base)

    def check(self) -> None:
        """Raises ``ValueError`` naming the first bad field."""
        from ..._checks import check_int, check_number

        if self.data not in DATA:
            raise ValueError(f"data must be one of {DATA}, got {self.data!r}")
        if isinstance(self.runs, str) or not self.runs or not set(self.runs) <= set(RUNS):
            raise ValueError(f"runs must be a non-empty subset of {RUNS}, got {self.runs!r}")
        from ...policy import ViewPolicy

        for name, policy in self.policies.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"policies must map names to ViewPolicy dicts, got the name {name!r}")
            ViewPolicy.from_dict(policy)
        for name, low in (("seeds", 1), ("steps", 1), ("batch_size", 2), ("width", 1), ("knn_k", 1), ("probe_iters", 1),
                          ("eval_every", 0), ("curve_probe", 10), ("prefetch", 0), ("threads", 1), ("eval_threads", 1),
                          ("few_labels", 0)):
            check_int(getattr(self, name), name, low)
        for name in ("real_train", "fixed_set", "probe_train", "probe_test"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, self.batch_size if name in ("real_train", "fixed_set") else 10)
        check_number(self.lr, "lr", 0.0, 1.0, strict_low=True)
        check_number(self.temperature, "temperature", 0.0, 10.0, strict_low=True)
        if self.mi_budget is not None:
            check_number(self.mi_budget, "mi_budget", 0.0, strict_low=True)


@dataclass
class RunResult:
    """One run's figures, averaged over seeds (the lists hold every seed's)."""

    probe_accuracy: float
    probe_sd: float | None
    knn_accuracy: float | None
    few_label_accuracy: float | None
    pairs_per_s: float | None
    train_seconds: float | None
    final_loss: float | None
    seeds: dict[str, list[float]] = field(default_factory=dict)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, probe accuracy), mean over seeds

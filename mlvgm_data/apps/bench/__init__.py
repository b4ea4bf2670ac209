"""Generated views vs real-image loaders, side by side on one machine (``mlvgm-data bench``).

Every row delivers two SimCLR views per item to a consumer loop that does nothing else, at
matched resolution and augmentation; the number is view *pairs* per second. Rows:

* ``pipe``: :class:`~mlvgm_data.ViewPairPipe` with the shipped generator, the SimCLR preset and
  the thread producer (prefetch 2); ``pipe_cl``: the same with the generator converted to
  ``channels_last`` (which lets oneDNN run the convolutions in its faster layout on CPUs; skipped
  when the generator already decodes in that layout); ``pipe_cuda``: the CUDA-stream producer
  (GPU only).
* ``views0`` / ``views2``: :class:`~mlvgm_data.GeneratedViews` (batched ``simclr`` transform)
  through a ``DataLoader`` with 0 and 2 workers.
* ``pil``: the always-available baseline every ratio refers to: a plain ``DataLoader`` (2
  workers) over the Shapes JPEG export, PIL decode and the SimCLR recipe written with PIL's own
  ops, no torchvision.
* ``torchvision``: ``ImageFolder`` + the equivalent ``transforms.v2`` SimCLR pipeline (2 workers);
  skipped with a note when torchvision is not installed.
* ``dali``: a DALI pipeline (file reader → JPEG decode → the same augmentation ops as
  ``augment="dali"``), CPU mode (``device_id=None``), or GPU mode when a GPU is present.
* ``research``: the research code's synchronous Continuous Sampling step, re-implemented.

A sweep of decoder width at 32² states where generation overtakes decoding on this machine.

Modules: :mod:`.timing` (measurements), :mod:`.subjects` (generators benchmarked),
:mod:`.research` (the research baseline and the bare loop), :mod:`.loaders` (real-image
loaders), :mod:`.training` (training fed by each source; ``benchmarks/pipe.py`` and
``benchmarks/overlap.py``), :mod:`.rows` (the bench's rows and ``run_bench``), :mod:`.report`.
"""

from .loaders import PilViews, TwoViews, has_torchvision, pil_simclr_view, shapes_folder, torchvision_simclr
from .report import bar_chart, markdown
from .research import ResearchStep, bare_loop
from .rows import BASELINE, ROWS, BenchConfig, crossover, run_bench
from .subjects import bench_generator, decode_cost, decodes_channels_last, fresh_hvae
from .timing import Opener, Rate, machine_info, measure, measure_interleaved, rate_dict, round_ratios
from .training import (
    FEED_NAMES,
    FEEDS,
    SimCLRStep,
    bench_augment,
    compiled_vs_eager,
    pipe_vs_bare,
    training_bench_setup,
    training_markdown,
    training_rates,
    write_training_bench_json,
)

__all__ = [
    "BASELINE", "FEEDS", "FEED_NAMES", "ROWS", "BenchConfig", "Opener", "PilViews", "Rate", "ResearchStep",
    "SimCLRStep", "TwoViews", "bar_chart", "bare_loop", "bench_augment", "compiled_vs_eager", "bench_generator",
    "crossover", "decode_cost", "decodes_channels_last", "fresh_hvae", "has_torchvision", "machine_info", "markdown",
    "measure", "measure_interleaved", "pil_simclr_view", "pipe_vs_bare", "rate_dict", "round_ratios", "run_bench",
    "shapes_folder", "torchvision_simclr", "training_bench_setup", "training_markdown", "training_rates",
    "write_training_bench_json",
]

"""Smoke tests of the loader benchmark (tiny sizes; no timing assertions)."""

import argparse
import json
import math
import threading

import numpy as np
import pytest
import torch
from helpers import TinyGenerator, tiny_generator, write_split

from mlvgm_data import Keep, LatentGroup, LatentSpec, Perturb, ViewPolicy
from mlvgm_data.apps import bench
from mlvgm_data.apps.commands import bench as bench_cmd
from mlvgm_data.augment import simclr


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default=None)
    bench_cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def result(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("bench")
    args = _args("--batch-size", "4", "--images", "24", "--warmup", "0", "--repeats", "2", "--batches", "1",
                 "--threads", "1", "--sweep", "0.25,0.5", "--out", str(out))
    res = bench_cmd.run(args)
    res["_out"] = out
    return res


def test_every_row_is_measured_or_skipped_with_a_reason(result):
    measured = {(r["key"], r["resolution"]) for r in result["rows"]}
    skipped = {s["key"]: s["reason"] for s in result["skipped"]}
    for res in (32, 64):
        for key in bench.ROWS:
            assert (key, res) in measured or key in skipped, (key, res)
    for key in ("pipe", "views0", "views2", "pil", "research"):  # always available here
        assert all((key, res) in measured for res in (32, 64))
    assert "pipe_cuda" in skipped or torch.cuda.is_available()
    if not bench.has_torchvision():
        assert "torchvision" in skipped["torchvision"]
    assert all(reason for reason in skipped.values())


def test_rows_follow_the_json_schema_with_finite_numbers(result):
    text = json.dumps(result, default=str)  # what `mlvgm-data bench --json PATH` writes
    rows = json.loads(text)["rows"]
    for r in rows:
        for field in ("name", "pairs_per_s", "min", "max", "resolution", "threads", "workers", "ratio_to_pil"):
            assert field in r, field
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("pairs_per_s", "min", "max", "ratio_to_pil"))
        assert r["min"] <= r["pairs_per_s"] <= r["max"]
        assert len(r["samples"]) == 2
    baseline = [r for r in rows if r["key"] == "pil"]
    assert all(r["ratio_to_pil"] == 1.0 for r in baseline)
    assert result["machine"]["cpu_count"] >= 1 and "loadavg" in result["machine"]


def test_sweep_crossover_markdown_and_chart(result):
    sweep = result["sweep"]
    assert [s["width_scale"] for s in sweep] == [0.25, 0.5]
    assert sweep[0]["decode_mflops"] < sweep[1]["decode_mflops"] and sweep[0]["params"] < sweep[1]["params"]
    assert all(math.isfinite(s["pairs_per_s"]) for s in sweep)
    assert len(result["crossover"]) == len([r for r in result["rows"] if r["key"] in ("pil", "torchvision", "dali")
                                            and r["resolution"] == 32])
    table = (result["_out"] / "bench.md").read_text()
    for r in result["rows"]:
        assert r["name"] in table
    assert "× PIL baseline" in table and "decoder width" in table
    assert (result["_out"] / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_jpeg_export_is_written_once(tmp_path):
    folder = bench.shapes_folder(tmp_path, 12, 32)
    first = sorted(p.stat().st_mtime_ns for p in folder.rglob("*.jpg"))
    assert len(first) == 12
    assert bench.shapes_folder(tmp_path, 12, 32) == folder
    assert sorted(p.stat().st_mtime_ns for p in folder.rglob("*.jpg")) == first


def test_measure_counts_calls_and_rejects_bad_settings():
    calls = []
    rate = bench.measure(lambda: calls.append(1), 10, warmup=2, repeats=3, per_repeat=4)
    assert len(calls) == 2 + 3 * 4 and len(rate.samples) == 3
    assert rate.low <= rate.median <= rate.high
    with pytest.raises(ValueError, match="repeats"):
        bench.measure(lambda: None, 1, warmup=0, repeats=0, per_repeat=1)
    with pytest.raises(ValueError, match="per_repeat"):
        bench.measure(lambda: None, 1, warmup=0, repeats=1, per_repeat=0)


def test_measure_interleaved_rotates_rounds_and_closes_each_before_the_next():
    log: list[str] = []

    def opener(name: str):
        def open_round():
            log.append(f"open {name}")
            return (lambda: log.append(name)), (lambda: log.append(f"close {name}"))
        return open_round

    rates = bench.measure_interleaved({"a": opener("a"), "b": opener("b"), "c": opener("c")}, 5, warmup=1,
                                      repeats=3, per_repeat=2)
    rounds = [entry.split()[1] for entry in log if entry.startswith("open")]
    assert rounds == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # every round times each once, rotated
    first = log[:5]
    assert first == ["open a", "a", "a", "a", "close a"]  # 1 warm-up + 2 timed calls, closed before b opens
    assert all(len(r.samples) == 3 and r.low <= r.median <= r.high for r in rates.values())
    mid, low, high = bench.round_ratios(bench.Rate(2.0, 1.0, 4.0, [1.0, 2.0, 4.0]),
                                        bench.Rate(1.0, 1.0, 2.0, [1.0, 1.0, 2.0]))
    assert (mid, low, high) == (2.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="repeats"):
        bench.measure_interleaved({"a": opener("a")}, 1, warmup=0, repeats=0, per_repeat=1)
    with pytest.raises(ValueError):
        bench.round_ratios(bench.Rate(1.0, 1.0, 1.0, [1.0]), bench.Rate(1.0, 1.0, 1.0, [1.0, 1.0]))


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="unknown rows"):
        bench.BenchConfig(rows=("pipe", "imagenet")).check()
    with pytest.raises(ValueError, match="resolutions"):
        bench.BenchConfig(resolutions=(128,)).check()
    with pytest.raises(ValueError, match="batch_size"):
        bench.BenchConfig(batch_size=0).check()
    with pytest.raises(ValueError, match="sweep"):
        bench.BenchConfig(sweep=(0.0,)).check()
    cfg = bench_cmd.config_from_args(_args("--quick", "--sweep", "none", "--rows", "pipe,pil", "--threads", "2"))
    assert cfg.sweep == () and cfg.rows == ("pipe", "pil") and cfg.threads == (2,) and cfg.batch_size == 128
    with pytest.raises(ValueError, match="comma-separated ints"):
        bench_cmd.config_from_args(_args("--threads", "one"))


def test_research_step_reuses_one_seed_for_every_perturbed_group():
    gen = TinyGenerator()
    policy = ViewPolicy({"top": Perturb(0.5, trunc=2.0), "map": Keep()}, anchor_trunc=1.0)
    step = bench.ResearchStep(gen, policy, 5, simclr(16))
    np.random.seed(3)
    latents = step.latents()
    assert latents["top"].shape == (10, 8) and latents["map"].shape == (10, 4, 4, 4)
    assert latents["top"][:5].abs().max() <= 1.0  # anchors truncated at ±anchor_trunc
    assert torch.equal(latents["map"][:5], latents["map"][5:])  # kept group
    np.random.seed(3)
    seeds = np.random.randint(2**10, 2**24, 3)
    from scipy.stats import truncnorm

    full = truncnorm.rvs(-2.0, 2.0, scale=0.5, size=(5, 8 + 64), random_state=np.random.RandomState(seeds[1]))
    noise = (latents["top"][5:] - latents["top"][:5]).numpy()
    assert np.allclose(noise, full[:, :8].astype(np.float32), atol=1e-5)
    x0, x1 = step()
    assert x0.shape == x1.shape == (5, 3, 16, 16) and torch.isfinite(x0).all()


def test_crossover_interpolates_in_log_space():
    sweep = [{"decode_mflops": 10.0, "pairs_per_s": 1000.0, "params": 1e5},
             {"decode_mflops": 100.0, "pairs_per_s": 100.0, "params": 1e6}]
    lines = bench.crossover(sweep, [{"name": "L", "pairs_per_s": 10 ** 2.5}, {"name": "fast", "pairs_per_s": 5000.0},
                                    {"name": "slow", "pairs_per_s": 50.0}])
    assert "≈32 MFLOP" in lines[0] and "≈0.32 M" in lines[0]
    assert "faster than generation even with the smallest" in lines[1]
    assert "every decoder tried" in lines[2]


def test_pil_view_and_dataset(tmp_path):
    from PIL import Image

    image = Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8))
    view = bench.pil_simclr_view(image, simclr(16))
    assert view.shape == (3, 16, 16) and view.dtype == torch.float32 and 0 <= view.min() and view.max() <= 1
    folder = bench.shapes_folder(tmp_path, 6, 32)
    (v0, v1), label = bench.PilViews(folder, 32)[0]
    assert v0.shape == v1.shape == (3, 32, 32) and label == 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        bench.PilViews(tmp_path / "empty", 32)


def test_training_rates_and_pipe_vs_bare_run_on_a_tiny_generator():
    gen = TinyGenerator()
    policy = ViewPolicy.uniform(gen.latent_spec, Perturb(0.3))
    threads = threading.active_count()
    rates = bench.training_rates(gen, policy, 4, bench.FEEDS, width=4, warmup=0, repeats=2, per_repeat=1,
                                 materialised=2)
    assert set(rates) == set(bench.FEEDS) and all(math.isfinite(r.median) and r.median > 0 for r in rates.values())
    assert threading.active_count() == threads  # every round's producer stopped when its round closed
    both = bench.pipe_vs_bare(gen, policy, 4, warmup=0, repeats=1, per_repeat=1)
    assert both["pipe"].median > 0 and both["bare"].median > 0
    with pytest.raises(ValueError, match="unknown feeds"):
        bench.training_rates(gen, policy, 4, ("disk",))


class _GreyTiny(TinyGenerator):
    def __init__(self) -> None:
        super().__init__()
        self.image_shape = (1, 16, 16)

    def _decode(self, latents, classes):
        return super()._decode(latents, classes).mean(1, keepdim=True)


def test_training_rates_feed_a_grey_generator_to_a_one_channel_resnet():
    gen = _GreyTiny()
    assert bench.bench_augment(gen).config(0).jitter[2] == 0  # no colour jitter on grey images
    rates = bench.training_rates(gen, ViewPolicy({}), 4, ("pipe", "sync"), width=4, warmup=0, repeats=1, per_repeat=1)
    assert all(r.median > 0 for r in rates.values())


def test_decode_cost_counts_only_the_decoder():
    gen = bench.fresh_hvae(32, 0.5)
    flops, params = bench.decode_cost(gen)
    assert flops > 1e6 and 0 < params < sum(p.numel() for p in gen.parameters())
    assert gen.config["channels"] == [max(1, round(c / 2)) for c in bench.fresh_hvae(32).config["channels"]]


class _FixedLayout(torch.nn.Module):
    def __init__(self, channels_last: bool) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("z", (2,))])
        self.layout = torch.channels_last if channels_last else torch.contiguous_format

    def decode(self, latents, classes=None):
        return torch.zeros(len(latents["z"]), 3, 4, 4).contiguous(memory_format=self.layout)


def test_decodes_channels_last_looks_at_the_output_layout():
    assert bench.decodes_channels_last(_FixedLayout(True))
    assert not bench.decodes_channels_last(_FixedLayout(False))


def test_small_resnet_simclr_step_learns():
    step = bench.SimCLRStep(width=4)
    x0, x1 = torch.rand(2, 6, 3, 16, 16)
    losses = [float(step(x0, x1)) for _ in range(3)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_training_bench_setup_fills_quick_defaults_and_extra_options(monkeypatch):
    from mlvgm_data.apps.bench import training_bench_setup

    monkeypatch.setattr("sys.argv", ["x", "--generator", "untrained", "--quick", "--research", "--repeats", "7"])
    args, gen, policy, note = training_bench_setup(
        "d", "steps", lambda p: p.add_argument("--research", action="store_true"))
    assert (args.batch_size, args.warmup, args.repeats, args.steps, args.research) == (128, 1, 7, 2, True)
    assert gen.image_shape == (3, 32, 32) and "untrained" in note
    monkeypatch.setattr("sys.argv", ["x", "--generator", "untrained"])
    args = training_bench_setup("d", "batches")[0]
    assert (args.batch_size, args.warmup, args.repeats, args.batches) == (256, 2, 7, 3)


def test_write_training_bench_json(tmp_path):
    from types import SimpleNamespace

    from mlvgm_data.apps.bench import FEED_NAMES, write_training_bench_json

    path = tmp_path / "out.json"
    args = SimpleNamespace(json=str(path), generator="untrained", batch_size=8, channels_last=False)
    write_training_bench_json(args, "a note", [{"threads": 1}])
    doc = json.loads(path.read_text())
    assert doc["note"] == "a note" and doc["results"] == [{"threads": 1}] and doc["feeds"] == FEED_NAMES
    write_training_bench_json(SimpleNamespace(json=None), "", [])  # no --json: writes nothing, needs nothing
    assert list(tmp_path.iterdir()) == [path]


def test_fashion_bench_rows_on_tiny_files(tmp_path, monkeypatch):
    write_split(tmp_path / "fm", n=40, train=True)
    write_split(tmp_path / "fm", n=10, train=False, seed=1)
    monkeypatch.setenv("MLVGM_DATA", str(tmp_path / "fm"))
    cfg = bench.BenchConfig.quick(data="fashion-mnist", generator=tiny_generator(tmp_path, 1), resolutions=(32,),
                                  rows=("pipe", "pipe_real", "tensor", "pil", "torchvision"), batch_size=8, images=40,
                                  threads=(1,), out=str(tmp_path / "out"), progress=False)
    result = bench.run_bench(cfg)
    expected = {"pipe", "pipe_real", "tensor", "pil"} | ({"torchvision"} if bench.has_torchvision() else set())
    assert {r["key"] for r in result["rows"]} == expected
    assert all(r["pairs_per_s"] > 0 and r["resolution"] == 32 for r in result["rows"])
    assert next(r for r in result["rows"] if r["key"] == "pil")["ratio_to_pil"] == 1.0
    with pytest.raises(ValueError, match="unknown rows \\['views0'\\] for --data fashion-mnist"):
        bench.BenchConfig(data="fashion-mnist", rows=("views0",)).check()


def test_torchvision_root_holds_all_four_unpacked_files(tmp_path, monkeypatch):
    # torchvision's FashionMNIST looks for the four unpacked IDX files in ROOT/FashionMNIST/raw,
    # whichever split it loads; with only the train pair it says "Dataset not found".
    from mlvgm_data.apps.bench import fashion as bench_fashion
    from mlvgm_data.data import find_fashion_mnist

    write_split(tmp_path / "fm", n=6, train=True)
    write_split(tmp_path / "fm", n=4, train=False, seed=1)
    monkeypatch.setenv("MLVGM_DATA", str(tmp_path / "fm"))
    files = (*find_fashion_mnist(train=True), *find_fashion_mnist(train=False))
    root = bench_fashion._torchvision_root(tmp_path / "out", files)
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                                     "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    assert (raw / "t10k-images-idx3-ubyte").read_bytes()[:4] == bytes([0, 0, 8, 3])  # unpacked: the IDX magic


def test_compiled_vs_eager_times_both_and_the_compilation():
    gen = TinyGenerator()
    rates, first = bench.compiled_vs_eager(gen, ViewPolicy({}), 4, warmup=0, repeats=1, per_repeat=1)
    assert set(rates) == {"eager", "compiled"} and all(r.median > 0 for r in rates.values()) and first > 0

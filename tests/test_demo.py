"""The demo end to end at tiny sizes, on Shapes and on (tiny, test-written) Fashion-MNIST files:
every run of the report, pictures written, accuracies in [0, 1], the data sources' contracts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_generator, write_split

from mlvgm_data import ViewPolicy
from mlvgm_data.apps.demo import DEFAULT_RUNS, RUNS, DemoConfig, FixedSetViews, RealViews, epoch_order, run_demo
from mlvgm_data.apps.demo.config import CURVES
from mlvgm_data.apps.ssl import knn_accuracy


def quick(tmp_path: Path, **kw) -> DemoConfig:
    args = dict(out=str(tmp_path / "out"), steps=4, batch_size=16, seeds=2, real_train=64, probe_train=80,
                probe_test=40, eval_every=2, curve_probe=40, width=4, knn_k=5, probe_iters=15, progress=False,
                few_labels=5)
    args.update(kw)
    return DemoConfig.quick_config(**args)


def check_report(out: Path, seeds: int, runs: tuple[str, ...] = RUNS) -> dict:
    saved = json.loads((out / "demo_report.json").read_text())
    assert set(saved["runs"]) == set(runs)
    for name, run in saved["runs"].items():
        assert 0.0 <= run["probe_accuracy"] <= 1.0 and 0.0 <= run["knn_accuracy"] <= 1.0
        assert 0.0 <= run["few_label_accuracy"] <= 1.0
        n = 1 if name == "pixels" else seeds
        assert len(run["probe_accuracy_seeds"]) == n
        assert abs(run["probe_accuracy"] - sum(run["probe_accuracy_seeds"]) / n) < 1e-9
        assert (run["probe_sd"] is None) == (n == 1)
        assert (run["pairs_per_s"] is None) == (name in ("random", "pixels"))
        assert bool(run["curve"]) == (name in CURVES)
    for name in ("demo_report.md", "views_generated.png", "views_baseline_policy.png", "views_augment_only.png",
                 "views_real.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    return saved


def test_demo_on_shapes(tmp_path: Path) -> None:
    cfg = quick(tmp_path, data="shapes", generator=tiny_generator(tmp_path, 3), runs=RUNS)
    saved = check_report(Path(run_demo(cfg, log=lambda _: None)["config"]["out"]), seeds=2)
    assert saved["policy"]["rules"]["z1"]["sigma"] == 0.5  # the stored policy
    assert saved["policies"]["augment_only"]["rules"] == {}


def test_demo_on_fashion_mnist_files(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "fm"
    write_split(data, n=120, train=True)
    write_split(data, n=60, train=False, seed=1)
    monkeypatch.setenv("MLVGM_DATA", str(data))
    cfg = quick(tmp_path, data="fashion-mnist", generator=tiny_generator(tmp_path, 1), seeds=1, real_train=None,
                probe_train=None, probe_test=None, fixed_set=32)
    doc = run_demo(cfg, log=lambda _: None)
    saved = check_report(tmp_path / "out", seeds=1, runs=DEFAULT_RUNS)
    assert saved["fixed_set_size"] == 32 and doc["data"] == "fashion-mnist"
    assert "*reference: human*" in (tmp_path / "out" / "demo_report.md").read_text()


def test_demo_runs_on_its_own_thread_count_and_restores_the_callers(tmp_path: Path) -> None:
    # Float reductions split per thread, so the report repeats only at a fixed count: the demo
    # pins cfg.threads for the whole run, whatever the caller (or OMP_NUM_THREADS) set.
    seen: list[int] = []
    torch.set_num_threads(2)  # conftest's guard restores the count
    for threads in (1, 2):
        cfg = quick(tmp_path, data="shapes", generator=tiny_generator(tmp_path, 3), seeds=1, threads=threads,
                    out=str(tmp_path / f"t{threads}"))
        run_demo(cfg, log=lambda _: seen.append(torch.get_num_threads()))
        assert set(seen) == {threads} and torch.get_num_threads() == 2
        seen.clear()


def test_final_evaluations_run_on_eval_threads_with_no_producer_alive(tmp_path: Path, monkeypatch) -> None:
    # The final probes use both cores; a producer still decoding then would decode on that count.
    import threading

    import mlvgm_data.apps.demo.training as demo

    seen: list[tuple[int, bool, int]] = []  # (threads, a producer thread alive, probe size)
    real_probe = demo.linear_probe

    def probe(train_x, *args, **kwargs):
        alive = any(t.name == "mlvgm-data-producer" and t.is_alive() for t in threading.enumerate())
        seen.append((torch.get_num_threads(), alive, len(train_x)))
        return real_probe(train_x, *args, **kwargs)

    monkeypatch.setattr(demo, "linear_probe", probe)
    cfg = quick(tmp_path, data="shapes", generator=tiny_generator(tmp_path, 3), seeds=1, threads=1, eval_threads=2,
                probe_train=80, curve_probe=40)
    run_demo(cfg, log=lambda _: None)
    curve = [s for s in seen if s[2] == 40]
    final = [s for s in seen if s[2] == 80]
    few = [s for s in seen if s[2] not in (40, 80)]
    assert len(curve) == 4 * 2 and all(threads == 1 for threads, _, _ in curve)  # (a), (b), (h), (i) at steps 2, 4
    assert len(final) == 7 and all(threads == 2 and not alive for threads, alive, _ in final)  # 5 trained, (f), (g)
    assert len(few) == 7 and all(threads == 2 and not alive for threads, alive, _ in few)  # the few-label probes


def test_demo_runs_only_the_chosen_runs(tmp_path: Path) -> None:
    cfg = quick(tmp_path, data="shapes", generator=tiny_generator(tmp_path, 3), seeds=1,
                runs=("generated", "fixed_set"))
    lines: list[str] = []
    doc = run_demo(cfg, log=lines.append)
    assert set(doc["runs"]) == {"generated", "fixed_set"} and tuple(doc["config"]["runs"]) == ("generated", "fixed_set")
    assert not any("real " in line or "raw pixels" in line for line in lines)
    table = (tmp_path / "out" / "demo_report.md").read_text()
    assert "(a) generated" in table and "(e) generated" in table and "(b) real" not in table
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0


def test_demo_refuses_bad_settings(tmp_path: Path) -> None:
    for kw, field in [(dict(data="mnist"), "data"), (dict(steps=0), "steps"), (dict(batch_size=1), "batch_size"),
                      (dict(lr=float("nan")), "lr"), (dict(real_train=8), "real_train"), (dict(threads=0), "threads"),
                      (dict(eval_threads=0), "eval_threads"),
                      (dict(runs=("generated", "nope")), "runs"), (dict(runs=()), "runs"), (dict(runs="real"), "runs")]:
        with pytest.raises(ValueError, match=field):
            run_demo(quick(tmp_path, **kw), log=lambda _: None)


def test_epoch_order_is_a_counter_based_permutation() -> None:
    a = epoch_order(1000, seed=3, epoch=0, stream=1)
    assert sorted(a.tolist()) == list(range(1000))
    assert torch.equal(a, epoch_order(1000, 3, 0, 1)) and not torch.equal(a, epoch_order(1000, 3, 1, 1))


def test_real_views_cover_an_epoch_and_fixed_sets_repeat_their_latents() -> None:
    from helpers import PointwiseGenerator

    from mlvgm_data.augment import crop_flip

    # Constant images stay constant under crop and flip: a view's mean tells which image it is.
    images = (torch.arange(8.0) / 8)[:, None, None, None].expand(8, 1, 8, 8).contiguous()
    real = list(RealViews(images, crop_flip(8), batch_size=4, seed=0, steps=4, prefetch=1))
    ids = [round(float(m) * 8) for b in real for m in b.views[0].mean((1, 2, 3))]
    assert sorted(ids[:8]) == sorted(ids[8:]) == list(range(8)) and ids[:8] != ids[8:]  # two epochs, reshuffled

    def same_images(x, *args, **kw):
        return x

    fixed = FixedSetViews(PointwiseGenerator(), ViewPolicy({}), size=8, augment=same_images, batch_size=8, seed=0,
                          steps=2, prefetch=0)
    first, second = (b.views[0].flatten(1) for b in fixed)
    key = lambda x: sorted(x.sum(1).tolist())  # noqa: E731
    assert key(first) == key(second) and not torch.equal(first, second)  # the same set, in another order


def test_knn_accuracy_votes_by_cosine_similarity() -> None:
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    assert knn_accuracy(train, labels, torch.tensor([[5.0, 0.2], [0.1, 3.0]]), torch.tensor([0, 1]), k=2) == 1.0
    assert knn_accuracy(train, labels, torch.tensor([[5.0, 0.2]]), torch.tensor([1]), k=1) == 0.0
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(train, labels, train, labels, k=9)


def test_the_few_label_probe_takes_the_same_images_of_every_class_each_time() -> None:
    from mlvgm_data.apps.demo.training import few_label_subset

    labels = torch.arange(100) % 4
    labels[:3] = 3  # class sizes 23, 25, 25, 27
    picked = few_label_subset(labels, 10)
    assert torch.equal(picked, few_label_subset(labels, 10)) and len(set(picked.tolist())) == 40
    assert all(int((labels[picked] == c).sum()) == 10 for c in range(4))
    assert len(few_label_subset(labels, 30)) == 100  # a class with fewer gives all it has


def test_extra_policies_and_the_crop_flip_recipe_train_as_runs_of_their_own(tmp_path: Path) -> None:
    policies = {"z1 resampled": {"rules": {"z1": {"kind": "resample"}}}}
    cfg = quick(tmp_path, data="shapes", generator=tiny_generator(tmp_path, 3), seeds=1, eval_every=0,
                runs=("generated", "crop_flip_recipe"), policies=policies,
                policy_notes={"z1 resampled": "chosen with a labelled judge"})
    doc = run_demo(cfg, log=lambda _: None)
    assert set(doc["runs"]) == {"generated", "crop_flip_recipe", "policy:z1 resampled"}
    assert doc["policies"]["policy:z1 resampled"]["rules"]["z1"]["kind"] == "resample"
    table = (tmp_path / "out" / "demo_report.md").read_text()
    assert "(p) z1 resampled — chosen with a labelled judge" in table and "(l) generated, recommended policy" in table
    with pytest.raises(ValueError, match="ViewPolicy"):
        quick(tmp_path, policies={"bad": {"rules": 3}}).check()


def test_the_policies_option_reads_a_view_quality_report_and_marks_the_judge(tmp_path: Path) -> None:
    from mlvgm_data.apps.commands.demo import _policies

    report = {"front": ["a", "b"], "recommended": {"name": "b"}, "settings": {"judge": "builtin:fashion-classifier"},
              "policies": {n: {"policy": {"rules": {}}} for n in ("a", "b", "c")}}
    path = tmp_path / "vq.json"
    path.write_text(json.dumps(report))
    chosen, notes = _policies(str(path))
    assert list(chosen) == ["a", "b"] and "labelled judge" in notes["a"] and "recommendation" in notes["b"]
    chosen, _ = _policies(f"{path}:c")
    assert list(chosen) == ["c"]
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="not in"):
        _policies(f"{path}:d")


def test_the_fixed_set_run_can_train_on_an_export(tmp_path: Path) -> None:
    from mlvgm_data import load_generator, recommended_policy
    from mlvgm_data.export import export_shards, load_export

    name = tiny_generator(tmp_path, 3)
    gen = load_generator(name)
    export_shards(gen, recommended_policy(name), 48, tmp_path / "shards", seed=5, batch_size=16, shard_size=20,
                  progress=False)
    views, targets = load_export(tmp_path / "shards")
    assert views.shape == (48, 2, 3, 32, 32) and views.dtype == torch.uint8 and targets.tolist() == [-1] * 48
    cfg = quick(tmp_path, data="shapes", generator=name, seeds=1, eval_every=0, runs=("fixed_set",),
                fixed_set_shards=str(tmp_path / "shards"), batch_size=16)
    doc = run_demo(cfg, log=lambda _: None)
    assert doc["fixed_set_size"] == 48 and 0 <= doc["runs"]["fixed_set"]["probe_accuracy"] <= 1
    export_shards(gen, ViewPolicy({}), 16, tmp_path / "other", batch_size=16, progress=False)  # another policy
    with pytest.raises(ValueError, match="another generator or policy"):
        run_demo(quick(tmp_path, data="shapes", generator=name, seeds=1, runs=("fixed_set",),
                       fixed_set_shards=str(tmp_path / "other")), log=lambda _: None)

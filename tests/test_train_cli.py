"""``mlvgm-data train``: the option table, a tiny run, resume, and bad input."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from mlvgm_data.apps.commands import train as train_cmd
from mlvgm_data.apps.train import checkpoint, data, loop
from mlvgm_data.apps.train.outputs import grid_classes
from mlvgm_data.apps.train.registry import train
from mlvgm_data.generators import load_generator

TINY = ["--channels", "8,8,8", "--blocks", "1,0,0", "--enc-channels", "4,4,8,8",
        "--groups", "z1:4:1,z2:2:4", "--kl-weights", "1,1", "--batch-size", "4", "--eval-images", "8",
        "--threads", "1"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    return parser.parse_args(argv)


def test_help_lists_the_models_and_their_options():
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    text = parser.format_help()
    assert "--model" in text and "hvae" in text and "--vmi-weight" in text and "--skip" in text


def test_tiny_run_writes_and_exports_a_loadable_generator(tmp_path, capsys):
    out = tmp_path / "run"
    args = parse(["--model", "hvae", "--steps", "3", "--checkpoint-every", "2", "--out", str(out),
                  "--export", str(tmp_path / "exported")] + TINY)
    summary = train_cmd.run(args)
    assert "trained hvae" in capsys.readouterr().out
    assert summary["steps"] == 3 and set(summary["kl"]) == {"z1", "z2"}
    assert summary["elbo"] == pytest.approx(-(summary["nll"] + summary["kl_total"]))
    gen = load_generator(out)
    exported = load_generator(tmp_path / "exported")
    assert gen.num_classes == 6  # Shapes has labels: class-conditional by default
    eps = {g.name: torch.randn(2, *g.shape) for g in gen.latent_spec}
    classes = torch.tensor([0, 5])
    with torch.no_grad():
        assert torch.equal(gen.decode(eps, classes), exported.decode(eps, classes))
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    assert (out / "samples.png").exists() and (out / "checkpoint.pt").exists()


def test_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    import shutil

    opts = dict(channels="8,8,8", blocks="1,0,0", enc_channels="4,4,8,8", groups="z1:4:1,z2:2:4",
                kl_weights="1,1", batch_size=4, eval_images=8, threads=1, steps=4, checkpoint_every=2)
    save = loop.save_checkpoint

    def keep_step_2(path, step, *args, **kw):
        out = save(path, step, *args, **kw)
        if step == 2:
            shutil.copy(out, tmp_path / "step2.pt")
        return out

    monkeypatch.setattr(loop, "save_checkpoint", keep_step_2)
    train("hvae", out=str(tmp_path / "full"), **opts)
    # A run killed after step 2 and resumed ends where the uninterrupted run did.
    (tmp_path / "resumed").mkdir()
    shutil.copy(tmp_path / "step2.pt", tmp_path / "resumed" / "checkpoint.pt")
    train("hvae", out=str(tmp_path / "resumed"), resume=True, **opts)
    a, b = load_generator(tmp_path / "full"), load_generator(tmp_path / "resumed")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_resume_with_other_options_is_refused(tmp_path):
    opts = dict(channels="8,8,8", blocks="1,0,0", enc_channels="4,4,8,8", groups="z1:4:1,z2:2:4",
                kl_weights="1,1", batch_size=4, eval_images=0, threads=1, steps=2)
    train("hvae", out=str(tmp_path / "a"), **opts)
    with pytest.raises(ValueError, match="other options"):
        train("hvae", out=str(tmp_path / "a"), resume=True, **{**opts, "sigma": 0.2})


def test_train_on_an_image_folder(tmp_path):
    from mlvgm_data.data import export_jpeg

    export_jpeg(tmp_path / "imgs", 12, resolution=48)
    summary = train("hvae", data=str(tmp_path / "imgs"), out=str(tmp_path / "run"), steps=2,
                           channels="8,8,8", blocks="1,0,0", enc_channels="4,4,8,8", groups="z1:4:1,z2:2:4",
                           kl_weights="1,1", batch_size=5, eval_images=6, threads=1)
    assert summary["eval_data"] == "first 6 training images"
    assert "encoder_class_accuracy" not in summary  # a folder has no labels: unconditional
    with pytest.raises(ValueError, match="--conditional needs labelled data"):
        train("hvae", data=str(tmp_path / "imgs"), out=str(tmp_path / "run2"), steps=1, conditional=True)


def test_batches_are_a_pure_function_of_the_step(tmp_path):
    from mlvgm_data.data import export_jpeg

    src = data.image_source("shapes", 16, 3)
    first = list(zip(range(3), data.batches(src, 4)))
    later = next(data.batches(src, 4, start_step=2))
    assert torch.equal(first[2][1], later) and torch.equal(data.batch_at(src, 4, 2), later)
    images, classes = next(data.batches(src, 4, start_step=2, labelled=True))
    assert torch.equal(images, later) and torch.equal(classes, src.dataset.render(torch.arange(8, 12))[1])
    export_jpeg(tmp_path / "imgs", 10)
    folder = data.image_source(str(tmp_path / "imgs"), 16, 0)
    idx = torch.cat([data.step_indices(folder, 4, s) for s in range(5)])  # 2 epochs
    assert sorted(idx[:10].tolist()) == list(range(10)) and sorted(idx[10:20].tolist()) == list(range(10))
    assert torch.equal(data.step_indices(folder, 4, 3), data.step_indices(folder, 4, 3))
    with pytest.raises(ValueError, match="no class labels"):
        next(data.batches(folder, 4, labelled=True))


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="'shapes', 'fashion-mnist' or a folder"):
        train("hvae", data=str(tmp_path / "nope"), steps=1, out=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="unknown options"):
        train("hvae", stpes=3)
    with pytest.raises(ValueError, match="unknown model"):
        train("gan9000")
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        train("hvae", steps=0)
    for bad, match in [(dict(threads=0), "threads must be in"), (dict(threads=-1), "threads must be in"),
                       (dict(lr=float("inf")), "lr must be a finite number"),
                       (dict(kl_weights="nan,1,1"), "kl-weights must be finite")]:
        with pytest.raises(ValueError, match=match):
            train("hvae", steps=1, out=str(tmp_path / "r"), eval_images=0, **bad)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a run folder"):
        train("hvae", steps=1, out=str(tmp_path / "a-file"))
    with pytest.raises(ValueError, match="kl-weights"):
        train("hvae", steps=1, kl_weights="1,2", out=str(tmp_path / "r"), eval_images=0)
    with pytest.raises(ValueError, match="comma-separated ints"):
        train("hvae", steps=1, channels="8,x", out=str(tmp_path / "r"))
    with pytest.raises(SystemExit):
        parse(["--model", "hvae", "--steps", "many"])


def test_hvae_kl_weights_default_to_one_for_the_top_group_and_five_below():
    from mlvgm_data.apps.train.hvae import kl_weights

    assert kl_weights(None, 3) == [1.0, 5.0, 5.0]
    assert kl_weights(None, 2) == [1.0, 5.0]
    assert kl_weights("1,2", 2) == [1.0, 2.0]
    with pytest.raises(ValueError, match="comma-separated numbers"):
        kl_weights("1,x", 2)


def test_grid_classes_gives_one_row_per_class():
    assert grid_classes(None, 8) == (64, None) and grid_classes(0, 3) == (9, None)
    n, classes = grid_classes(3, 4)
    assert n == 12 and classes.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_a_resumed_run_keeps_the_options_that_define_it():
    opts = argparse.Namespace(model="stylegan", out="a", resume=True, threads=2, steps=10, lr=0.1, seed=0)
    options = checkpoint.run_options(opts, changeable=("steps",))
    assert json.loads(options) == {"lr": 0.1, "seed": 0}  # bookkeeping and changeable options left out
    moved = argparse.Namespace(**dict(vars(opts), out="b", threads=1, steps=20))
    assert checkpoint.run_options(moved, changeable=("steps",)) == options
    checkpoint.check_resumed_options(opts, {}, options)  # a fresh run
    checkpoint.check_resumed_options(opts, {"options": options, "seconds": 1.0}, options)
    for extra in ({"options": json.dumps({"lr": 0.2, "seed": 0})}, {"seconds": 1.0}):
        with pytest.raises(ValueError, match="--resume: .*checkpoint.pt was written with other options"):
            checkpoint.check_resumed_options(opts, extra, options)

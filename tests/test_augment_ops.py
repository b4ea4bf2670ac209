"""The augmentation ops one by one, user-composed pipelines, the registry, and RandomErasing."""

import json
import pickle

import pytest
import torch

from mlvgm_data import augment as A
from mlvgm_data import ops as counter_ops
from mlvgm_data.augment import AugmentConfig, Compose, ViewAugment
from mlvgm_data.augment.ops import base


def _images(n=6, c=3, h=32, w=32, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _draw(b=6, **kw):
    return A.Draw(b, **{"seed": 3, "step": 1, **kw})


# --- a user-composed pipeline (the documented example) ----------------------------------------

def test_a_user_composed_pipeline():
    """The module docstring of mlvgm_data.augment.compose, run: ops in order, replayable, and the
    same pipeline over every view of a batch."""
    pipeline = Compose([A.RandomResizedCrop(32, scale=(0.2, 1.0)), A.RandomHorizontalFlip(),
                        A.ColorJitter(0.4, 0.4, p=0.8), A.RandomErasing(p=0.25, value=0.5)])
    images = _images(n=64, h=48, w=40)
    out = pipeline(images, seed=0, step=7)
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out, pipeline(images, seed=0, step=7)) and not torch.equal(out, pipeline(images, 0, 8))
    params = pipeline.sample(_draw(64, step=7, seed=0), 48, 40)
    assert torch.equal(pipeline.apply(images, params), out)  # the two halves
    erased = params[3]["erase_box"][:, 2:].prod(1) > 0
    assert 0.1 < float(erased.float().mean()) < 0.4
    for i in torch.nonzero(erased)[:, 0].tolist():
        top, left, h, w = params[3]["erase_box"][i].long().tolist()
        assert (out[i, :, top : top + h, left : left + w] == 0.5).all()
    views = torch.stack([images, images.flip(0)])
    aug = ViewAugment(pipeline)
    both = aug(views, 0, 7)
    assert torch.equal(both[0], out)  # view 0 draws as view 0
    assert torch.equal(both[1], pipeline(views[1], 0, 7, view=1))
    assert torch.equal(images, _images(n=64, h=48, w=40))  # inputs are never written


def test_adding_an_op_leaves_every_other_draw_and_image_alone():
    """Each op draws from its own slot: inserting RandomErasing anywhere keeps the other ops'
    parameters, and the images it does not erase, bit for bit (the clamp moves before it)."""
    plain = A.simclr(24).views[0].ops
    x = _images(n=40, h=32, w=32)
    ref = Compose(list(plain))
    ref_params = ref.sample(_draw(40), 32, 32)
    for at in range(len(plain) + 1):
        ops = [*plain[:at], A.RandomErasing(p=0.5), *plain[at:]]
        params = Compose(ops).sample(_draw(40), 32, 32)
        others = params[:at] + params[at + 1 :]
        assert all(torch.equal(a[k], b[k]) for a, b in zip(others, ref_params) for k in a)
    with_erasing = Compose([*plain, A.RandomErasing(p=0.5)])
    p = with_erasing.sample(_draw(40), 32, 32)
    kept = p[-1]["erase_box"][:, 2:].prod(1) == 0
    assert kept.any() and (~kept).any()
    assert torch.equal(with_erasing.apply(x, p)[kept], ref.apply(x, ref_params)[kept])


def test_ops_of_one_class_twice_draw_from_different_slots():
    pipeline = Compose([A.RandomErasing(p=1.0), A.RandomSolarize(p=0.5), A.RandomErasing(p=1.0)])
    assert pipeline.slots == (6, 5, 6 + A.SLOT_STRIDE)
    p = pipeline.sample(_draw(50), 32, 32)
    assert not torch.equal(p[0]["erase_box"], p[2]["erase_box"])
    direct = counter_ops.uniform(50, 1, 3, 1, slot=5)[:, 0] < 0.5
    assert torch.equal(p[1]["solarize"], direct)


def test_a_flip_after_the_crop_is_applied_in_the_crop_with_the_same_bits():
    x = _images(n=20, h=40, w=36)
    fused = Compose([A.RandomResizedCrop(24), A.RandomHorizontalFlip(0.5)])
    p = fused.sample(_draw(20), 40, 36)
    crop_only = Compose([A.RandomResizedCrop(24)]).apply(x, p[:1])
    assert torch.equal(fused.apply(x, p), torch.where(p[1]["flip"][:, None, None, None], crop_only.flip(-1), crop_only))
    before = Compose([A.RandomHorizontalFlip(1.0), A.RandomResizedCrop(36, scale=None)])  # flip first: no fusion
    assert torch.equal(before(x[..., :36, :], 0, 0), x[..., :36, :].flip(-1))


def test_a_pipeline_without_a_crop_copies_instead_of_writing_its_input():
    x = _images(n=8)
    keep = x.clone()
    out = Compose([A.ColorJitter(0.5, 0.5, p=1.0), A.RandomSolarize(p=1.0)])(x, 1, 1)
    assert torch.equal(x, keep) and not torch.equal(out, x)
    assert torch.equal(Compose([])(x, 0, 0), x) and Compose([]).size is None


# --- views whose ops differ in what application reads -----------------------------------------

@pytest.mark.parametrize("make", [
    lambda v: A.GaussianBlur(3 if v == 0 else 5, p=1.0),
    lambda v: A.RandomSolarize(0.3 if v == 0 else 0.5, p=1.0),
    lambda v: A.Normalize((0.5,) * 3, (0.25 if v == 0 else 0.5,) * 3),
    lambda v: A.RandomErasing(p=1.0, value=(0.0, 0.5, 1.0) if v == 0 else 0.2),
])
def test_views_with_different_settings_equal_each_view_alone(make):
    views = [[A.RandomResizedCrop(16, antialias=v == 0), A.RandomHorizontalFlip(), make(v)] for v in (0, 1)]
    x = torch.stack([_images(n=9, h=20, w=20, seed=s) for s in (1, 2)])
    out = ViewAugment(views)(x, 4, 2)
    for v in (0, 1):
        assert torch.equal(out[v], Compose(views[v])(x[v], 4, 2, view=v))


def test_presets_built_from_ops_equal_their_configs():
    """The presets as AugmentConfig described them before they were built from ops: same bits."""
    configs = {
        "simclr": [AugmentConfig(24, jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.8, grayscale_p=0.2, blur_p=0.5)],
        "byol": [AugmentConfig(24, jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, grayscale_p=0.2, blur_p=p, solarize_p=s)
                 for p, s in ((1.0, 0.0), (0.1, 0.2))],
        "crop_flip": [AugmentConfig(24, crop_scale=(0.2, 1.0))],
        "fashion": [AugmentConfig(24, crop_scale=(0.3, 1.0), jitter=(0.4, 0.4, 0.0, 0.0), jitter_p=0.8)],
    }
    x = torch.stack([_images(n=12, h=30, w=30, seed=s) for s in (3, 4, 5)])
    for name, cfgs in configs.items():
        for norm in (None, A.IMAGENET_NORMALIZE):
            cfgs_n = [AugmentConfig.from_dict({**c.to_dict(), "normalize": norm}) for c in cfgs]
            built = A.preset(name, 24, norm)
            assert [built.config(v) for v in range(len(cfgs_n))] == cfgs_n
            assert torch.equal(built(x, 2, 5), ViewAugment(cfgs_n)(x, 2, 5))


def test_config_round_trips_through_ops_and_describes_only_its_kinds():
    cfg = AugmentConfig(20, crop_scale=None, flip_p=0.3, jitter=(0.1, 0.2, 0.3, 0.4), jitter_p=0.5, grayscale_p=0.6,
                        blur_p=0.7, blur_sigma=(0.2, 1.0), blur_kernel=5, solarize_p=0.8, solarize_threshold=0.4,
                        normalize=((0.1,), (0.2,)), antialias=False)
    assert AugmentConfig.from_ops(cfg.ops()) == cfg
    assert [type(op) for op in cfg.ops()] == list(A.config.KINDS)
    assert AugmentConfig.from_ops([A.RandomResizedCrop(8)]) == AugmentConfig(8, flip_p=0.0)
    for bad in ([A.RandomHorizontalFlip()], [A.RandomResizedCrop(8), A.RandomErasing()],
                [A.RandomResizedCrop(8), A.RandomGrayscale(), A.ColorJitter()]):
        with pytest.raises(ValueError, match="have no AugmentConfig"):
            AugmentConfig.from_ops(bad)
    with pytest.raises(ValueError, match="have no AugmentConfig"):
        ViewAugment([A.RandomResizedCrop(8), A.RandomErasing()]).config(0)


# --- serialisation and the registry -------------------------------------------------------------

def test_pipelines_round_trip_through_json_and_pickle():
    aug = ViewAugment([
        [A.RandomResizedCrop(16), A.RandomErasing(p=0.5, value=(0.1, 0.2, 0.3)), A.Normalize((0.5,) * 3, (0.2,) * 3)],
        [A.RandomResizedCrop(16), A.RandomErasing(p=0.0), A.Normalize((0.4,) * 3, (0.3,) * 3)],
    ])
    x = torch.stack([_images(n=5, h=20, w=20)] * 2)
    for back in (ViewAugment.from_dict(json.loads(json.dumps(aug.to_dict()))), pickle.loads(pickle.dumps(aug))):
        assert back.views == aug.views and torch.equal(back(x, 1, 1), aug(x, 1, 1))
    old = {"views": [AugmentConfig(16, blur_p=0.5).to_dict()]}  # the format before ops
    assert ViewAugment.from_dict(old).views == ViewAugment(AugmentConfig(16, blur_p=0.5)).views
    assert "Compose([RandomResizedCrop" in repr(aug) and len(aug.views[0]) == 3


def test_every_op_file_holds_one_registered_op_with_its_own_slot():
    import importlib
    import pkgutil

    files = [m.name for m in pkgutil.iter_modules(A.ops.__path__) if m.name != "base"]
    found = []
    for name in files:
        module = importlib.import_module(f"mlvgm_data.augment.ops.{name}")
        ops = [c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, A.Op) and c.__module__ == module.__name__]
        assert len(ops) == 1 and A.OPS[ops[0].__name__] is ops[0], name
        found.append(ops[0])
    assert sorted(c.__name__ for c in found) == sorted(A.OPS) == sorted(n for n in A.ops.__all__ if n in A.OPS)
    slots = [c.slot for c in found if c.slot is not None]
    assert len(slots) == len(set(slots))
    assert all(hasattr(A, c.__name__) for c in found)  # exported from mlvgm_data.augment without a line there


def test_register_refuses_taken_names_and_slots_and_non_ops(monkeypatch):
    from dataclasses import dataclass

    monkeypatch.setattr(base, "OPS", dict(base.OPS))

    @dataclass(frozen=True)
    class Invert(A.Op):
        slot = 40

    assert base.register(Invert) is Invert and base.OPS["Invert"] is Invert
    stolen = type("RandomErasing", (Invert,), {"slot": 41})
    with pytest.raises(ValueError, match="an op named RandomErasing is already registered"):
        base.register(dataclass(frozen=True)(stolen))
    clash = dataclass(frozen=True)(type("Clash", (A.Op,), {"slot": 6}))
    with pytest.raises(ValueError, match="Clash.slot 6 is already RandomErasing's"):
        base.register(clash)
    with pytest.raises(ValueError, match=r"slot must be an int in \[0, 64\)"):
        base.register(dataclass(frozen=True)(type("Far", (A.Op,), {"slot": 64})))
    with pytest.raises(ValueError, match="register takes an Op subclass"):
        base.register(int)
    with pytest.raises(NotImplementedError, match="Invert must implement apply_"):
        Invert().apply(_images(n=1), {})


def test_bad_op_dicts_and_compositions():
    with pytest.raises(ValueError, match="op must name a registered op"):
        A.op_from_dict({"op": "Sharpen"})
    with pytest.raises(ValueError, match=r"unknown RandomErasing settings: \['colour'\]"):
        A.op_from_dict({"op": "RandomErasing", "colour": 1})
    with pytest.raises(ValueError, match="expected a list of op dicts"):
        Compose.from_dict({"op": "RandomErasing"})
    with pytest.raises(ValueError, match="ops must be a list"):
        Compose(A.RandomErasing())
    with pytest.raises(ValueError, match="params must be a list of dicts"):
        Compose([A.RandomErasing()]).apply(_images(n=2), {"erase_box": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="view must be in"):
        Compose([A.RandomErasing()])(_images(n=2), 0, 0, view=256)
    with pytest.raises(ValueError, match="images must be a 4-d tensor"):
        Compose([A.RandomErasing()])(_images(n=2)[None], 0, 0)
    with pytest.raises(ValueError, match="views has 2 views but 1 pipelines"):
        A.compose.apply_views([Compose([])], _images(n=2)[None].expand(2, -1, -1, -1, -1), A.AugmentParams(()))


# --- each op alone ---------------------------------------------------------------------------

def test_each_op_samples_its_declared_parameters_and_applies_without_touching_its_input():
    ops = [A.RandomResizedCrop(16), A.RandomHorizontalFlip(), A.ColorJitter(0.5, 0.5, 0.5, 0.1, p=0.5),
           A.RandomGrayscale(0.5), A.GaussianBlur(3, p=0.5), A.RandomSolarize(p=0.5),
           A.Normalize((0.5,) * 3, (0.5,) * 3), A.RandomErasing()]
    assert {type(op) for op in ops} == set(A.OPS.values())
    x = _images(n=7, h=20, w=24)
    keep = x.clone()
    for op in ops:
        p = op.sample(_draw(7).at(op.slot or 0), 20, 24)
        assert {k: tuple(t.shape) for k, t in p.items()} == {k: (7, *s) for k, s in op.param_shapes.items()}
        out = op.apply(x, p)
        assert torch.equal(x, keep) and out.shape[2:] == op.output_size(20, 24)
        assert torch.equal(out, Compose([op]).apply(x, [p]).clamp(*((0, 1) if op.keeps_range else (-9, 9))))


def test_ops_apply_known_answers():
    x = _images(n=4, h=8, w=8)
    on = torch.tensor([True, False, True, False])
    flip = A.RandomHorizontalFlip().apply(x, {"flip": on})
    assert torch.equal(flip[on], x[on].flip(-1)) and torch.equal(flip[~on], x[~on])
    grey = A.RandomGrayscale().apply(x, {"grayscale": on})
    assert torch.equal(grey, A.grayscale(x, on))
    f = torch.tensor([[0.5, 1.2, 0.8, 0.1]] * 4)
    assert torch.equal(A.ColorJitter().apply(x, {"jitter": on, "jitter_factors": f}), A.color_jitter(x, f))
    sigma = torch.linspace(0.5, 2.0, 4)
    assert torch.equal(A.GaussianBlur(5).apply(x, {"blur": on, "blur_sigma": sigma}), A.gaussian_blur(x, sigma, 5, on))
    assert torch.equal(A.RandomSolarize(0.3).apply(x, {"solarize": on}), A.solarize(x, on, 0.3))
    norm = A.Normalize((0.1, 0.2, 0.3), (0.5, 0.5, 2.0)).apply(x, {})
    assert torch.equal(norm, A.normalize(x, [0.1, 0.2, 0.3], [0.5, 0.5, 2.0]))
    box = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 8.0, 8.0], [7.0, 7.0, 1.0, 1.0]])
    out = A.RandomErasing(value=(0.1, 0.2, 0.3)).apply(x, {"erase_box": box})
    want = x.clone()
    for i, (t, left, h, w) in enumerate(box.long().tolist()):
        want[i, :, t : t + h, left : left + w] = torch.tensor([0.1, 0.2, 0.3])[:, None, None]
    assert torch.equal(out, want)
    assert torch.equal(A.ops.erasing.erase(x, box, 0.0)[1], x[1])


def test_op_draws_follow_probability_and_ranges():
    n = 6000
    d = _draw(n)
    assert abs(float(A.RandomHorizontalFlip(0.3).sample(d.at(1), 8, 8)["flip"].float().mean()) - 0.3) < 0.02
    assert not A.RandomGrayscale(0.0).sample(d, 8, 8)["grayscale"].any()
    blur = A.GaussianBlur(3, sigma=(0.5, 1.5), p=0.4).sample(d.at(4), 8, 8)
    assert abs(float(blur["blur"].float().mean()) - 0.4) < 0.02
    assert blur["blur_sigma"].min() >= 0.5 and blur["blur_sigma"].max() <= 1.5
    assert torch.equal(A.GaussianBlur(3, p=0.0).sample(d, 8, 8)["blur_sigma"], torch.full((n,), 0.1))
    jit = A.ColorJitter(hue=0.3, p=0.5).sample(d.at(2), 8, 8)
    assert abs(float(jit["jitter"].float().mean()) - 0.5) < 0.02
    assert jit["jitter_factors"][:, 3].abs().max() <= 0.3 and jit["jitter_factors"][:, :3].eq(1).all()
    assert not A.ColorJitter(p=1.0).active and not A.RandomSolarize(p=0.0).active and A.Normalize((0,), (1,)).active


def test_random_erasing_follows_torchvision():
    n, h, w = 4000, 40, 50
    box = A.RandomErasing(p=0.7, scale=(0.05, 0.3), ratio=(0.5, 2.0)).sample(_draw(n).at(6), h, w)["erase_box"]
    top, left, bh, bw = box.unbind(1)
    on = bh * bw > 0
    assert abs(float(on.float().mean()) - 0.7) < 0.03
    assert torch.equal(box, box.round()) and (top >= 0).all() and (left >= 0).all()
    assert (top + bh <= h).all() and (left + bw <= w).all() and (bh[on] < h).all() and (bw[on] < w).all()
    bh, bw = bh[on], bw[on]
    area, ratio = bh * bw / (h * w), bh / bw  # torchvision: ratio = height / width, each side rounded
    assert area.min() >= 0.05 - 0.01 and area.max() <= 0.3 + 0.01
    assert ((bh + 0.5) / (bw - 0.5) >= 0.5).all() and ((bh - 0.5) / (bw + 0.5) <= 2.0).all()
    assert abs(float((ratio > 1).float().mean()) - 0.5) < 0.05  # log-uniform ratio
    never_fits = A.RandomErasing(p=1.0, scale=(1.0, 1.0)).sample(_draw(50).at(6), h, w)["erase_box"]
    assert not never_fits.any()  # a full-area box never fits strictly inside: nothing erased
    assert not A.RandomErasing(p=0.0).sample(_draw(50), h, w)["erase_box"].any()


@pytest.mark.exactness
def test_an_erasing_pipeline_is_bit_identical_in_any_batch():
    aug = ViewAugment([A.RandomResizedCrop(20), A.RandomHorizontalFlip(), A.RandomErasing(p=0.6, value=0.3)])
    x = counter_ops.uniform(2 * 70, 3 * 24 * 24, 11, 0, domain=counter_ops.DOMAIN_DATA).view(2, 70, 3, 24, 24)
    full = aug(x, seed=1, step=2, sample_offset=100)
    for ids in ([7], [69, 3, 41], list(range(64, 1, -3))):
        assert torch.equal(aug(x[:, ids], seed=1, step=2, sample_ids=[100 + i for i in ids]), full[:, ids])


# --- bad settings and inputs of the ops --------------------------------------------------------

@pytest.mark.parametrize("make, field", [
    (lambda: A.RandomResizedCrop(0), "size"),
    (lambda: A.RandomResizedCrop(8, scale=(0.5, 1.5)), "scale"),
    (lambda: A.RandomResizedCrop(8, ratio=(0.0, 1.0)), "ratio"),
    (lambda: A.RandomResizedCrop(8, antialias="yes"), "antialias"),
    (lambda: A.RandomHorizontalFlip(1.5), "p"),
    (lambda: A.ColorJitter(brightness=-0.1), "brightness"),
    (lambda: A.ColorJitter(hue=0.6), "hue"),
    (lambda: A.ColorJitter(p=float("nan")), "p"),
    (lambda: A.RandomGrayscale(-1), "p"),
    (lambda: A.GaussianBlur(4), "kernel_size"),
    (lambda: A.GaussianBlur(3, sigma=(0.0, 1.0)), "sigma"),
    (lambda: A.RandomSolarize(float("inf")), "threshold"),
    (lambda: A.Normalize((0.5,), (0.0,)), "std"),
    (lambda: A.Normalize((0.5, 0.5), (1.0,)), "mean and std"),
    (lambda: A.Normalize([], []), "mean"),
    (lambda: A.RandomErasing(p=1.5), "p"),
    (lambda: A.RandomErasing(scale=(-0.1, 0.5)), "scale"),
    (lambda: A.RandomErasing(scale=(0.5, 0.2)), "scale"),
    (lambda: A.RandomErasing(ratio=(0.0, 2.0)), "ratio"),
    (lambda: A.RandomErasing(value="random"), "value"),
    (lambda: A.RandomErasing(value=()), "value"),
    (lambda: A.RandomErasing(value=(0.1, float("nan"))), "value"),
])
def test_bad_op_settings_name_the_setting(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_bad_op_inputs_raise_clear_errors():
    x = _images(n=2, h=8, w=8)
    with pytest.raises(ValueError, match="value must have 1 or 3 numbers"):
        A.RandomErasing(value=(0.1, 0.2)).apply(x, {"erase_box": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match=r"params\.erase_box must have shape \[2, 4\]"):
        A.RandomErasing().apply(x, {"erase_box": torch.zeros(3, 4)})
    with pytest.raises(ValueError, match=r"params\.flip must have shape \[2\], got NoneType"):
        A.RandomHorizontalFlip().apply(x, {})
    with pytest.raises(ValueError, match="params must be a dict"):
        A.RandomHorizontalFlip().apply(x, [torch.zeros(2, dtype=torch.bool)])
    with pytest.raises(ValueError, match="images must be floating point"):
        A.RandomErasing().apply(x.to(torch.uint8), {"erase_box": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="normalize mean/std must have 3 values"):
        A.Normalize((0.5,), (0.5,)).apply(x, {})
    with pytest.raises(ValueError, match="box must have shape"):
        A.ops.erasing.erase(x, torch.zeros(2, 3))

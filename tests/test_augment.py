"""Batched view augmentations: parameter ranges, identity, replay, known answers, bad inputs."""

import json

import pytest
import torch

from mlvgm_data import augment as A
from mlvgm_data.augment import AugmentConfig, ViewAugment


def _images(v=2, b=6, c=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(v, b, c, h, w, generator=g)


def _identity(size=32, **kw):
    return AugmentConfig(size, crop_scale=None, flip_p=0.0, **kw)


# --- parameter sampling ---------------------------------------------------------------------

def test_crop_boxes_respect_scale_ratio_and_bounds():
    aug = ViewAugment(AugmentConfig(32, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3)))
    wide = aug.sample_params((1, 4000, 3, 1000, 800), seed=1, step=2)["box"][0]
    top, left, h, w = wide.unbind(1)
    assert torch.equal(wide, wide.round())
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 1000).all() and (left + w <= 800).all()
    top, left, h, w = aug.sample_params((1, 4000, 3, 1000, 1000), seed=1, step=2)["box"][0].unbind(1)
    area = h * w / 1000**2
    assert area.min() >= 0.08 - 0.002 and area.max() <= 1.0
    ratio = w / h
    assert ratio.min() >= 0.75 - 0.01 and ratio.max() <= 4 / 3 + 0.01
    # log-uniform ratio: about half the boxes are wider than tall
    assert abs(float((ratio > 1).float().mean()) - 0.5) < 0.05
    # torchvision's get_params (10 tries, rejection near scale 1) has mean area 0.478 at 1000x1000
    assert float(area.mean()) == pytest.approx(0.478, abs=0.015)


def test_crop_falls_back_to_centre_crop_when_no_try_fits():
    aug = ViewAugment(AugmentConfig(8, crop_scale=(1.0, 1.0), crop_ratio=(2.0, 3.0)))
    p = aug.sample_params((1, 5, 3, 20, 20), seed=0, step=0)
    # a 2:1..3:1 box of the full area never fits a square; torchvision's fallback: width 20, height 10
    assert p["box"][0].tolist() == [[5.0, 0.0, 10.0, 20.0]] * 5


def test_jitter_blur_probabilities_and_ranges():
    aug = A.simclr(32)
    p = aug.sample_params((1, 8000, 3, 32, 32), seed=3, step=0)
    f = p["jitter_factors"][0]
    on = p["jitter"][0]
    assert abs(float(on.float().mean()) - 0.8) < 0.02
    assert abs(float(p["flip"].float().mean()) - 0.5) < 0.02
    assert abs(float(p["grayscale"].float().mean()) - 0.2) < 0.02
    assert abs(float(p["blur"].float().mean()) - 0.5) < 0.02
    assert not any("solarize" in op for op in p.ops)  # SimCLR has no solarize op
    assert torch.equal(f[~on], torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(int((~on).sum()), 4))
    for i, (lo, hi) in enumerate([(0.2, 1.8), (0.2, 1.8), (0.2, 1.8), (-0.2, 0.2)]):
        assert f[on, i].min() >= lo and f[on, i].max() <= hi
        assert f[on, i].min() < lo + 0.01 and f[on, i].max() > hi - 0.01
    assert p["blur_sigma"].min() >= 0.1 and p["blur_sigma"].max() <= 2.0
    # brightness 1.0 clips the lower end at 0 (torchvision's max(0, 1 - b))
    q = ViewAugment(AugmentConfig(8, jitter=(1.5, 0, 0, 0), jitter_p=1.0)).sample_params((1, 500, 3, 8, 8), 0, 0)
    assert q["jitter_factors"][0, :, 0].min() >= 0.0 and q["jitter_factors"][0, :, 1:3].eq(1).all()


def test_byol_views_are_asymmetric():
    aug = A.byol(32)
    p = aug.sample_params((2, 8000, 3, 32, 32), seed=0, step=5)
    assert p["blur"][0].all()
    assert abs(float(p["blur"][1].float().mean()) - 0.1) < 0.015
    assert not p["solarize"][0].any()
    assert abs(float(p["solarize"][1].float().mean()) - 0.2) < 0.02
    f = p["jitter_factors"][:, p["jitter"][0] & p["jitter"][1]]
    assert f[..., 2].min() >= 0.8 and f[..., 2].max() <= 1.2 and f[..., 3].abs().max() <= 0.1
    assert aug.pipeline(3) is aug.pipeline(1)  # later views alternate


def test_presets_parameters():
    s = A.simclr(32)
    assert len(s.views) == 1
    c = s.config(0)
    assert (c.crop_scale, c.jitter, c.jitter_p, c.grayscale_p, c.blur_p, c.blur_sigma, c.flip_p) == (
        (0.08, 1.0), (0.8, 0.8, 0.8, 0.2), 0.8, 0.2, 0.5, (0.1, 2.0), 0.5)
    b = A.byol(64)
    assert [b.config(v).blur_p for v in (0, 1)] == [1.0, 0.1] and [b.config(v).solarize_p for v in (0, 1)] == [0.0, 0.2]
    assert b.config(0).jitter == (0.4, 0.4, 0.2, 0.1) and b.config(0).blur_kernel == 7
    c = A.crop_flip(32).config(0)
    assert c.crop_scale == (0.2, 1.0) and not c.jitter_enabled and c.blur_p == 0 and c.grayscale_p == 0
    assert [type(op).__name__ for op in A.crop_flip(32).views[0].ops] == ["RandomResizedCrop", "RandomHorizontalFlip"]
    assert A.preset("simclr", 16, A.IMAGENET_NORMALIZE).config(0).normalize == A.IMAGENET_NORMALIZE
    f = A.fashion(32).config(0)
    assert f.crop_scale == (0.3, 1.0) and f.jitter == (0.4, 0.4, 0.0, 0.0) and f.jitter_p == 0.8 and f.blur_p == 0
    assert sorted(A.PRESETS) == ["byol", "crop_flip", "fashion", "simclr"]
    assert s.config(0).normalize is None  # outputs stay in [0, 1] unless asked


def test_default_blur_kernel():
    assert [A.default_blur_kernel(s) for s in (8, 32, 64, 96, 224)] == [3, 3, 7, 9, 23]


# --- replay and independence ----------------------------------------------------------------

def test_same_counter_replays_and_other_counters_differ():
    aug = A.simclr(16)
    x = _images(h=16, w=16)
    y = aug(x, seed=7, step=3)
    assert torch.equal(y, aug(x, seed=7, step=3))
    assert torch.equal(y, aug.apply(x, aug.sample_params(x.shape, 7, 3)))
    for other in (dict(seed=7, step=4), dict(seed=8, step=3), dict(seed=7, step=3, stream=1)):
        assert not torch.equal(y, aug(x, **other))


def test_views_draw_independently():
    aug = A.simclr(16)
    x = _images(v=1, b=8, h=16, w=16).expand(2, 8, 3, 16, 16)
    p = aug.sample_params(x.shape, 0, 0)
    assert not torch.equal(p["box"][0], p["box"][1])
    y = aug.apply(x, p)
    assert not torch.equal(y[0], y[1])
    # view 0's parameters do not depend on how many views are drawn
    p1 = aug.sample_params((1, 8, 3, 16, 16), 0, 0)
    assert torch.equal(p1["box"][0], p["box"][0]) and torch.equal(p1["jitter_factors"][0], p["jitter_factors"][0])


def _philox_images(v: int, b: int, c: int, h: int, w: int) -> torch.Tensor:
    """Images from the counter streams (bit-exact on every machine, unlike torch.rand)."""
    from mlvgm_data import ops

    return ops.uniform(v * b, c * h * w, 11, 0, domain=ops.DOMAIN_DATA).view(v, b, c, h, w)


@pytest.mark.exactness
@pytest.mark.parametrize("preset", ["simclr", "byol", "crop_flip"])
@pytest.mark.parametrize("channels, in_size, size", [(3, 16, 16), (1, 28, 32), (3, 40, 24)])
def test_a_sample_is_bit_identical_in_any_batch(preset, channels, in_size, size):
    """By construction (elementwise kernels, own exp/cos/log): a sample's views do not depend on
    what else is in its batch, on its position, on the batch size or on the thread count."""
    aug = A.preset(preset, size)
    b = 70  # long enough for vector bodies, tails and ATen's parallel split
    x = _philox_images(2, b, channels, in_size, in_size)
    full = aug(x, seed=1, step=2, sample_offset=100)
    for ids in ([7], [69, 3, 41], list(range(64, 1, -3))):
        part = aug(x[:, ids], seed=1, step=2, sample_ids=[100 + i for i in ids])
        assert torch.equal(part, full[:, ids])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(aug(x, seed=1, step=2, sample_offset=100), full)
    finally:
        torch.set_num_threads(before)
    p = aug.sample_params((2, 3, channels, in_size, in_size), 1, 2, sample_ids=torch.tensor([107, 102, 109]))
    q = aug.sample_params((2, b, channels, in_size, in_size), 1, 2, sample_offset=100)
    for mine, theirs in zip(p.ops, q.ops):  # every parameter of every op
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k][:, [7, 2, 9]]) for k in mine)


# The bits of the presets' output for fixed counter-stream input, on any CPU capability: `make
# test` runs this under ATEN_CPU_CAPABILITY=default/avx2/avx512 and MKL_ENABLE_INSTRUCTIONS=
# AVX2/AVX512, so a kernel that takes another path per CPU turns it red.
GOLDEN = {
    "simclr": "878de6e039ae9e304dfa69ef5b6eae1b",
    "byol": "e40797a24fe460f3eb3077bec35efba8",
    "crop_flip": "3b605cbce95a0c38e62d9f332f9a5738",
}


def _digest(preset: str) -> str:
    import hashlib

    aug = A.preset(preset, 24)
    out = torch.cat([aug(_philox_images(2, 37, 3, 32, 32), seed=5, step=9).flatten(),
                     aug(_philox_images(2, 37, 1, 20, 20), seed=5, step=9).flatten()])
    return hashlib.sha256(out.numpy().tobytes()).hexdigest()[:32]


@pytest.mark.exactness
@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_presets_give_the_same_bits_on_every_cpu_path(preset):
    assert _digest(preset) == GOLDEN[preset]


# --- identity when disabled -----------------------------------------------------------------

def test_identity_when_everything_is_disabled():
    x = _images(h=32, w=32)
    disabled = _identity(jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)
    assert torch.equal(ViewAugment(disabled)(x, 0, 0), x)
    full_crop = AugmentConfig(32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0,
                              jitter=(0.0, 0.0, 0.0, 0.0), jitter_p=1.0, normalize=((0.0,) * 3, (1.0,) * 3))
    assert torch.equal(ViewAugment(full_crop)(x, 3, 4), x)


def test_unselected_samples_pass_through_the_whole_pipeline():
    x = _images(v=1, b=64, h=16, w=16)
    cfg = AugmentConfig(16, crop_scale=None, flip_p=0.0, jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.5,
                        grayscale_p=0.5, blur_p=0.5, solarize_p=0.5)
    aug = ViewAugment(cfg)
    p = aug.sample_params(x.shape, 0, 0)
    y = aug.apply(x, p)
    untouched = ~(p["jitter"] | p["grayscale"] | p["blur"] | p["solarize"])[0]
    assert untouched.any() and (~untouched).any()
    assert torch.equal(y[0, untouched], x[0, untouched])
    assert not torch.equal(y[0, ~untouched], x[0, ~untouched])


# --- known answers --------------------------------------------------------------------------

def test_solarize_thresholds_from_configs():
    x = _images(h=16, w=16)
    ref = lambda t, v: torch.where(x[v] >= t, 1 - x[v], x[v])  # noqa: E731
    y = ViewAugment([_identity(16, solarize_p=1.0, solarize_threshold=0.3), _identity(16, solarize_p=1.0)])(x, 0, 0)
    assert torch.equal(y[0], ref(0.3, 0)) and torch.equal(y[1], ref(0.5, 1))
    y = ViewAugment(_identity(16, solarize_p=1.0, solarize_threshold=0.7))(x, 0, 0)
    assert torch.equal(y[0], ref(0.7, 0)) and torch.equal(y[1], ref(0.7, 1))


def test_single_channel_images_get_brightness_and_contrast_only():
    x = _images(v=1, b=2, c=1, h=8, w=8)[0]
    y = A.color_jitter(x, torch.tensor([[0.5, 1.0, 0.0, 0.3], [1.0, 1.0, 0.0, 0.3]]))
    torch.testing.assert_close(y[0], x[0] * 0.5)
    assert torch.equal(y[1], x[1])
    out = A.simclr(8)(_images(v=2, b=3, c=1, h=12, w=12), 0, 0)
    assert out.shape == (2, 3, 1, 8, 8)


def test_normalize_matches_formula():
    aug = A.crop_flip(16, A.IMAGENET_NORMALIZE)
    x = _images(h=16, w=16)
    y = aug(x, 0, 0)
    raw = A.crop_flip(16)(x, 0, 0)
    mean = torch.tensor(A.IMAGENET_NORMALIZE[0]).view(3, 1, 1)
    std = torch.tensor(A.IMAGENET_NORMALIZE[1]).view(3, 1, 1)
    torch.testing.assert_close(y, (raw - mean) / std)
    per_sample = A.normalize(x[0], torch.zeros(6, 3), torch.full((6, 3), 2.0))
    torch.testing.assert_close(per_sample, x[0] / 2)


def test_outputs_in_range_shape_and_dtype():
    for aug in (A.simclr(24), A.byol(24), A.crop_flip(24)):
        y = aug(_images(v=2, b=8, h=32, w=48).to(torch.float64), 0, 1)
        assert y.shape == (2, 8, 3, 24, 24) and y.dtype == torch.float32
        assert y.min() >= 0 and y.max() <= 1


def test_to_dict_round_trip():
    aug = A.byol(32, A.IMAGENET_NORMALIZE)
    d = aug.to_dict()
    back = ViewAugment.from_dict(json.loads(json.dumps(d)))
    assert back.views == aug.views
    x = _images()
    assert torch.equal(back(x, 1, 1), aug(x, 1, 1))
    assert "ViewAugment" in repr(aug)


# --- bad inputs -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(size=0), "size"),
        (dict(size=-3), "size"),
        (dict(size=2.5), "size"),
        (dict(flip_p=1.5), "flip_p"),
        (dict(jitter_p=-0.1), "jitter_p"),
        (dict(grayscale_p=2), "grayscale_p"),
        (dict(blur_p=float("nan")), "blur_p"),
        (dict(solarize_p=-1), "solarize_p"),
        (dict(crop_scale=(-0.1, 1.0)), "crop_scale"),
        (dict(crop_scale=(0.5, 0.2)), "crop_scale"),
        (dict(crop_scale=(0.0, 1.0)), "crop_scale"),
        (dict(crop_scale=(0.5, 1.5)), "crop_scale"),
        (dict(crop_ratio=(-1.0, 1.0)), "crop_ratio"),
        (dict(crop_ratio=(1.0,)), "crop_ratio"),
        (dict(jitter=(-0.1, 0, 0, 0)), "jitter.brightness"),
        (dict(jitter=(0, 0, 0, 0.6)), "jitter.hue"),
        (dict(jitter=(0.1, 0.1)), "jitter"),
        (dict(blur_sigma=(-1.0, 2.0)), "blur_sigma"),
        (dict(blur_sigma=(0.0, 2.0)), "blur_sigma"),
        (dict(blur_kernel=4), "blur_kernel"),
        (dict(size=2, blur_p=0.5, blur_kernel=5), "blur_kernel"),
        (dict(normalize=((0.5,), (0.0,))), "normalize.std"),
        (dict(normalize=((0.5, 0.5), (1.0,))), "normalize"),
        (dict(normalize=(0.5, 1.0)), "normalize"),
        (dict(antialias=1), "antialias"),
    ],
)
def test_bad_config_names_the_field(kw, field):
    args = dict(size=32) | kw
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        AugmentConfig(**args)


def test_bad_calls_raise_clear_errors():
    aug = A.simclr(16)
    x = _images(h=16, w=16)
    with pytest.raises(ValueError, match="views must be a 5-d tensor"):
        aug(x[0], 0, 0)
    with pytest.raises(ValueError, match="floating point"):
        aug((x * 255).to(torch.uint8), 0, 0)
    with pytest.raises(ValueError, match="views must be a 5-d tensor"):
        aug(x.numpy(), 0, 0)
    with pytest.raises(ValueError, match="seed"):
        aug(x, -1, 0)
    with pytest.raises(ValueError, match="step"):
        aug(x, 0, 2**32)
    with pytest.raises(ValueError, match="stream"):
        aug(x, 0, 0, stream=1.0)
    with pytest.raises(ValueError, match="sample_ids"):
        aug(x, 0, 0, sample_ids=[1, 2])
    with pytest.raises(ValueError, match="shape"):
        aug.sample_params((2, 6, 16, 16), 0, 0)
    with pytest.raises(ValueError, match="params.box"):
        aug.apply(x, aug.sample_params((2, 5, 3, 16, 16), 0, 0))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        aug(_images(c=4, h=16, w=16), 0, 0)
    with pytest.raises(ValueError, match="3 values"):
        A.crop_flip(16, ((0.5,), (0.5,)))(x, 0, 0)
    with pytest.raises(ValueError, match="at most 256 views"):
        aug.sample_params((257, 1, 3, 4, 4), 0, 0)


def test_bad_view_augment_and_functional_inputs():
    with pytest.raises(ValueError, match="views must be an AugmentConfig"):
        ViewAugment([])
    with pytest.raises(ValueError, match="share size"):
        ViewAugment([AugmentConfig(16), AugmentConfig(32)])
    with pytest.raises(ValueError, match="same op types in the same order"):
        ViewAugment([AugmentConfig(32), AugmentConfig(32, normalize=((0.5,), (0.5,)))])
    with pytest.raises(ValueError, match=r"ops\[1\] must be an augmentation op"):
        A.Compose([A.RandomResizedCrop(8), "flip"])
    with pytest.raises(ValueError, match="unknown augment preset"):
        A.preset("moco", 32)
    with pytest.raises(ValueError, match="unknown AugmentConfig fields"):
        AugmentConfig.from_dict({"size": 32, "colour": 1})
    with pytest.raises(ValueError, match="views"):
        ViewAugment.from_dict({"view": []})
    x = _images(v=1, b=2)[0]
    with pytest.raises(ValueError, match="box must have shape"):
        A.resized_crop(x, torch.zeros(3, 4), 8)
    with pytest.raises(ValueError, match="size"):
        A.resized_crop(x, torch.zeros(2, 4), 0)
    with pytest.raises(ValueError, match="factors must have shape"):
        A.color_jitter(x, torch.ones(2, 3))
    with pytest.raises(ValueError, match="kernel_size"):
        A.gaussian_blur(x, torch.ones(2), 4)
    with pytest.raises(ValueError, match="too large"):
        A.gaussian_blur(x[..., :2, :2], torch.ones(2), 5)
    with pytest.raises(ValueError, match="mask must have shape"):
        A.grayscale(x, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="threshold"):
        A.solarize(x, torch.ones(2, dtype=torch.bool), float("inf"))
    with pytest.raises(ValueError, match="std must be > 0"):
        A.normalize(x, [0.0] * 3, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="mean/std must have shape"):
        A.normalize(x, [0.0] * 2, [1.0] * 2)
    with pytest.raises(ValueError, match="images must have non-empty"):
        A.grayscale(x[..., :0], torch.ones(2, dtype=torch.bool))


def test_augment_params_check():
    aug = A.simclr(8)
    p = aug.sample_params((2, 3, 3, 8, 8), 0, 0)
    p.check(aug.views[0].ops, 2, 3)
    assert len(p.ops) == 5 and torch.equal(p["flip"], p.ops[1]["flip"])
    bad = A.AugmentParams((*p.ops[:1], {"flip": p["flip"][:, :2]}, *p.ops[2:]))
    with pytest.raises(ValueError, match=r"params\.flip must have shape \[2, 3\]"):
        bad.check(aug.views[0].ops, 2, 3)
    with pytest.raises(ValueError, match=r"params\.flip must have shape \[2, 3\]"):
        aug.apply(_images(b=3, h=8, w=8), bad)
    with pytest.raises(ValueError, match="holds 4 ops' parameters, the pipeline has 5"):
        aug.apply(_images(b=3, h=8, w=8), A.AugmentParams(p.ops[:4]))
    with pytest.raises(KeyError, match="'erase_box' is a parameter of 0 ops"):
        p["erase_box"]

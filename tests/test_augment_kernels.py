"""The augmentation kernels (mlvgm_data.augment.functional) and the exact math: known answers, identity,
in-place twins."""

import pytest
import torch
import torch.nn.functional as F

from mlvgm_data import augment as A


def _images(v=2, b=6, c=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(v, b, c, h, w, generator=g)


def test_each_op_is_exact_identity_at_identity_parameters():
    x = _images(v=1, b=5)[0]
    n = x.shape[0]
    off = torch.zeros(n, dtype=torch.bool)
    assert torch.equal(A.resized_crop(x, torch.tensor([[0.0, 0.0, 32.0, 32.0]] * n), 32, off), x)
    assert torch.equal(A.color_jitter(x, torch.tensor([[1.0, 1.0, 1.0, 0.0]] * n)), x)
    assert torch.equal(A.grayscale(x, off), x)
    assert torch.equal(A.gaussian_blur(x, torch.ones(n), 3, off), x)
    assert torch.equal(A.solarize(x, off), x)
    assert torch.equal(A.normalize(x, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), x)


def test_flip_equals_torch_flip():
    x = _images(v=1, b=4)[0]
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 4)
    flip = torch.tensor([True, False, True, False])
    y = A.resized_crop(x, box, 32, flip)
    assert torch.equal(y[flip], torch.flip(x[flip], dims=[-1]))
    assert torch.equal(y[~flip], x[~flip])


@pytest.mark.parametrize("size", [48, 20, 7])
def test_crop_matches_slicing_and_interpolate(size):
    x = _images(v=1, b=3, h=40, w=36)[0]
    boxes = torch.tensor([[4.0, 6.0, 24.0, 18.0], [0.0, 0.0, 40.0, 36.0], [13.0, 20.0, 9.0, 16.0]])
    y = A.resized_crop(x, boxes, size)
    for i, (t, left, h, w) in enumerate(boxes.long().tolist()):
        ref = F.interpolate(x[i : i + 1, :, t : t + h, left : left + w], size=(size, size), mode="bilinear",
                            align_corners=False, antialias=True)
        torch.testing.assert_close(y[i : i + 1], ref, atol=2e-5, rtol=0)


def test_crop_without_antialias_matches_plain_bilinear():
    x = _images(v=1, b=1, h=40, w=40)[0]
    y = A.resized_crop(x, torch.tensor([[0.0, 0.0, 40.0, 40.0]]), 10, antialias=False)
    ref = F.interpolate(x, size=(10, 10), mode="bilinear", align_corners=False, antialias=False)
    torch.testing.assert_close(y, ref, atol=2e-5, rtol=0)


def test_grayscale_weights():
    x = _images(v=1, b=2)[0]
    y = A.grayscale(x, torch.tensor([True, False]))
    grey = 0.2989 * x[0, 0] + 0.587 * x[0, 1] + 0.114 * x[0, 2]
    for ch in range(3):
        torch.testing.assert_close(y[0, ch], grey)
    assert torch.equal(y[1], x[1])
    assert torch.equal(A.grayscale(x[:, :1], torch.tensor([True, True])), x[:, :1])


def test_solarize_threshold():
    x = torch.tensor([0.0, 0.25, 0.49, 0.5, 0.75, 1.0]).view(1, 1, 1, 6).expand(2, 3, 1, 6)
    y = A.solarize(x, torch.tensor([True, False]))
    assert torch.equal(y[0, 0, 0], torch.tensor([0.0, 0.25, 0.49, 0.5, 0.25, 0.0]))
    assert torch.equal(y[1], x[1])
    z = A.solarize(x, torch.tensor([True, True]), torch.tensor([0.2, 0.8]))
    assert torch.equal(z[0, 0, 0], torch.tensor([0.0, 0.75, 0.51, 0.5, 0.25, 0.0]))
    assert torch.equal(z[1, 0, 0], torch.tensor([0.0, 0.25, 0.49, 0.5, 0.75, 0.0]))


def test_color_jitter_known_answers():
    x = _images(v=1, b=4, h=8, w=8)[0]
    f = torch.tensor([[0.5, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    y = A.color_jitter(x, f)
    torch.testing.assert_close(y[0], x[0] * 0.5)
    mean_grey = (0.2989 * x[1, 0] + 0.587 * x[1, 1] + 0.114 * x[1, 2]).mean()
    torch.testing.assert_close(y[1], mean_grey.expand(3, 8, 8))
    torch.testing.assert_close(y[2], A.grayscale(x[2:3], torch.tensor([True]))[0])
    torch.testing.assert_close(y[3], x[3], atol=2e-6, rtol=0)  # a full turn of hue


def test_hue_rotation_preserves_luma_and_turns_red_towards_green():
    red = torch.tensor([0.6, 0.4, 0.4]).view(1, 3, 1, 1)
    out = A.color_jitter(red.expand(3, 3, 1, 1), torch.tensor([[1, 1, 1, 0.1], [1, 1, 1, -0.1], [1, 1, 1, 0.5]]))
    assert out[0, 1] > red[0, 1] and out[1, 2] > red[0, 2]  # +: towards green, −: towards blue
    assert out[2, 0] < out[2, 1] and out[2, 0] < out[2, 2]  # half a turn: the complement (cyan)
    luma = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]  # noqa: E731
    torch.testing.assert_close(luma(out[:2]), luma(red).expand(2, 1, 1), atol=1e-5, rtol=0)


def test_gaussian_blur_matches_reflect_padded_convolution():
    x = _images(v=1, b=2, h=12, w=10)[0]
    sigma = torch.tensor([0.7, 1.9])
    y = A.gaussian_blur(x, sigma, 5)
    for i in range(2):
        t = torch.arange(-2, 3, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / sigma[i]) ** 2)
        k = k / k.sum()
        k2 = (k[:, None] * k[None, :]).expand(3, 1, 5, 5)
        ref = F.conv2d(F.pad(x[i : i + 1], (2, 2, 2, 2), mode="reflect"), k2, groups=3)
        torch.testing.assert_close(y[i : i + 1], ref, atol=1e-6, rtol=0)
    const = torch.full((1, 3, 6, 6), 0.3)
    torch.testing.assert_close(A.gaussian_blur(const, torch.tensor([2.0]), 3), const)


def test_exact_math_matches_libm_and_is_exact_where_it_must_be():
    from mlvgm_data.augment import exact

    x = torch.linspace(-30.0, 30.0, 2001, dtype=torch.float64)
    torch.testing.assert_close(exact.exp(x), torch.exp(x), rtol=2e-15, atol=0)
    assert float(exact.exp(torch.tensor([0.0]))[0]) == 1.0 and float(exact.exp(torch.tensor([-1e4]))[0]) < 1e-300
    pos = torch.logspace(-8, 8, 2001, dtype=torch.float64)
    torch.testing.assert_close(exact.log(pos), torch.log(pos), rtol=0, atol=4e-15)
    assert exact.log_scalar(1.0) == 0.0 and abs(exact.log_scalar(4 / 3) - 0.28768207245178085) < 1e-15
    h = torch.linspace(-1.5, 1.5, 3001, dtype=torch.float64)
    cos, sin = exact.cos_sin_turns(h)
    torch.testing.assert_close(cos, torch.cos(2 * torch.pi * h), rtol=0, atol=2e-15)
    torch.testing.assert_close(sin, torch.sin(2 * torch.pi * h), rtol=0, atol=2e-15)
    quarter = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, -0.25], dtype=torch.float64)
    c, s = exact.cos_sin_turns(quarter)
    assert c.tolist() == [1.0, 0.0, -1.0, 0.0, 1.0, 0.0] and s.tolist() == [0.0, 1.0, 0.0, -1.0, 0.0, -1.0]
    v = torch.rand(5, 1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(exact.tree_sum(v), v.sum(-1), rtol=1e-14, atol=0)
    torch.testing.assert_close(exact.ordered_sum(v[:, :7]), v[:, :7].sum(-1), rtol=1e-15, atol=0)


def test_in_place_kernels_equal_the_out_of_place_ones_and_workspaces_are_reused():
    x = _images(v=1, b=5)[0]
    f = torch.tensor([[0.7, 1.3, 0.4, 0.1]] * 5)
    mask = torch.tensor([True, False, True, True, False])
    ws = A.functional.Workspace()
    for _ in range(2):  # the second round reuses the first round's buffers
        assert torch.equal(A.functional.color_jitter_(x.clone(), f, workspace=ws), A.color_jitter(x, f))
        assert torch.equal(A.functional.grayscale_(x.clone(), mask, workspace=ws), A.grayscale(x, mask))
        sigma = torch.linspace(0.2, 2.0, 5)
        assert torch.equal(A.functional.gaussian_blur_(x.clone(), sigma, 5, mask, workspace=ws),
                           A.gaussian_blur(x, sigma, 5, mask))
        assert torch.equal(A.functional.solarize_(x.clone(), mask, 0.3, workspace=ws), A.solarize(x, mask, 0.3))
    grey = ws.get("grey", (5, 1, 32, 32), x)
    assert ws.get("grey", (2, 1, 8, 8), x).data_ptr() == grey.data_ptr()  # smaller requests share it

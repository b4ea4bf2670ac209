"""Fashion-MNIST: the IDX reader, the search order and the dataset, on tiny IDX files the tests
write; the checks on the real files run where they are installed."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from helpers import idx_bytes, write_split

from mlvgm_data.apps.train import data as train_data
from mlvgm_data.data import FashionMNIST, fashion_mnist_tensors, find_fashion_mnist, read_idx
from mlvgm_data.data import fashion_mnist as fm

REAL = all((fm.DEBIAN_PATH / f"{s}.gz").exists() for pair in fm.FILES.values() for s in pair)
real_data = pytest.mark.skipif(not REAL, reason=f"Fashion-MNIST not installed in {fm.DEBIAN_PATH} "
                                                "(apt-get install dataset-fashion-mnist)")


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No $MLVGM_DATA and a Debian path that does not exist: only what a test writes is found."""
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setattr(fm, "DEBIAN_PATH", tmp_path / "debian-absent")


@pytest.mark.parametrize("gz", [True, False])
def test_reads_gzipped_and_raw_idx(tmp_path, no_env, gz):
    images, labels = write_split(tmp_path, gz=gz)
    ds = FashionMNIST(tmp_path)
    assert len(ds) == 5 and ds.root == tmp_path
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == int(labels[3]) and isinstance(y, int)
    assert torch.equal(x[0], torch.from_numpy(images[3]).float() / 255.0)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_batch_and_padding(tmp_path, no_env):
    images, labels = write_split(tmp_path, n=6)
    ds = FashionMNIST(tmp_path, pad_to=32)
    x, y = ds.batch([0, 5, 2])
    assert x.shape == (3, 1, 32, 32) and y.tolist() == labels[[0, 5, 2]].tolist()
    assert torch.equal(x[1, 0, 2:30, 2:30], torch.from_numpy(images[5]).float() / 255.0)
    assert float(x[:, :, :2].abs().sum() + x[:, :, -2:].abs().sum() + x[..., :2].abs().sum()) == 0.0
    assert torch.equal(ds[5][0], x[1])
    whole, all_labels = fashion_mnist_tensors(train=True, root=tmp_path, pad_to=32)
    assert whole.shape == (6, 1, 32, 32) and torch.equal(whole[[0, 5, 2]], x) and len(all_labels) == 6


def test_test_split_is_read_from_t10k_files(tmp_path, no_env):
    write_split(tmp_path, n=4, train=True, seed=1)
    images, _ = write_split(tmp_path, n=3, train=False, seed=2)
    ds = FashionMNIST(tmp_path, train=False)
    assert len(ds) == 3 and torch.equal(ds.images, torch.from_numpy(images))


def test_search_order_root_then_env_then_debian(tmp_path, monkeypatch):
    debian, env, root = tmp_path / "debian", tmp_path / "env", tmp_path / "root"
    write_split(debian, n=2)
    monkeypatch.setattr(fm, "DEBIAN_PATH", debian)
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    assert len(FashionMNIST()) == 2  # nothing else: Debian's path
    write_split(env / "FashionMNIST" / "raw", n=3)  # torchvision's layout under $MLVGM_DATA
    monkeypatch.setenv(fm.ENV_VAR, str(env))
    assert len(FashionMNIST()) == 3
    write_split(env, n=4)  # the folder itself comes before its FashionMNIST/raw
    assert len(FashionMNIST()) == 4
    write_split(root, n=5, gz=False)
    assert len(FashionMNIST(root)) == 5
    assert find_fashion_mnist(root)[0] == root / "train-images-idx3-ubyte"


def test_an_explicit_root_without_the_files_is_an_error_naming_what_was_tried(tmp_path, monkeypatch):
    write_split(tmp_path / "debian", n=2)
    monkeypatch.setattr(fm, "DEBIAN_PATH", tmp_path / "debian")
    with pytest.raises(FileNotFoundError) as err:
        FashionMNIST(tmp_path / "empty")
    text = str(err.value)
    assert str(tmp_path / "empty") in text and str(tmp_path / "empty" / "FashionMNIST" / "raw") in text
    assert "apt-get install dataset-fashion-mnist" in text and "train-images-idx3-ubyte" in text


def test_missing_everywhere_names_env_and_debian(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_PATH", tmp_path / "debian")
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte") as err:
        FashionMNIST(train=False)
    assert str(tmp_path / "env") in str(err.value) and str(tmp_path / "debian") in str(err.value)


def test_labels_file_missing_is_not_found(tmp_path, no_env):
    write_split(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        FashionMNIST(tmp_path)


def test_bad_magic_numbers(tmp_path, no_env):
    write_split(tmp_path, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    labels = tmp_path / "train-labels-idx1-ubyte"
    good_labels = labels.read_bytes()
    labels.write_bytes(images.read_bytes())  # an image file where the labels belong
    with pytest.raises(ValueError, match="magic number 2051 .* label file has 2049"):
        FashionMNIST(tmp_path)
    labels.write_bytes(good_labels)
    images.write_bytes(b"\x89PNG" + images.read_bytes()[4:])
    with pytest.raises(ValueError, match="magic number .* image file has 2051"):
        FashionMNIST(tmp_path)


def test_truncated_files(tmp_path, no_env):
    write_split(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated: .* need"):
        read_idx(path, fm.IMAGES_MAGIC)
    path.write_bytes(data + b"\0")
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(path, fm.IMAGES_MAGIC)
    path.write_bytes(data[:9])
    with pytest.raises(ValueError, match="truncated header"):
        read_idx(path, fm.IMAGES_MAGIC)
    path.write_bytes(b"\0\0")
    with pytest.raises(ValueError, match="too short"):
        read_idx(path, fm.IMAGES_MAGIC)
    gz = tmp_path / "t.gz"
    gz.write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(gz, fm.IMAGES_MAGIC)


def test_wrong_shapes(tmp_path, no_env):
    stems = fm.FILES[True]

    def write(images: np.ndarray, labels: np.ndarray) -> None:
        (tmp_path / stems[0]).write_bytes(idx_bytes(images))
        (tmp_path / stems[1]).write_bytes(idx_bytes(labels))

    write(np.zeros((3, 32, 32)), np.zeros(3))
    with pytest.raises(ValueError, match=r"images of shape \[3, 32, 32\], expected \[N, 28, 28\]"):
        FashionMNIST(tmp_path)
    write(np.zeros((3, 28, 28)), np.zeros(4))
    with pytest.raises(ValueError, match=r"labels of shape \[4\] for 3 images"):
        FashionMNIST(tmp_path)
    write(np.zeros((3, 28, 28)), np.array([0, 10, 1]))
    with pytest.raises(ValueError, match="label 10 is not a class"):
        FashionMNIST(tmp_path)
    write(np.zeros((3, 28, 28)), np.zeros((3, 1)))  # the magic number says how many dimensions
    with pytest.raises(ValueError, match="magic number 2050 where an IDX label file has 2049"):
        FashionMNIST(tmp_path)


def test_bad_arguments(tmp_path, no_env):
    write_split(tmp_path, n=3)
    for bad in (27, 30.0, True):
        with pytest.raises(ValueError, match="pad_to must be None or an int >= 28"):
            FashionMNIST(tmp_path, pad_to=bad)
    ds = FashionMNIST(tmp_path)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds.batch([0, 3])


def test_training_source_pads_is_unconditional_by_default_and_can_give_rgb(tmp_path, monkeypatch):
    images, labels = write_split(tmp_path, n=7)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path))
    grey = train_data.image_source("fashion-mnist", 32, seed=0, channels=None)
    assert grey.length == 7 and grey.channels == 1 and grey.num_classes == 10 and not grey.conditional_default
    x = grey.batch(torch.tensor([4, 1]))
    assert x.shape == (2, 1, 32, 32)
    rgb = train_data.image_source("fashion-mnist", 32, seed=0)  # what an RGB-only trainer asks for
    x3, y3 = rgb.labelled_batch(torch.tensor([4, 1]))
    assert x3.shape == (2, 3, 32, 32) and torch.equal(x3[:, 1:2], x) and y3.tolist() == labels[[4, 1]].tolist()
    grey = train_data.image_source("fashion-mnist", 28, 0, channels=None)
    assert grey.batch(torch.tensor([0])).shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="use --resolution 32"):
        train_data.image_source("fashion-mnist", 64, 0)
    with pytest.raises(ValueError, match="channels must be 3 or None"):
        train_data.image_source("fashion-mnist", 32, 0, channels=1)


def test_real_images_reads_the_test_split(tmp_path, monkeypatch):
    write_split(tmp_path, n=4, train=True, seed=1)
    images, labels = write_split(tmp_path, n=3, train=False, seed=2)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path))
    held, held_labels = train_data.real_images("fashion-mnist", 32, train=False, n=2)
    assert held.shape == (2, 1, 32, 32) and held_labels.tolist() == labels[:2].tolist()
    assert torch.equal(held[0, 0, 2:30, 2:30], torch.from_numpy(images[0]).float() / 255.0)
    assert len(train_data.real_images("fashion-mnist", 28, train=True)[0]) == 4


@real_data
def test_the_installed_files(monkeypatch):
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    train, test = FashionMNIST(), FashionMNIST(train=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.labels.bincount().tolist() == [6000] * 10 and test.labels.bincount().tolist() == [1000] * 10
    x, y = test[0]
    assert x.shape == (1, 28, 28) and y == 9  # the first test image is an ankle boot
    assert 0.28 < float(train.images.float().mean() / 255) < 0.29

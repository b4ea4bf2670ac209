"""Silent misuse turned into clear behaviour (issue: the public contract on the models users bring)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

import mlvgm_data as m
from mlvgm_data.generators import CallableGenerator, StyleGANAdapter


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3 * 4 * 4)
        self.norm = nn.BatchNorm1d(3 * 4 * 4)

    def forward(self, latents: dict) -> torch.Tensor:
        return torch.sigmoid(self.norm(self.lin(latents["a"]))).view(-1, 3, 4, 4)


SPEC = m.LatentSpec([m.LatentGroup("a", (4,))])


def test_an_adapter_around_a_model_in_eval_mode_is_not_warned_about() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter = CallableGenerator(_Net().eval(), SPEC, image_shape=(3, 4, 4))
        assert not any(mod.training for mod in adapter.modules())
        m.ViewPairPipe(adapter, m.ViewPolicy({}), 2)


def test_an_adapter_around_a_model_in_train_mode_is_still_put_in_eval_mode_with_a_warning() -> None:
    adapter = CallableGenerator(_Net(), SPEC, image_shape=(3, 4, 4))
    with pytest.warns(UserWarning, match="eval mode"):
        m.ViewPairPipe(adapter, m.ViewPolicy({}), 2)
    assert not any(mod.training for mod in adapter.modules())


class _NVlabsLike(nn.Module):
    """The attributes StyleGANAdapter reads from an NVlabs generator."""

    z_dim, w_dim, num_ws, c_dim, img_resolution, img_channels = 4, 4, 4, 0, 4, 3

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("w_avg", torch.zeros(4))

    def mapping(self, z: torch.Tensor, c: object, truncation_psi: float = 1, truncation_cutoff: object = None):
        return self.lin(z)[:, None].expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return ws.mean(1)[:, :3, None, None].expand(-1, 3, 4, 4)


def test_the_stylegan_adapter_takes_the_wrapped_models_mode() -> None:
    adapter = StyleGANAdapter(_NVlabsLike().eval())
    assert not any(mod.training for mod in adapter.modules())
    assert StyleGANAdapter(_NVlabsLike()).training


# --- DataLoader with automatic batching --------------------------------------------------------

def _pipe(**kw) -> m.ViewPairPipe:
    from helpers import TinyGenerator

    return m.ViewPairPipe(TinyGenerator(), m.ViewPolicy({"top": m.Perturb(0.2)}), 2, steps=3, **kw)


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_with_automatic_batching_is_refused_not_stacked(workers: int) -> None:
    from torch.utils.data import DataLoader

    with pytest.raises(ValueError, match="batch_size=None"):
        next(iter(DataLoader(_pipe(), num_workers=workers)))
    batch = next(iter(DataLoader(_pipe(), batch_size=None, num_workers=workers)))
    assert batch[0][0].shape == (2, 3, 16, 16)


def test_stateful_dataloader_with_automatic_batching_is_refused() -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    with pytest.raises(ValueError, match="batch_size=None"):
        next(iter(StatefulDataLoader(_pipe(), batch_size=4)))


# --- where a recommended policy comes from ------------------------------------------------------

def _store_policy(path, samples: int, steps: int, policy: m.ViewPolicy) -> None:
    import json

    from mlvgm_data.generators.registry import POLICY_FORMAT

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": POLICY_FORMAT, "generator": "builtin:shapes", "policy": policy.to_dict(),
                                "source": {"command": f"mlvgm-data mi builtin:shapes --samples {samples} --steps "
                                                      f"{steps}"}}))


def test_a_user_policy_overriding_a_shipped_one_is_announced_once_with_path_and_budget(tmp_path, monkeypatch) -> None:
    from mlvgm_data.generators import policy_source
    from mlvgm_data.generators.registry import user_policy_path

    monkeypatch.setenv("MLVGM_CONFIG", str(tmp_path))
    shipped = policy_source("builtin:shapes")
    assert shipped.kind == "shipped" and shipped.path.name == "shapes_hvae.json"
    assert (shipped.samples, shipped.steps) == (2048, 300)
    mine = m.ViewPolicy({"z1": m.Perturb(0.5)})
    _store_policy(user_policy_path("builtin:shapes"), 256, 20, mine)
    with pytest.warns(UserWarning, match=r"shapes\.json \(measured with 256 samples, 20 critic steps\)"):
        assert m.recommended_policy("builtin:shapes") == mine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m.recommended_policy("builtin:shapes") == mine  # once per file
    source = policy_source("builtin:shapes")
    assert source.kind == "user" and source.overrides == shipped.path


def test_recommended_policy_of_a_model_in_memory_says_how_to_get_one() -> None:
    with pytest.raises(TypeError, match="recommended_policy takes a generator's name.*mi.analyze"):
        m.recommended_policy(m.load_generator("builtin:shapes"))


def test_a_factory_without_a_stored_policy_says_how_to_measure_one(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLVGM_CONFIG", str(tmp_path))
    with pytest.raises(ValueError, match="mlvgm-data mi helpers:TinyGenerator --save-policy"):
        m.recommended_policy("helpers:TinyGenerator")


def test_save_policy_refuses_to_shadow_a_larger_budget_unless_forced(tmp_path, monkeypatch, capsys) -> None:
    from mlvgm_data.apps.cli import main
    from mlvgm_data.generators.registry import user_policy_path

    monkeypatch.setenv("MLVGM_CONFIG", str(tmp_path))
    args = ["mi", "builtin:shapes", "--samples", "128", "--steps", "2", "--groups", "z1", "--no-progress",
            "--save-policy"]
    assert main(args) == 2
    assert "measured with 2048 samples and 300 critic steps" in capsys.readouterr().err
    assert not user_policy_path("builtin:shapes").exists()
    _store_policy(user_policy_path("builtin:shapes"), 4096, 300, m.ViewPolicy({}))
    assert main(args) == 2
    assert f"the policy in {user_policy_path('builtin:shapes')}, measured with 4096" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    stored = json.loads(user_policy_path("builtin:shapes").read_text())["source"]
    assert (stored["samples"], stored["steps"]) == (128, 2)


# --- weights: checksum and finiteness -----------------------------------------------------------

@pytest.fixture
def saved_generator(tmp_path):
    from mlvgm_data.generators import save_generator
    from mlvgm_data.models.hvae import HierarchicalVAE

    torch.manual_seed(0)
    config = {"channels": [8, 8, 8], "blocks": [1, 0, 0], "enc_channels": [4, 4, 8, 8],
              "groups": [["z1", 4, 1], ["z2", 2, 4]]}
    model = HierarchicalVAE(config).eval()
    save_generator(model, tmp_path / "gen", "hvae", model.config)
    return model, tmp_path / "gen"


def test_a_weight_file_changed_in_the_middle_is_refused_naming_it(saved_generator) -> None:
    _, stem = saved_generator
    pt = stem.with_suffix(".pt")
    assert len(json.loads(stem.with_suffix(".json").read_text())["weights_sha256"]) == 64
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the tensor data
    pt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{pt}.*does not match the sha256"):
        m.load_generator(stem)


def test_non_finite_weights_are_refused_at_load(saved_generator) -> None:
    from mlvgm_data.generators import save_generator

    model, stem = saved_generator
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_generator(model, stem, "hvae", model.config)
    with pytest.raises(ValueError, match="NaN or infinite"):
        m.load_generator(stem)


@pytest.mark.parametrize("name", ["builtin:shapes", "builtin:fashion", "builtin:shapes-stylegan"])
def test_every_shipped_generator_records_the_checksum_of_its_weights(name: str) -> None:
    from mlvgm_data.generators.registry import file_sha256, generator_files

    weights, config = generator_files(name)
    assert json.loads(config.read_text())["weights_sha256"] == file_sha256(weights)


# --- states of parameter-free generators --------------------------------------------------------

def _brighter(latents: dict) -> torch.Tensor:
    return torch.sigmoid(latents["a"])[:, :3, None, None].expand(-1, 3, 4, 4)


def _darker(latents: dict) -> torch.Tensor:
    return torch.sigmoid(latents["a"] - 1)[:, :3, None, None].expand(-1, 3, 4, 4)


def test_a_state_of_one_parameter_free_generator_is_refused_by_another() -> None:
    first = m.ViewPairPipe(CallableGenerator(_brighter, SPEC, image_shape=(3, 4, 4)), m.ViewPolicy({}), 2)
    same = m.ViewPairPipe(CallableGenerator(_brighter, SPEC, image_shape=(3, 4, 4)), m.ViewPolicy({}), 2)
    other = m.ViewPairPipe(CallableGenerator(_darker, SPEC, image_shape=(3, 4, 4)), m.ViewPolicy({}), 2)
    state = first.state_dict()
    same.load_state_dict(state)
    with pytest.raises(ValueError, match="another generator"):
        other.load_state_dict(state)


# --- Ctrl-C while the pipe closes -----------------------------------------------------------------

CTRL_C = """
import gc, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if our parent ignores it
sys.path.insert(0, {tests!r})
from helpers import TinyGenerator
import mlvgm_data as m
from mlvgm_data.producers import ThreadProducer

# close() waits longer than the timer below can be late on a loaded machine: the Ctrl-C comes while
# close() waits, whatever the load (with the default 1 s, close() could give up first).
ThreadProducer.JOIN_S = 100

class Slow(TinyGenerator):
    def _decode(self, latents, classes):
        time.sleep(100)
        return super()._decode(latents, classes)

pipe = m.ViewPairPipe(Slow(), m.ViewPolicy({{}}), 2, prefetch=2)
it = iter(pipe)
it._producer._thread.join(0.2)  # the producer is now inside its first (100 s) step
# One Ctrl-C, delivered to the main thread as the terminal's would be handled there.
threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
try:
    {how}
    print("closed")
    time.sleep(100)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.parametrize("how, printed", [("it.close()", "interrupted"), ("pipe.close()", "interrupted"),
                                          ("del it; gc.collect()", "closed interrupted")])
def test_one_ctrl_c_while_closing_is_enough(how: str, printed: str) -> None:
    """An explicit close() waits for the step in progress and the Ctrl-C leaves it; garbage
    collection does not wait (an exception inside __del__ would be swallowed), so the Ctrl-C
    reaches whatever runs next."""
    import subprocess
    import sys
    from pathlib import Path

    code = CTRL_C.format(tests=str(Path(__file__).parent), how=how)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == printed.split(), out.stdout + out.stderr


class _DictNet(nn.Module):
    def __init__(self, lin: nn.Module) -> None:
        super().__init__()
        self.lin = lin

    def forward(self, latents: dict) -> torch.Tensor:
        return torch.sigmoid(self.lin(latents["a"])).view(-1, 3, 4, 4)


@pytest.mark.parametrize("where", ["lazy", "meta"])
def test_a_generator_without_materialised_weights_is_refused_at_the_call(where: str) -> None:
    if where == "lazy":
        lin = nn.LazyLinear(48)
    else:
        with torch.device("meta"):
            lin = nn.Linear(4, 48)
    gen = CallableGenerator(_DictNet(lin), SPEC, image_shape=(3, 4, 4))
    with pytest.raises(ValueError, match="'model.lin.weight' is not materialised"):
        m.ViewPairPipe(gen, m.ViewPolicy({}), 2)
    with pytest.raises(ValueError, match="not materialised"):
        m.GeneratedViews(gen, m.ViewPolicy({}), 4)


# --- module:factory, for generators (the CLI) and judges ---------------------------------------------

FACTORIES = "def make():\n    return 3\nNOT_CALLABLE = 4\n"


@pytest.mark.parametrize("spec, match", [
    ("no_such_module_here:make", "cannot import module 'no_such_module_here'"),
    ("user_factories:missing", "module 'user_factories' has no attribute 'missing'"),
    ("user_factories:NOT_CALLABLE", "NOT_CALLABLE is not callable .*returns the thing"),
])
def test_a_bad_module_factory_is_named_with_what_it_was_for(spec, match, tmp_path, monkeypatch) -> None:
    from mlvgm_data.generators.registry import call_factory

    (tmp_path / "user_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert call_factory("user_factories:make", "thing", "the thing") == 3
    with pytest.raises(ValueError, match=f"^thing {spec!r}: {match}"):
        call_factory(spec, "thing", "the thing")


def test_the_cli_and_the_judges_use_the_one_factory_loader(tmp_path, monkeypatch) -> None:
    from mlvgm_data.apps.commands.common import open_generator
    from mlvgm_data.mi.judges import load_judge

    (tmp_path / "user_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="^generator 'user_factories:missing': module 'user_factories' has no"):
        open_generator("user_factories:missing")
    with pytest.raises(ValueError, match="^judge 'user_factories:NOT_CALLABLE': NOT_CALLABLE is not callable"):
        load_judge("user_factories:NOT_CALLABLE")
    with pytest.raises(ValueError, match="returned int"):  # a factory that returns no generator
        open_generator("user_factories:make")

"""The pipe and the datasets in the setups users write: DataLoader workers over epochs (persistent
or not), a peek before the DataLoader, StatefulDataLoader resume, solo-learn's index format,
one-argument generators, train-mode generators, close(), and self-checking resume states."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import (
    BatchNormGenerator,
    CountingGenerator,
    OneArgGenerator,
    PointwiseGenerator,
    TinyGenerator,
    producer_threads,
    producer_threads_after_gc,
)
from torch.utils.data import DataLoader

from mlvgm_data import GeneratedViews, Perturb, Resample, ViewPolicy
from mlvgm_data.augment import simclr
from mlvgm_data.pipe import ViewPairPipe
from mlvgm_data.step import ViewBatch

POLICY = ViewPolicy({"top": Perturb(0.3), "map": Resample()})


def make(**kw) -> ViewPairPipe:
    args = dict(generator=TinyGenerator(), policy=POLICY, batch_size=4, seed=7, augment=simclr(12), steps=6,
                prefetch=1, return_latents=True)
    args.update(kw)
    return ViewPairPipe(**args)


def anchors_of(batch) -> torch.Tensor:
    """Each anchor's latents as one row: what identifies a sample."""
    return torch.cat([z[0].flatten(1) for z in ViewBatch(*batch).latents.values()], 1)


def same(a, b) -> bool:
    a, b = [ViewBatch(*x) for x in a], [ViewBatch(*x) for x in b]
    return len(a) == len(b) and all(
        all(torch.equal(x, y) for x, y in zip(p.views, q.views)) and torch.equal(p.target, q.target)
        for p, q in zip(a, b))


def reference(epochs: int, **kw) -> list[ViewBatch]:
    """Epoch after epoch in the main process: the sequence every other setup must reproduce."""
    pipe = make(**kw)
    return [b for _ in range(epochs) for b in pipe]


# --- epochs under DataLoader workers --------------------------------------------------------------

@pytest.mark.parametrize("persistent", [False, True])
def test_epochs_never_repeat_under_dataloader_workers(persistent: bool) -> None:
    loader = DataLoader(make(), batch_size=None, num_workers=2, persistent_workers=persistent)
    epochs = [list(loader) for _ in range(3)]
    assert [len(e) for e in epochs] == [6, 6, 6]
    rows = torch.cat([anchors_of(b) for e in epochs for b in e])
    assert len({tuple(r.tolist()) for r in rows}) == len(rows) == 3 * 6 * 4  # no anchor twice
    assert same([b for e in epochs for b in e], reference(3))  # the fixed-seed sequence, step by step


def test_a_peek_then_dataloader_workers_continue_with_the_next_step() -> None:
    pipe = make()
    first = next(iter(pipe))
    rest = list(DataLoader(pipe, batch_size=None, num_workers=2))
    assert same([first] + rest, reference(1))
    assert same(list(DataLoader(pipe, batch_size=None, num_workers=2)), reference(2)[6:])


def test_a_new_worker_count_resplits_what_is_left_without_repeats() -> None:
    pipe = make(steps=9)
    taken = []
    it = iter(DataLoader(pipe, batch_size=None, num_workers=3, prefetch_factor=1))
    for _ in range(3):  # every worker made exactly one step
        taken.append(next(it))
    del it
    rest = list(DataLoader(pipe, batch_size=None, num_workers=2))
    ids = torch.cat([anchors_of(b) for b in taken + rest])
    assert len({tuple(r.tolist()) for r in ids}) == len(ids)
    assert len(taken) + len(rest) <= 9 and same(taken, reference(1, steps=9)[:3])


def test_set_epoch_reaches_persistent_workers() -> None:
    pipe = make()
    loader = DataLoader(pipe, batch_size=None, num_workers=2, persistent_workers=True)
    list(loader)
    pipe.set_epoch(5)
    assert same(list(loader), reference(6)[30:])


def test_endless_pipe_under_workers_continues_across_loaders() -> None:
    pipe = make(steps=None)
    first = [b for b, _ in zip(DataLoader(pipe, batch_size=None, num_workers=2), range(4))]
    again = [b for b, _ in zip(DataLoader(pipe, batch_size=None, num_workers=2), range(4))]
    rows = torch.cat([anchors_of(b) for b in first + again])
    assert len({tuple(r.tolist()) for r in rows}) == len(rows)


def test_two_iterators_in_one_process_never_share_steps() -> None:
    pipe = make()
    old = iter(pipe)
    next(old)
    new = iter(pipe)  # takes over: the old one is closed
    with pytest.raises(RuntimeError, match="newer iter"):
        next(old)
    assert same([next(new)], reference(1)[1:2])


# --- GeneratedViews -------------------------------------------------------------------------------

def test_generated_views_fresh_per_epoch_with_persistent_workers() -> None:
    ds = GeneratedViews(TinyGenerator(), POLICY, length=8, seed=3)
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    first = torch.cat([v0 for (v0, _), _ in loader])
    ds.set_epoch(1)
    second = torch.cat([v0 for (v0, _), _ in loader])
    assert not torch.equal(first, second)
    direct = GeneratedViews(TinyGenerator(), POLICY, length=8, seed=3)
    direct.set_epoch(1)
    torch.testing.assert_close(second, torch.stack([direct[i][0][0] for i in range(8)]), rtol=0, atol=1e-5)


class IndexedViews(GeneratedViews):
    """solo-learn's ``dataset_with_index``: ``__getitem__`` prepends the index."""

    def __getitem__(self, index):
        return (index, *super().__getitem__(index))


def test_a_subclass_getitem_is_honoured_by_dataloader_batches() -> None:
    batch = next(iter(DataLoader(IndexedViews(TinyGenerator(), POLICY, length=6), batch_size=3)))
    assert len(batch) == 3 and batch[0].tolist() == [0, 1, 2]


def test_solo_learn_format_natively() -> None:
    ds = GeneratedViews(TinyGenerator(), POLICY, length=6, with_index=True)
    index, views, target = next(iter(DataLoader(ds, batch_size=3)))
    assert index.tolist() == [0, 1, 2] and isinstance(views, list) and len(views) == 2
    assert views[0].shape == (3, 3, 16, 16) and target.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="with_index"):
        GeneratedViews(TinyGenerator(), POLICY, length=6, with_index="yes")


# --- generators ------------------------------------------------------------------------------------

def test_one_argument_decode_generators_work_everywhere(tmp_path) -> None:
    from mlvgm_data.apps.bench import bare_loop
    from mlvgm_data.apps.viz import save_view_grid
    from mlvgm_data.mi import analyze

    gen, policy = OneArgGenerator(), ViewPolicy({"a": Resample()})
    (x0, x1), y = next(iter(ViewPairPipe(gen, policy, batch_size=4, augment="crop_flip")))
    assert x0.shape == (4, 3, 8, 8) and y.tolist() == [-1] * 4
    (v0, v1), t = GeneratedViews(gen, policy, length=3)[1]
    assert v0.shape == (3, 8, 8) and t == -1
    assert save_view_grid(gen, policy, tmp_path / "grid.png", anchors=2, num_views=3).exists()
    assert bare_loop(gen, policy, 4, simclr(8))().shape == (2, 4, 3, 8, 8)
    report = analyze(gen, samples=128, steps=2, batch_size=32, candidates=False, progress=False)
    assert set(report.groups) == {"a", "b"}


def test_train_mode_generators_are_put_in_eval_mode_and_switching_back_is_refused() -> None:
    gen = BatchNormGenerator()
    with pytest.warns(UserWarning, match="put the generator in eval mode"):
        pipe = ViewPairPipe(gen, POLICY, batch_size=4, prefetch=0, steps=2)
    assert not gen.training and not gen.norm.training
    whole = next(iter(pipe)).views[0]
    part = next(iter(ViewPairPipe(gen, POLICY, batch_size=2, prefetch=0, steps=1))).views[0]
    torch.testing.assert_close(part, whole[:2], rtol=0, atol=1e-5)  # no batch statistics: the same samples
    ds = GeneratedViews(gen, POLICY, length=4)
    gen.norm.train()
    with pytest.raises(ValueError, match="'norm' is in train mode"):
        iter(pipe)
    with pytest.raises(ValueError, match="'norm' is in train mode"):
        ds[0]


def test_single_threaded_users_restore_the_callers_mode(tmp_path) -> None:
    from mlvgm_data.apps.viz import view_sets

    gen = BatchNormGenerator()
    view_sets(gen, POLICY, anchors=2, num_views=2)
    assert gen.training and gen.norm.training  # eval while drawing, the caller's mode after


# --- close --------------------------------------------------------------------------------------

def test_close_and_context_manager_close_every_open_iterator() -> None:

    pipe = make(steps=None, prefetch=2)
    it = iter(pipe)
    next(it)
    assert len(producer_threads()) == 1
    pipe.close()
    assert not producer_threads_after_gc()
    with pytest.raises(StopIteration):
        next(it)
    with make(steps=None) as pipe:
        it = iter(pipe)
        next(it)
        assert len(producer_threads()) == 1
    assert not producer_threads_after_gc()


# --- StatefulDataLoader --------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_in_o1(workers: int, caplog) -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    full = reference(2, prefetch=0)
    loader = StatefulDataLoader(make(generator=CountingGenerator(), prefetch=0), batch_size=None, num_workers=workers)
    it = iter(loader)
    taken = [next(it) for _ in range(5)]
    state = loader.state_dict()
    del it, loader
    gen = CountingGenerator()
    resumed = StatefulDataLoader(make(generator=gen, prefetch=0), batch_size=None, num_workers=workers)
    resumed.load_state_dict(state)
    with caplog.at_level(logging.WARNING):
        it = iter(resumed)
        nxt = next(it)
    assert "fast-forward" not in caplog.text
    assert int(gen.decodes) <= workers + 1  # one step per worker started, none replayed
    rest = [nxt] + list(it)
    assert same(taken, full[:5]) and same(rest, full[5:6])
    assert same(list(resumed), full[6:12])  # the next epoch follows, not the same one again


def test_state_saved_at_an_epochs_end_starts_the_next_epoch() -> None:
    pipe = make(prefetch=0)
    list(pipe)
    state = pipe.state_dict()
    other = make(prefetch=0)
    other.load_state_dict(state)
    assert same(list(other), reference(2)[6:])


# --- resume states check themselves ----------------------------------------------------------------

def test_load_state_dict_refuses_other_pipes_naming_the_field() -> None:
    state = make().state_dict()
    for kw, field in [(dict(seed=8), "seed"), (dict(policy=ViewPolicy({})), "policy"),
                      (dict(generator=PointwiseGenerator()), "generator"), (dict(batch_size=5), "batch_size"),
                      (dict(num_views=3), "num_views"), (dict(steps=7), "steps"), (dict(stream=1), "stream"),
                      (dict(rank=1, world_size=2), "rank"), (dict(rank=0, world_size=2), "world_size")]:
        with pytest.raises(ValueError, match=field):
            make(**kw).load_state_dict(state)
    other_weights = TinyGenerator()
    with torch.no_grad():
        other_weights.lin.bias.add_(1.0)
    with pytest.raises(ValueError, match="other weights"):
        make(generator=other_weights).load_state_dict(state)


@pytest.mark.parametrize("change, match", [
    (dict(delivered=7), "delivered"),
    (dict(delivered=-1), "delivered"),
    (dict(epoch_start=3), "multiple of steps"),
    (dict(shard=2, num_shards=2), "shard"),
    (dict(num_shards=0), "num_shards"),
    (dict(base=100), "base"),
    (dict(delivered="3"), "delivered"),
    (dict(num_shards=2, shard=1), "worker's state"),
    (dict(rank=3, world_size=2), "rank"),
])
def test_load_state_dict_refuses_malformed_states(change: dict, match: str) -> None:
    state = {**make().state_dict(), **change}
    with pytest.raises(ValueError, match=match):
        make().load_state_dict(state)


@pytest.mark.parametrize("key", ["seed", "policy", "generator", "delivered", "epoch_start", "rank"])
def test_a_state_missing_a_field_names_it(key: str) -> None:
    state = make().state_dict()
    del state[key]
    with pytest.raises(ValueError, match=f"no '{key}' field"):
        make().load_state_dict(state)


def test_rank_and_world_size_resolve_when_iteration_starts(monkeypatch) -> None:
    from mlvgm_data import pipe_state
    from mlvgm_data.pipe_state import RankWorld

    pipe = make(prefetch=0, steps=1)
    assert pipe.rank == 0 and pipe.world_size == 1
    monkeypatch.setattr(pipe_state, "dist_rank_world", lambda: RankWorld(1, 2))  # init_process_group after construction
    assert pipe.rank == 1 and pipe.state_dict()["rank"] == 1
    got = next(iter(pipe))
    want = next(iter(make(prefetch=0, steps=1, rank=1, world_size=2)))
    assert same([got], [want])


# --- exactness of the pipe's own part ------------------------------------------------------------

@pytest.mark.exactness
def test_ranks_partition_the_global_batch_bit_for_bit() -> None:
    """With a decode that is per sample by construction, rank r's views are exactly rows
    r·B … r·B + B − 1 of the global batch (latents, classes and augmentation are counter-based)."""
    kw = dict(generator=PointwiseGenerator(num_classes=5), policy=ViewPolicy({"top": Perturb(0.3)}),
              augment=simclr(8), steps=2, return_latents=False)
    whole = list(make(batch_size=10, **kw))
    parts = [list(make(batch_size=5, rank=r, world_size=2, **kw)) for r in range(2)]
    for step in range(2):
        assert torch.equal(torch.cat([parts[0][step].target, parts[1][step].target]), whole[step].target)
        for v in range(2):
            assert torch.equal(torch.cat([parts[0][step].views[v], parts[1][step].views[v]]), whole[step].views[v])


def test_spawned_workers_share_the_progress_and_take_the_rank_of_their_process(monkeypatch) -> None:
    import pickle

    from mlvgm_data import pipe_state
    from mlvgm_data.pipe_state import RankWorld

    pipe = make(prefetch=0)
    loader = DataLoader(pipe, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    assert same(list(loader) + list(loader), reference(2, prefetch=0))
    monkeypatch.setattr(pipe_state, "dist_rank_world", lambda: RankWorld(1, 2))
    shipped = pickle.dumps(make())  # what a spawned worker receives, pickled while the group exists
    monkeypatch.setattr(pipe_state, "dist_rank_world", lambda: None)  # the worker has no group
    assert pickle.loads(shipped).rank == 1


# --- shutdown and interrupts ----------------------------------------------------------------------

SCRIPT_HEAD = """
import sys, time, threading
sys.path.insert(0, {tests!r})
import torch
from helpers import TinyGenerator
from mlvgm_data import Resample, ViewPolicy, ViewPairPipe
"""


def _run_script(body: str, tmp_path, **kw):
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "script.py"
    script.write_text(SCRIPT_HEAD.format(tests=str(Path(__file__).parent)) + body)
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_interpreter_exit_with_an_open_iterator_is_clean(tmp_path) -> None:
    proc = _run_script("""
from mlvgm_data import load_generator, recommended_policy
# the shipped generator: its producer is inside a decode when the script ends (it aborted before)
pipe = ViewPairPipe(load_generator("builtin:shapes"), recommended_policy("builtin:shapes"), batch_size=256,
                    augment="simclr", prefetch=3)
it = iter(pipe)
next(it)
print("ready", flush=True)
""", tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "ready" in out and "terminate called" not in err and "Fatal" not in err


def test_ctrl_c_reaches_the_consumer_and_close_returns_while_decode_is_stuck(tmp_path) -> None:
    # The decode never returns, so the consumer can only see the Ctrl-C, and close() can only
    # return, while it is stuck; the watchdog only guards a hang (it fails the test, saying so).
    import signal
    import threading

    proc = _run_script("""
consumer_waits = threading.Event()

def consumer_in_get():
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None and frame.f_code.co_name != "get":
        frame = frame.f_back
    return frame is not None

class Stuck(TinyGenerator):
    def _decode(self, latents, classes):
        if self.calls:
            consumer_waits.wait()
            while not consumer_in_get():  # the Ctrl-C must land inside next(it), not before it
                time.sleep(0.01)
            print("stuck", flush=True)
            threading.Event().wait()  # never returns
        self.calls += 1
        return super()._decode(latents, classes)

gen = Stuck()
gen.calls = 0
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
it = iter(ViewPairPipe(gen, ViewPolicy({}), batch_size=2, prefetch=1))
next(it)
consumer_waits.set()
try:
    next(it)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    it.close()
    stuck = [t for t in threading.enumerate() if t.name == "mlvgm-data-producer" and t.is_alive()]
    print(f"closed {len(stuck)}", flush=True)
""", tmp_path)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout.readline().strip() == "stuck", "the script failed or hung before its decode got stuck"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "interrupted", "Ctrl-C did not reach the consumer (hung)"
        assert proc.stdout.readline().split() == ["closed", "1"], "close() did not return while decode is stuck"
        out, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
    assert "abandoned" in err
    assert proc.returncode == 0, err[-2000:]

"""ViewPairPipe: determinism, exact resume (direct, torchdata.nodes, StatefulDataLoader),
disjoint streams across ranks and workers, producer errors and shutdown."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import warnings

import pytest
import torch
from helpers import BrokenGenerator, TinyGenerator, producer_threads, producer_threads_after_gc
from torch.utils.data import DataLoader

from mlvgm_data import Perturb, Resample, ViewPolicy
from mlvgm_data.augment import simclr
from mlvgm_data.pipe import ViewPairPipe
from mlvgm_data.producers import FORK_GATE, FREE, HELD, READY, SlotRing, ThreadProducer
from mlvgm_data.step import ViewBatch

POLICY = ViewPolicy({"top": Perturb(0.3), "map": Resample()})


def make(**kw) -> ViewPairPipe:
    args = dict(generator=TinyGenerator(), policy=POLICY, batch_size=4, seed=7, augment=simclr(12), steps=12)
    args.update(kw)
    return ViewPairPipe(**args)




def same(a: list[ViewBatch], b: list[ViewBatch]) -> bool:
    return len(a) == len(b) and all(
        all(torch.equal(x, y) for x, y in zip(p.views, q.views)) and torch.equal(p.target, q.target)
        for p, q in zip(a, b)
    )


def test_batch_format_unpacks_like_an_image_dataset() -> None:
    batch = next(iter(make()))
    (x0, x1), y = batch
    assert x0.shape == x1.shape == (4, 3, 12, 12)
    assert y.dtype == torch.int64 and torch.equal(y, torch.full((4,), -1))
    assert not x0.is_inference()  # a training step can save it for backward
    assert float(x0.min()) >= 0 and float(x0.max()) <= 1
    assert not torch.equal(x0, x1)
    assert batch.views == (x0, x1) and batch.latents is None


def test_same_seed_same_batches_across_runs_and_prefetch() -> None:
    runs = [list(make(prefetch=p)) for p in (0, 1, 2, 5)]
    assert len(runs[0]) == 12
    for other in runs[1:]:
        assert same(runs[0], other)
    assert not same(runs[0], list(make(seed=8)))


def test_steps_differ_and_epochs_continue_the_counter() -> None:
    pipe = make(steps=3)
    first, second = list(pipe), list(pipe)
    assert len(first) == len(second) == 3
    assert not torch.equal(first[0].views[0], first[1].views[0])
    # Epoch 2 continues with steps 3..5 instead of repeating steps 0..2.
    assert same(first + second, list(make(steps=6)))
    pipe.set_epoch(0)
    assert same(list(pipe), first)


def test_return_latents_and_view_policy() -> None:
    batch = next(iter(make(return_latents=True, augment=None)))
    views, target, latents = batch
    assert latents["top"].shape == (2, 4, 8) and latents["map"].shape == (2, 4, 4, 4, 4)
    # Without augmentation a view is exactly the generator's image of its latents.
    gen = TinyGenerator()
    assert torch.allclose(views[1], gen.decode({k: z[1] for k, z in latents.items()}), atol=1e-6)
    assert torch.equal(latents["top"][0], latents["top"][0])


def test_class_conditional_targets() -> None:
    batch = next(iter(make(generator=TinyGenerator(num_classes=5), batch_size=64)))
    assert batch.target.min() >= 0 and batch.target.max() < 5
    assert len(batch.target.unique()) > 1


def test_resume_after_seven_batches() -> None:
    full = list(make())
    pipe = make()
    it = iter(pipe)
    taken = [next(it) for _ in range(7)]
    state = pipe.state_dict()  # counts what the consumer received, not the producer's run-ahead
    assert state["delivered"] == 7
    it.close()
    resumed = make()
    resumed.load_state_dict(state)
    rest = list(resumed)[:5]
    assert same(taken, full[:7]) and same(rest, full[7:12])


def test_resume_through_torchdata_loader() -> None:
    from torchdata.nodes import Loader

    from mlvgm_data.nodes import ViewPairNode

    full = list(make())
    loader = Loader(ViewPairNode(make()))
    it = iter(loader)
    for _ in range(7):
        next(it)
    state = loader.state_dict()
    resumed = Loader(ViewPairNode(make()))
    resumed.load_state_dict(state)
    assert same(list(resumed)[:5], full[7:12])


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_through_stateful_dataloader(workers: int) -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    full = list(make(prefetch=0))
    loader = StatefulDataLoader(make(prefetch=0), batch_size=None, num_workers=workers)
    it = iter(loader)
    taken = [next(it) for _ in range(7)]
    state = loader.state_dict()
    del it
    resumed = StatefulDataLoader(make(prefetch=0), batch_size=None, num_workers=workers)
    resumed.load_state_dict(state)
    rest = list(resumed)[:5]
    assert same([ViewBatch(*b) for b in taken], full[:7])
    assert same([ViewBatch(*b) for b in rest], full[7:12])


def test_dataloader_workers_split_steps_without_changing_them() -> None:
    full = list(make())
    via_workers = [ViewBatch(*b) for b in DataLoader(make(prefetch=1), batch_size=None, num_workers=2)]
    assert same(via_workers, full)


def test_ranks_partition_the_global_batch() -> None:
    # The decode (a linear layer and a convolution) is equal across batch sizes only to float
    # tolerance on some CPUs; test_pipe_setups checks the pipe's own part bit for bit.
    whole = list(make(batch_size=8, steps=2))
    parts = [list(make(batch_size=4, steps=2, rank=r, world_size=2)) for r in range(2)]
    for step in range(2):
        for v in range(2):
            joined = torch.cat([parts[0][step].views[v], parts[1][step].views[v]])
            torch.testing.assert_close(joined, whole[step].views[v], rtol=0, atol=1e-5)


def test_no_repeated_anchors_across_ranks_and_workers() -> None:
    hashes = []
    for rank in range(2):
        pipe = make(batch_size=500, steps=100, rank=rank, world_size=2, augment=None, return_latents=True, prefetch=0)
        for batch in DataLoader(pipe, batch_size=None, num_workers=2):
            anchors = torch.cat([z[0].flatten(1) for z in batch[2].values()], dim=1)
            hashes += [hashlib.sha1(row.numpy().tobytes()).digest() for row in anchors]
    assert len(hashes) == 100_000
    assert len(set(hashes)) == len(hashes)


@pytest.mark.parametrize("mode, error, match", [
    ("raise", ArithmeticError, "decoder exploded"),
    ("nan", RuntimeError, "non-finite"),
    ("shape", RuntimeError, r"returned images \[3, 8, 16\], its image_shape is \[3, 16, 16\]"),
])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_producer_errors_reach_the_consumer(mode: str, error: type, match: str, prefetch: int) -> None:
    pipe = make(generator=BrokenGenerator(mode, after=2), prefetch=prefetch)
    it = iter(pipe)
    next(it), next(it)
    with pytest.raises(error, match=match) as info:
        for _ in it:
            pass
    if mode == "raise":
        # The original traceback: the frame that raised is the generator's decode.
        assert info.traceback[-1].name == "_decode"
    assert not producer_threads_after_gc()


def test_interrupt_in_producer_propagates() -> None:
    with pytest.raises(KeyboardInterrupt):
        list(make(generator=BrokenGenerator("interrupt")))
    assert not producer_threads_after_gc()


def test_break_close_and_gc_stop_the_thread() -> None:
    pipe = make(steps=None, prefetch=3)
    for i, _ in enumerate(pipe):
        if i == 2:
            break
    assert not producer_threads_after_gc()

    it = iter(make(steps=None))
    next(it)
    assert len(producer_threads()) == 1
    it.close()
    assert not producer_threads_after_gc()

    it = iter(make(steps=None))
    next(it)
    del it
    assert not producer_threads_after_gc()


def test_close_while_producer_is_blocked_is_prompt() -> None:
    calls = []

    def work(step: int) -> ViewBatch:
        calls.append(step)
        return ViewBatch((torch.zeros(1),), torch.zeros(1))

    producer = ThreadProducer(work, iter(range(1000)), prefetch=2)
    deadline = time.monotonic() + 30
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(calls) == 3  # prefetch + 1 slots filled, then blocked waiting for a free slot
    producer.close()  # must wake the blocked thread, not wait for a slot that never frees
    assert not producer._thread.is_alive()


def test_a_fork_waits_for_the_step_in_flight() -> None:
    # A DataLoader forking its workers while a producer thread is inside an MKL product left the child
    # spinning on the allocator's lock forever (seen in the suite); a fork now waits for the step.
    entered, finished = threading.Event(), threading.Event()

    def work(step: int) -> ViewBatch:
        if step == 0:
            entered.set()
            time.sleep(0.3)  # inside torch, as far as a fork can tell
            finished.set()
        return ViewBatch((torch.zeros(1),), torch.zeros(1))

    producer = ThreadProducer(work, iter(range(3)), prefetch=1)
    try:
        assert entered.wait(30)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        assert finished.is_set()  # the fork returned only once the step had ended
        assert os.waitpid(pid, 0)[1] == 0
    finally:
        producer.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="a thread's end is seen in /proc/self/task (Linux)")
def test_a_fork_waits_until_an_ending_producer_thread_is_gone() -> None:
    # MKL frees an ending thread's buffers under its allocator lock after the thread's Python code has
    # returned; a fork then hung its child 14 times in 200. The sleep stands in for that teardown.
    told = threading.Event()

    def ending() -> None:
        FORK_GATE.ending()
        told.set()
        time.sleep(0.3)

    thread = threading.Thread(target=ending)
    thread.start()
    assert told.wait(30)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert not thread.is_alive()  # the fork waited for it
    assert os.waitpid(pid, 0)[1] == 0


def test_a_step_that_forks_does_not_wait_for_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FORK_GATE, "WAIT_S", 0.2)

    def work(step: int) -> list:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pid = os.fork()
            if pid == 0:
                os._exit(0)
        os.waitpid(pid, 0)
        return [str(w.message) for w in caught]

    producer = ThreadProducer(work, iter(range(1)), prefetch=0)
    try:
        assert producer.get() == []  # no "forking while a producer thread has been inside a step"
    finally:
        producer.close()


def test_slot_ring_state_machine() -> None:
    ring = SlotRing(2)
    a = ring.begin_fill()
    assert not ring.has_ready()
    ring.end_fill(a)
    b = ring.begin_fill()
    assert not ring.can_fill()  # both slots busy
    assert ring.take() == a and ring.states[a] == HELD
    ring.end_fill(b)
    assert ring.states[b] == READY
    assert ring.release() == a and ring.states[a] == FREE
    assert ring.can_fill() and ring.begin_fill() == a
    with pytest.raises(RuntimeError, match="not free"):
        ring.begin_fill()
    with pytest.raises(RuntimeError, match="expected filling"):
        ring.end_fill(b)
    with pytest.raises(ValueError, match="at least one slot"):
        SlotRing(0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(num_views=0), "num_views"),
    (dict(num_views=300), "num_views"),
    (dict(prefetch=-1), "prefetch"),
    (dict(seed=-1), "seed"),
    (dict(steps=0), "steps"),
    (dict(rank=2, world_size=2), "rank"),
    (dict(world_size=0), "world_size"),
    (dict(policy={"top": "keep"}), "ViewPolicy"),
    (dict(policy=ViewPolicy({"nope": Resample()})), "unknown groups"),
    (dict(generator=torch.nn.Linear(2, 2)), "latent_spec"),
    (dict(augment=3), "augment"),
    (dict(augment="sharpen"), "unknown augment preset"),
    (dict(device="meta"), "move it first"),
    (dict(autocast=torch.float64), "autocast"),
])
def test_pipe_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_load_state_dict_rejects_other_streams() -> None:
    state = make().state_dict()
    with pytest.raises(ValueError, match="seed=7"):
        make(seed=8).load_state_dict(state)
    with pytest.raises(ValueError, match="format"):
        make().load_state_dict({"delivered": 3})
    with pytest.raises(TypeError, match="no length"):
        len(make(steps=None))
    with pytest.raises(ValueError, match="finite pipe"):
        make(steps=None).set_epoch(1)


@pytest.mark.needs_cuda
def test_cuda_producer_matches_cpu() -> None:
    cpu = list(make(augment=None))
    gpu_gen = TinyGenerator().cuda()
    gpu = [ViewBatch(tuple(v.cpu() for v in b.views), b.target.cpu()) for b in make(generator=gpu_gen, augment=None)]
    for p, q in zip(cpu, gpu):
        for x, y in zip(p.views, q.views):
            assert torch.allclose(x, y, atol=1e-5)


def test_ctrl_c_while_waiting_for_a_slow_producer() -> None:
    import _thread

    release = threading.Event()

    def slow(step: int) -> ViewBatch:
        release.wait(30)  # no batch can arrive before the interrupt: get() must be interruptible
        return ViewBatch((torch.zeros(1),), torch.zeros(1))

    # A background job (`cmd &`, nohup) starts with SIGINT ignored; Ctrl-C's handler is what is tested.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    producer = ThreadProducer(slow, iter(range(100)), prefetch=1)
    timer = threading.Timer(0.1, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            producer.get()
    finally:
        signal.signal(signal.SIGINT, previous)
    release.set()
    producer.close()  # returns once the step in progress ends
    assert not producer_threads_after_gc()


# --- compile=True -------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes, prefetch", [(None, 2), (3, 0)])
def test_compiled_decode_gives_eager_views_to_float_tolerance(num_classes, prefetch) -> None:
    import pickle

    from mlvgm_data.generators.compiled import CompiledDecode

    gen = TinyGenerator(num_classes=num_classes)
    policy = ViewPolicy({"map": Resample()})
    eager = list(ViewPairPipe(gen, policy, 4, seed=3, steps=2, prefetch=prefetch))
    pipe = ViewPairPipe(gen, policy, 4, seed=3, steps=2, prefetch=prefetch, compile=True)
    compiled = list(pipe)
    assert isinstance(pipe._compiled, CompiledDecode) and not pipe._compiled.training
    for a, b in zip(eager, compiled):
        assert torch.equal(a.target, b.target)  # latents and classes come from the op: identical
        for x, y in zip(a.views, b.views):
            assert torch.allclose(x, y, atol=1e-4, rtol=0)
    again = pickle.loads(pickle.dumps(pipe))  # for DataLoader workers: the compiled code stays behind
    assert again.compile and again._compiled is None
    with pytest.raises(TypeError, match="compile must be True or False"):
        ViewPairPipe(gen, policy, 4, compile="yes")


def test_compiled_decode_is_one_graph_and_keeps_the_protocol_checks() -> None:
    # The checks' host syncs stay outside the compiled region (inside, each call broke the graph).
    from torch._dynamo.utils import counters

    from mlvgm_data.generators.compiled import CompiledDecode

    torch._dynamo.reset()
    counters.clear()
    gen = TinyGenerator()
    compiled = CompiledDecode(gen)
    latents = {g.name: torch.randn(3, *g.shape) for g in gen.latent_spec}
    assert torch.allclose(compiled.decode(latents), gen.decode(latents), atol=1e-4, rtol=0)
    assert not counters["graph_break"], dict(counters["graph_break"])
    with pytest.raises(ValueError, match="missing groups"):
        compiled.decode({"top": latents["top"]})
    with pytest.raises(ValueError, match="non-finite"):
        compiled.decode({**latents, "top": torch.full((3, 8), float("nan"))})


@pytest.mark.parametrize("steps", [None, 4])
def test_seek_makes_a_step_the_next_one_as_a_fresh_run_would_reach_it(steps) -> None:
    reference = [b.latents for _, b in zip(range(7), make(steps=steps, prefetch=0, return_latents=True))]
    pipe = make(steps=steps, prefetch=0, return_latents=True)
    pipe.seek(5)
    later = [b.latents for _, b in zip(range(2), pipe)]
    for got, want in zip(later, reference[5:7]):
        assert all(torch.equal(got[k], want[k]) for k in want)
    assert pipe.state_dict()["epoch_start"] == (0 if steps is None else 4)
    with pytest.raises(ValueError, match="step"):
        pipe.seek(-1)

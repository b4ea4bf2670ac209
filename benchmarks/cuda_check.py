"""Verifies the GPU path on a machine with a CUDA GPU (the project's CI has none).

    pip install -e . --no-build-isolation   # with a CUDA build of torch: builds the CUDA kernels
    python benchmarks/cuda_check.py [--generator builtin:shapes] [--steps 50]

Checks, each printed as PASS/FAIL (exit status 1 on any failure):
1. the CUDA kernels of ``resample_`` and ``uniform_`` are registered and return the same bits as
   the CPU kernel and the pure-PyTorch reference, over random specs and rules;
2. the CUDA-stream producer yields the same batches as the CPU producer (within float rounding
   of the generator), for prefetch 1 and 3;
3. no host synchronisation in the steady state: after warm-up, iterating the pipe under
   ``torch.cuda.set_sync_debug_mode("error")`` raises nothing;
4. a slot is not overwritten while the consumer still reads it: a slow consumer kernel reading
   every batch sees exactly the values a synchronous run produces;
and reports throughput: pairs/s of the pipe vs the same work done synchronously in the loop,
and a training-like consumer step overlapped with generation.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch

from mlvgm_data import Keep, LatentGroup, LatentSpec, Perturb, Resample, ViewPairPipe, ViewPolicy, load_generator, ops

FAILURES: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""))
    if not ok:
        FAILURES.append(name)


def random_case(rng: random.Random) -> tuple[LatentSpec, ViewPolicy]:
    groups, rules = [], {}
    for i in range(rng.randint(1, 70)):  # > 64 groups exercises the split launch
        shape = rng.choice([(rng.randint(1, 600),), (rng.randint(1, 8), rng.randint(1, 9), rng.randint(1, 9))])
        groups.append(LatentGroup(f"g{i}", shape, tie="t" if shape == (7,) else None))
        rules[f"g{i}"] = rng.choice([Keep(), Perturb(rng.uniform(0, 2), rng.uniform(-1, 1), rng.choice([None, 1.0])),
                                     Resample(rng.choice([None, 2.0]))])
    return LatentSpec(groups), ViewPolicy(rules, anchor_trunc=rng.choice([None, 2.0]), include_anchor=rng.random() < 0.5)


def check_ops(cases: int) -> None:
    check("CUDA kernel registered", ops.has_native("cuda"),
          "rebuild with a CUDA torch and FORCE_CUDA=1 if this fails")
    if not ops.has_native("cuda"):
        return
    rng = random.Random(0)
    exact = True
    for _ in range(cases):
        spec, policy = random_case(rng)
        b, v, seed, step = rng.choice([1, 3, 64, 257]), rng.randint(1, 4), rng.randrange(2**32), rng.randrange(2**32)
        gpu = ops.resample(spec, policy, b, v, seed, step, "cuda", stream=5)
        cpu = ops.resample(spec, policy, b, v, seed, step, "cpu", stream=5)
        exact &= all(torch.equal(gpu[k].cpu(), cpu[k]) for k in spec.names)
    check("resample: CUDA bits == CPU bits", exact, f"{cases} random specs")
    ref = ops.resample_reference(*random_case(rng), 9, 3, 1, 2, "cuda")
    check("reference runs on CUDA", all(t.is_cuda for t in ref.values()))
    u_gpu = ops.uniform(33, 17, 1, 2, "cuda", 3, domain=6, view=2, slot=9).cpu()
    check("uniform: CUDA bits == CPU bits", torch.equal(u_gpu, ops.uniform(33, 17, 1, 2, "cpu", 3, domain=6, view=2, slot=9)))


def batches(pipe: ViewPairPipe, n: int) -> list[tuple[torch.Tensor, ...]]:
    out = []
    for i, batch in enumerate(pipe):
        out.append(tuple(v.detach().cpu().clone() for v in batch.views))
        if i + 1 == n:
            break
    return out


def check_producer(generator_name: str, policy: ViewPolicy) -> None:
    cpu_gen = load_generator(generator_name, "cpu")
    gpu_gen = load_generator(generator_name, "cuda")
    ref = batches(ViewPairPipe(cpu_gen, policy, 32, seed=1, augment="simclr", prefetch=0), 6)
    for prefetch in (1, 3):
        got = batches(ViewPairPipe(gpu_gen, policy, 32, seed=1, augment="simclr", prefetch=prefetch), 6)
        err = max(float((a - b).abs().max()) for x, y in zip(ref, got) for a, b in zip(x, y))
        check(f"CUDA producer == CPU producer (prefetch {prefetch})", err < 1e-3, f"max abs diff {err:.2e}")

    pipe = ViewPairPipe(gpu_gen, policy, 64, seed=2, augment="simclr", prefetch=2)
    it = iter(pipe)
    for _ in range(3):
        next(it)  # warm-up: slot buffers, cuDNN plans, the caching allocator
    try:
        torch.cuda.set_sync_debug_mode("error")
        for _ in range(10):
            next(it)
        ok, detail = True, ""
    except RuntimeError as e:
        ok, detail = False, str(e).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
        it.close()
    check("no host sync in the steady state", ok, detail)

    # A consumer slower than the producer: every batch is read by a long kernel chain after
    # later batches were already enqueued into the ring. The results must equal a synchronous run.
    sync = batches(ViewPairPipe(gpu_gen, policy, 64, seed=3, augment="simclr", prefetch=0), 8)
    sums = []
    for i, batch in enumerate(ViewPairPipe(gpu_gen, policy, 64, seed=3, augment="simclr", prefetch=3)):
        x = batch.views[0]
        for _ in range(50):
            x = torch.sin(x) + 0 * x  # slow reader of the slot buffer
        sums.append((batch.views[0].sum(), batch.views[1].double().sum()))
        if i == 7:
            break
    torch.cuda.synchronize()
    err = max(abs(float(s0) - float(x[0].sum())) + abs(float(s1) - float(x[1].double().sum()))
              for (s0, s1), x in zip(sums, sync))
    check("slots are not overwritten under a slow consumer", err < 1e-2, f"max checksum diff {err:.2e}")


def throughput(generator_name: str, policy: ViewPolicy, batch: int, steps: int) -> None:
    gen = load_generator(generator_name, "cuda")
    pipe = ViewPairPipe(gen, policy, batch, seed=0, augment="simclr", prefetch=2)
    work = pipe.work()
    weight = torch.randn(4096, 4096, device="cuda")

    def consume(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :1].expand(-1, 4096) @ weight  # a training-sized matmul per step

    def run(make_batches) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for views in make_batches():
            consume(views[0])
        torch.cuda.synchronize()
        return steps * batch / (time.perf_counter() - t0)

    def pipe_batches():
        for i, b in enumerate(pipe):
            yield b.views
            if i + 1 == steps:
                break

    def sync_batches():
        for s in range(steps):
            yield work(s).views

    run(sync_batches)
    sync_rate = run(sync_batches)
    pipe_rate = run(pipe_batches)
    print(f"pairs/s with a matmul consumer: pipe {pipe_rate:,.0f}, synchronous {sync_rate:,.0f} "
          f"({pipe_rate / sync_rate:.2f}x), device {torch.cuda.get_device_name()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="builtin:shapes")
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this script checks the GPU path")
    from mlvgm_data import recommended_policy

    policy = recommended_policy(args.generator)
    check_ops(args.cases)
    check_producer(args.generator, policy)
    throughput(args.generator, policy, args.batch, args.steps)
    print("all checks passed" if not FAILURES else f"FAILED: {FAILURES}")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()

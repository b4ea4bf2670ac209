// CUDA kernels of mlvgm_data::resample_ and mlvgm_data::uniform_. Kernels and launchers only:
// the per-element arithmetic is resample.h's (shared with the CPU kernel), and the torch glue
// that picks the current stream lives in resample_cuda.cpp.
#include <algorithm>
#include <vector>

#include "resample_cuda.h"

// Launches are written MLVGM_LAUNCH(kernel, grid, block, shmem, stream)(args...): `<<<...>>>` under
// nvcc; tests/test_cuda_emulation.py compiles this same file as C++ against
// csrc/testing/cuda_host_emulation.h, which defines it to run the grid on the host.
#if defined(__CUDACC__)
#define MLVGM_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<grid, block, shmem, stream>>>
#endif

namespace mlvgm {
namespace {

constexpr int kThreads = 256;

// Row position of flat index `local` over (sample, block) rows of nb blocks. 32-bit division
// where it fits: a 64-bit one is a long instruction sequence on a GPU.
MLVGM_HD void row_and_block(int64_t local, uint32_t nb, int64_t& row, uint32_t& block) {
  if (local <= 0xFFFFFFFFll) {
    const uint32_t l = static_cast<uint32_t>(local);
    row = l / nb;
    block = l % nb;
  } else {
    row = local / nb;
    block = static_cast<uint32_t>(local % nb);
  }
}

// One thread per (anchor set, sample, Philox block): it draws (or reads, when given) the 4
// anchor values of its block once and writes them, or the view values derived from them, for
// every view of every group of the set. Consecutive threads take consecutive blocks of a row, so
// each of the 4 words is a coalesced load or store in its quarter of the row.
__global__ void __launch_bounds__(kThreads)
    resample_kernel(const ResampleLaunch p, const int64_t* __restrict__ sample_ids,
                    float* __restrict__ out) {
  const int64_t total = p.first_thread[p.num_sets];
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int s = 0;
    while (t >= p.first_thread[s + 1]) ++s;  // <= 64 sets, uniform across most warps
    const int g0 = p.first_group[s];
    const int g1 = p.first_group[s + 1];
    const GroupRule& first = p.groups[g0];
    const int32_t n = first.numel;  // tied groups share their shape
    const uint32_t nb = static_cast<uint32_t>(blocks_of(n));
    int64_t b;
    uint32_t block;
    row_and_block(t - p.first_thread[s], nb, b, block);
    const uint32_t sample =
        static_cast<uint32_t>(sample_ids ? sample_ids[b] : p.sample_offset + b);

    // The anchor is needed unless every view of the set is a fresh Resample.
    bool needs_anchor = p.include_anchor != 0;
    for (int gi = g0; gi < g1; ++gi) needs_anchor |= p.groups[gi].kind != kResample;
    float anchor[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (needs_anchor && has_given_anchor(first)) {  // the set's groups share it (checked on the host)
      const float* given = first.anchor + b * n;
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) {
        const int32_t e = lane * static_cast<int32_t>(nb) + static_cast<int32_t>(block);
        if (e < n) anchor[lane] = given[e];
      }
    } else if (needs_anchor) {
      const Words4 aw =
          row_block(p.seed, p.stream, p.step, sample, block, kDomainAnchor, 0, first.slot);
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) anchor[lane] = truncated_normal(word_of(aw, lane), first.c_anchor);
    }

    for (int gi = g0; gi < g1; ++gi) {
      const GroupRule& g = p.groups[gi];
      for (int32_t v = 0; v < p.views; ++v) {
        float* row = out + g.out_offset + (v * static_cast<int64_t>(p.batch) + b) * n;
        const bool copy = (p.include_anchor && v == 0) || g.kind == kKeep;
        Words4 vw{0, 0, 0, 0};
        if (!copy) vw = row_block(p.seed, p.stream, p.step, sample, block, kDomainView, v, g.index);
#pragma unroll
        for (int lane = 0; lane < 4; ++lane) {
          const int32_t e = lane * static_cast<int32_t>(nb) + static_cast<int32_t>(block);
          if (e < n) row[e] = copy ? anchor[lane] : apply_rule(g, anchor[lane], word_of(vw, lane));
        }
      }
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    uniform_kernel(int64_t batch, int32_t n, uint32_t seed, uint32_t philox_stream, uint32_t step,
                   uint32_t w3, int64_t sample_offset, const int64_t* __restrict__ sample_ids,
                   float* __restrict__ out) {
  const int32_t nb = blocks_of(n);
  const int64_t total = batch * nb;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t b;
    uint32_t block;
    row_and_block(t, static_cast<uint32_t>(nb), b, block);
    const uint32_t sample = static_cast<uint32_t>(sample_ids ? sample_ids[b] : sample_offset + b);
    const Words4 w = philox4x32_10(Words4{block, sample, step, w3}, seed, philox_stream);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int32_t e = lane * nb + static_cast<int32_t>(block);
      if (e < n) out[b * n + e] = unit_uniform(word_of(w, lane));
    }
  }
}

unsigned grid_for(int64_t threads) {
  // Grid-stride loops: cap the grid, enough blocks to fill any current GPU several times over.
  const int64_t blocks = (threads + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535));
}

}  // namespace

cudaError_t launch_resample(const GroupRule* groups, int num_groups, int32_t batch, int32_t views,
                            bool include_anchor, uint32_t seed, uint32_t philox_stream,
                            uint32_t step, int64_t sample_offset, const int64_t* sample_ids,
                            float* out, cudaStream_t stream) {
  // Groups in anchor sets (tied groups together, sets in order of first appearance); each group
  // keeps its own out_offset, so the order inside a launch is free.
  std::vector<int> order;
  order.reserve(num_groups);
  std::vector<bool> placed(num_groups, false);
  for (int i = 0; i < num_groups; ++i) {
    if (placed[i]) continue;
    for (int j = i; j < num_groups; ++j) {
      if (!placed[j] && groups[j].slot == groups[i].slot) {
        order.push_back(j);
        placed[j] = true;
      }
    }
  }
  // Launches of up to kMaxGroupsPerLaunch groups; a set cut by a launch boundary draws its
  // anchors again in the next launch (the same numbers: they depend on the counter only).
  for (int first = 0; first < num_groups; first += kMaxGroupsPerLaunch) {
    ResampleLaunch p{};
    const int count = std::min(kMaxGroupsPerLaunch, num_groups - first);
    p.batch = batch;
    p.views = views;
    p.include_anchor = include_anchor ? 1 : 0;
    p.seed = seed;
    p.stream = philox_stream;
    p.step = step;
    p.sample_offset = sample_offset;
    p.num_sets = 0;
    p.first_thread[0] = 0;
    for (int i = 0; i < count; ++i) {
      p.groups[i] = groups[order[first + i]];
      if (i == 0 || p.groups[i].slot != p.groups[i - 1].slot) {
        p.first_group[p.num_sets] = i;
        p.first_thread[p.num_sets + 1] =
            p.first_thread[p.num_sets] + static_cast<int64_t>(batch) * blocks_of(p.groups[i].numel);
        ++p.num_sets;
      }
    }
    p.first_group[p.num_sets] = count;
    const int64_t threads = p.first_thread[p.num_sets];
    MLVGM_LAUNCH(resample_kernel, grid_for(threads), kThreads, 0, stream)(p, sample_ids, out);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

cudaError_t launch_uniform(int64_t batch, int32_t n, uint32_t seed, uint32_t philox_stream,
                           uint32_t step, uint32_t domain, uint32_t view, uint32_t slot,
                           int64_t sample_offset, const int64_t* sample_ids, float* out,
                           cudaStream_t stream) {
  const int64_t threads = batch * blocks_of(n);
  if (threads == 0) return cudaSuccess;
  MLVGM_LAUNCH(uniform_kernel, grid_for(threads), kThreads, 0, stream)(
      batch, n, seed, philox_stream, step, counter_word3(domain, view, slot), sample_offset,
      sample_ids, out);
  return cudaGetLastError();
}

}  // namespace mlvgm

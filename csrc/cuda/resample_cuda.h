// Launchers of the CUDA kernels. Plain CUDA runtime types only (no ATen), so resample.cu
// compiles with nvcc against any torch build; the torch glue is resample_cuda.cpp.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "../resample.h"

namespace mlvgm {

// Groups travel by value in the kernel's parameter block (no device metadata, no H2D copy).
// 64 groups x 48 bytes plus the set table stays under the 4 KiB parameter limit of every CUDA
// version; specs with more groups are split over several launches.
constexpr int kMaxGroupsPerLaunch = 64;

// Groups tied to one anchor (style mixing) form a set, stored contiguously in `groups`: a thread
// draws the anchor of its Philox block once and writes every view of every group of its set,
// like the CPU kernel's work items.
struct ResampleLaunch {
  GroupRule groups[kMaxGroupsPerLaunch];
  int32_t first_group[kMaxGroupsPerLaunch + 1];   // set s is groups[first_group[s] .. first_group[s + 1])
  int64_t first_thread[kMaxGroupsPerLaunch + 1];  // prefix sum of batch * blocks per set
  int32_t num_sets;
  int32_t batch;
  int32_t views;
  int32_t include_anchor;
  uint32_t seed, stream, step;
  int64_t sample_offset;
};
static_assert(sizeof(ResampleLaunch) <= 4096, "kernel parameters must fit in 4 KiB");

// Enqueues the resample kernel(s) on `stream`; returns the first launch error (no sync).
cudaError_t launch_resample(const GroupRule* groups, int num_groups, int32_t batch, int32_t views,
                            bool include_anchor, uint32_t seed, uint32_t philox_stream,
                            uint32_t step, int64_t sample_offset, const int64_t* sample_ids,
                            float* out, cudaStream_t stream);

cudaError_t launch_uniform(int64_t batch, int32_t n, uint32_t seed, uint32_t philox_stream,
                           uint32_t step, uint32_t domain, uint32_t view, uint32_t slot,
                           int64_t sample_offset, const int64_t* sample_ids, float* out,
                           cudaStream_t stream);

}  // namespace mlvgm

// C entry points to the emulated CUDA launchers of csrc/cuda/resample.cu, for ctypes
// (tests/conftest.py builds this file and resample.cu into one shared library).
// Arguments are the op's own: the group_meta / group_params lists of mlvgm_data.ops._layout_of;
// given anchors come as one buffer and each group's offset into it (-1: drawn from the prior).
#include <vector>

#include "../cuda/resample_cuda.h"

namespace {

void configure(unsigned max_blocks, unsigned block_threads, uint64_t order_seed) {
  emulated_launch_config = EmulatedLaunchConfig{max_blocks, block_threads, order_seed, 0};
}

// Same unpacking as resample_host.h's unpack_groups (whose checks the CPU tests cover).
std::vector<mlvgm::GroupRule> groups_of(const int64_t* meta, const double* params,
                                        const int64_t* anchor_offsets, const float* anchors,
                                        int num_groups) {
  std::vector<mlvgm::GroupRule> groups(num_groups);
  for (int g = 0; g < num_groups; ++g) {
    const int64_t* m = meta + 5 * g;
    const double* p = params + 4 * g;
    groups[g] = mlvgm::GroupRule{static_cast<int32_t>(m[0]), static_cast<int32_t>(m[1]),
                                 static_cast<int32_t>(m[2]), static_cast<int32_t>(m[3]), m[4],
                                 static_cast<float>(p[0]), static_cast<float>(p[1]),
                                 static_cast<float>(p[2]), static_cast<float>(p[3])};
    if (anchor_offsets != nullptr && anchor_offsets[g] >= 0) {
      groups[g].anchor = anchors + anchor_offsets[g];
    }
  }
  return groups;
}

}  // namespace

extern "C" {

// Number of kernel launches of the last call, and how many groups one launch takes.
int emulated_launches() { return emulated_launch_config.launches; }
int emulated_max_groups_per_launch() { return mlvgm::kMaxGroupsPerLaunch; }

int emulated_resample(const int64_t* meta, const double* params, int num_groups, int32_t batch,
                      int32_t views, int include_anchor, uint32_t seed, uint32_t philox_stream,
                      uint32_t step, int64_t sample_offset, const int64_t* sample_ids, float* out,
                      unsigned max_blocks, unsigned block_threads, uint64_t order_seed) {
  const std::vector<mlvgm::GroupRule> groups =
      groups_of(meta, params, nullptr, nullptr, num_groups);
  configure(max_blocks, block_threads, order_seed);
  return mlvgm::launch_resample(groups.data(), num_groups, batch, views, include_anchor != 0, seed,
                                philox_stream, step, sample_offset, sample_ids, out, nullptr);
}

// emulated_resample with given anchors: anchor_offsets holds one offset per group (-1: prior).
int emulated_resample_anchored(const int64_t* meta, const double* params,
                               const int64_t* anchor_offsets, int num_groups, int32_t batch,
                               int32_t views, int include_anchor, uint32_t seed,
                               uint32_t philox_stream, uint32_t step, int64_t sample_offset,
                               const int64_t* sample_ids, const float* anchors, float* out,
                               unsigned max_blocks, unsigned block_threads, uint64_t order_seed) {
  const std::vector<mlvgm::GroupRule> groups =
      groups_of(meta, params, anchor_offsets, anchors, num_groups);
  configure(max_blocks, block_threads, order_seed);
  return mlvgm::launch_resample(groups.data(), num_groups, batch, views, include_anchor != 0, seed,
                                philox_stream, step, sample_offset, sample_ids, out, nullptr);
}

int emulated_uniform(int64_t batch, int32_t n, uint32_t seed, uint32_t philox_stream,
                     uint32_t step, uint32_t domain, uint32_t view, uint32_t slot,
                     int64_t sample_offset, const int64_t* sample_ids, float* out,
                     unsigned max_blocks, unsigned block_threads, uint64_t order_seed) {
  configure(max_blocks, block_threads, order_seed);
  return mlvgm::launch_uniform(batch, n, seed, philox_stream, step, domain, view, slot,
                               sample_offset, sample_ids, out, nullptr);
}

}  // extern "C"

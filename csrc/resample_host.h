// Host-side argument unpacking shared by the CPU kernel and the CUDA glue: the schema passes the
// per-group rules as flat int/float lists (no metadata tensors, so nothing is copied to the device).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <vector>

#include "resample.h"

namespace mlvgm {

constexpr int kMetaPerGroup = 5;    // numel, slot, index, kind, out_offset
constexpr int kParamsPerGroup = 4;  // mu, sigma, c_view, c_anchor

inline std::vector<GroupRule> unpack_groups(c10::IntArrayRef meta, c10::ArrayRef<double> params) {
  TORCH_CHECK(meta.size() % kMetaPerGroup == 0 && params.size() % kParamsPerGroup == 0 &&
                  meta.size() / kMetaPerGroup == params.size() / kParamsPerGroup,
              "mlvgm_data::resample_: group_meta must hold 5 ints and group_params 4 floats per "
              "group, got ", meta.size(), " and ", params.size());
  const size_t n = meta.size() / kMetaPerGroup;
  std::vector<GroupRule> groups(n);
  for (size_t g = 0; g < n; ++g) {
    const int64_t* m = meta.data() + g * kMetaPerGroup;
    const double* p = params.data() + g * kParamsPerGroup;
    TORCH_CHECK(m[0] > 0 && m[0] < (int64_t{1} << 31), "group ", g, ": numel out of range");
    TORCH_CHECK(m[1] >= 0 && m[1] < (1 << 20) && m[2] >= 0 && m[2] < (1 << 20),
                "group ", g, ": slot out of range");
    TORCH_CHECK(m[3] >= kKeep && m[3] <= kResample, "group ", g, ": unknown rule kind ", m[3]);
    groups[g] = GroupRule{static_cast<int32_t>(m[0]), static_cast<int32_t>(m[1]),
                          static_cast<int32_t>(m[2]), static_cast<int32_t>(m[3]), m[4],
                          static_cast<float>(p[0]), static_cast<float>(p[1]),
                          static_cast<float>(p[2]), static_cast<float>(p[3])};
  }
  return groups;
}

// Points each group whose anchor is given at its rows: anchor_index (empty, or one per group)
// names the tensor of `anchors` holding the group's [batch, numel] anchor rows, or is -1 for an
// anchor drawn from the prior. A tensor must be contiguous float32 on out's device, of exactly
// those rows, and must not overlap out (the kernels read it while they write out).
inline void attach_anchors(std::vector<GroupRule>& groups,
                           const c10::optional<at::TensorList>& given,
                           c10::IntArrayRef anchor_index, const at::Tensor& out, int64_t batch) {
  const at::TensorList anchors = given.value_or(at::TensorList());
  TORCH_CHECK(anchor_index.empty() || anchor_index.size() == groups.size(),
              "mlvgm_data::resample_: anchor_index must be empty or hold one int per group, got ",
              anchor_index.size(), " for ", groups.size(), " groups");
  const auto* o0 = static_cast<const char*>(out.data_ptr());
  for (size_t g = 0; g < anchor_index.size(); ++g) {
    const int64_t i = anchor_index[g];
    if (i == -1) continue;
    TORCH_CHECK(i >= 0 && i < static_cast<int64_t>(anchors.size()), "group ", g,
                ": anchor_index ", i, " is outside the ", anchors.size(), " anchors");
    const at::Tensor& a = anchors[i];
    TORCH_CHECK(a.scalar_type() == at::kFloat && a.is_contiguous() && a.device() == out.device(),
                "anchors[", i, "] must be a contiguous float32 tensor on out's device");
    TORCH_CHECK(a.numel() == batch * groups[g].numel, "anchors[", i, "] has ", a.numel(),
                " elements, group ", g, " needs batch_size x ", groups[g].numel);
    const auto* a0 = static_cast<const char*>(a.data_ptr());
    TORCH_CHECK(a0 + a.nbytes() <= o0 || o0 + out.nbytes() <= a0, "anchors[", i,
                "] must not overlap out");
    groups[g].anchor = a.data_ptr<float>();
  }
}

// Validates the counters and the output buffer; returns the number of floats the groups cover.
inline int64_t check_resample_args(const at::Tensor& out,
                                   const c10::optional<at::Tensor>& sample_ids,
                                   const std::vector<GroupRule>& groups, int64_t batch,
                                   int64_t views, int64_t seed, int64_t stream, int64_t step,
                                   int64_t sample_offset) {
  TORCH_CHECK(batch >= 1 && views >= 1 && views <= 255, "batch_size must be >= 1 and num_views "
              "in [1, 255], got ", batch, " and ", views);
  const int64_t u32 = int64_t{1} << 32;
  TORCH_CHECK(seed >= 0 && seed < u32, "seed must be in [0, 2**32), got ", seed);
  TORCH_CHECK(stream >= 0 && stream < u32, "stream must be in [0, 2**32), got ", stream);
  TORCH_CHECK(step >= 0 && step < u32, "step must be in [0, 2**32), got ", step);
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous(),
              "out must be a contiguous float32 tensor");
  int64_t total = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    const GroupRule& g = groups[i];
    TORCH_CHECK(g.out_offset == total, "groups must tile the output in order");
    total += g.numel * batch * views;
    for (size_t j = 0; j < i; ++j) {
      TORCH_CHECK(groups[j].slot != g.slot ||
                      (groups[j].numel == g.numel && groups[j].anchor == g.anchor),
                  "groups ", j, " and ", i, " share an anchor slot but not a size and anchor");
    }
  }
  TORCH_CHECK(out.numel() == total, "out has ", out.numel(), " elements, the groups need ", total);
  if (sample_ids.has_value()) {
    const auto& ids = *sample_ids;
    TORCH_CHECK(ids.scalar_type() == at::kLong && ids.dim() == 1 && ids.size(0) == batch &&
                    ids.is_contiguous() && ids.device() == out.device(),
                "sample_ids must be a contiguous int64 vector of batch_size on out's device");
  } else {
    TORCH_CHECK(sample_offset >= 0 && sample_offset + batch <= u32,
                "sample ids must stay in [0, 2**32)");
  }
  return total;
}

inline void check_uniform_args(const at::Tensor& out, const c10::optional<at::Tensor>& sample_ids,
                               int64_t seed, int64_t stream, int64_t step, int64_t domain,
                               int64_t view, int64_t slot, int64_t sample_offset) {
  const int64_t u32 = int64_t{1} << 32;
  TORCH_CHECK(seed >= 0 && seed < u32 && stream >= 0 && stream < u32 && step >= 0 && step < u32,
              "seed, stream and step must be in [0, 2**32)");
  TORCH_CHECK(domain >= 0 && domain < 16 && view >= 0 && view < 256 && slot >= 0 &&
                  slot < (1 << 20),
              "domain must be in [0, 16), view in [0, 256), slot in [0, 2**20)");
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous() && out.dim() == 2,
              "out must be a contiguous float32 [batch, n] tensor");
  TORCH_CHECK(out.size(1) < (int64_t{1} << 31), "too many draws per sample");
  if (sample_ids.has_value()) {
    const auto& ids = *sample_ids;
    TORCH_CHECK(ids.scalar_type() == at::kLong && ids.dim() == 1 && ids.size(0) == out.size(0) &&
                    ids.is_contiguous() && ids.device() == out.device(),
                "sample_ids must be a contiguous int64 vector of batch size on out's device");
  } else {
    TORCH_CHECK(sample_offset >= 0 && sample_offset + out.size(0) <= u32,
                "sample ids must stay in [0, 2**32)");
  }
}

}  // namespace mlvgm

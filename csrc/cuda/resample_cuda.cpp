// Torch glue of the CUDA kernels (built only in CUDA builds): argument checks, device guard,
// the current stream, and the dispatcher registration. The kernels are in resample.cu.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../resample_host.h"
#include "resample_cuda.h"

namespace mlvgm {
namespace {

at::Tensor& resample_cuda(at::Tensor& out, const c10::optional<at::Tensor>& sample_ids,
                          c10::IntArrayRef group_meta, c10::ArrayRef<double> group_params,
                          int64_t batch, int64_t views, bool include_anchor, int64_t seed,
                          int64_t stream, int64_t step, int64_t sample_offset,
                          const c10::optional<at::TensorList>& anchors,
                          c10::IntArrayRef anchor_index) {
  std::vector<GroupRule> groups = unpack_groups(group_meta, group_params);
  attach_anchors(groups, anchors, anchor_index, out, batch);  // device pointers, by value
  check_resample_args(out, sample_ids, groups, batch, views, seed, stream, step, sample_offset);
  TORCH_CHECK(out.is_cuda(), "resample_cuda called with a non-CUDA tensor");
  TORCH_CHECK(batch < (int64_t{1} << 31), "batch_size too large");
  const c10::cuda::CUDAGuard guard(out.device());
  // Enqueued on the caller's current stream (the pipe's producer stream); no host sync here.
  const cudaError_t err = launch_resample(
      groups.data(), static_cast<int>(groups.size()), static_cast<int32_t>(batch),
      static_cast<int32_t>(views), include_anchor, static_cast<uint32_t>(seed),
      static_cast<uint32_t>(stream), static_cast<uint32_t>(step), sample_offset,
      sample_ids.has_value() ? sample_ids->data_ptr<int64_t>() : nullptr, out.data_ptr<float>(),
      at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "resample kernel launch failed: ", cudaGetErrorString(err));
  return out;
}

at::Tensor& uniform_cuda(at::Tensor& out, const c10::optional<at::Tensor>& sample_ids,
                         int64_t seed, int64_t stream, int64_t step, int64_t domain, int64_t view,
                         int64_t slot, int64_t sample_offset) {
  check_uniform_args(out, sample_ids, seed, stream, step, domain, view, slot, sample_offset);
  TORCH_CHECK(out.is_cuda(), "uniform_cuda called with a non-CUDA tensor");
  const c10::cuda::CUDAGuard guard(out.device());
  const cudaError_t err = launch_uniform(
      out.size(0), static_cast<int32_t>(out.size(1)), static_cast<uint32_t>(seed),
      static_cast<uint32_t>(stream), static_cast<uint32_t>(step), static_cast<uint32_t>(domain),
      static_cast<uint32_t>(view), static_cast<uint32_t>(slot), sample_offset,
      sample_ids.has_value() ? sample_ids->data_ptr<int64_t>() : nullptr, out.data_ptr<float>(),
      at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "uniform kernel launch failed: ", cudaGetErrorString(err));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mlvgm_data, CUDA, m) {
  m.impl("resample_", &resample_cuda);
  m.impl("uniform_", &uniform_cuda);
}

}  // namespace mlvgm

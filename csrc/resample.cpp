// Schema of the mlvgm_data ops and the Python module that loads them.
// Kernels: cpu/resample_kernel.cpp (always), cuda/resample.cu + cuda/resample_cuda.cpp (CUDA builds).
// The CPU kernel defines its own private helpers next to it (_cpu_path, _cpu_paths,
// _normals_of_words: which instruction-set path runs, for tests and benchmarks).
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(mlvgm_data, m) {
  // Anchors and num_views views of every group for one batch, into one preallocated flat output.
  // Group g occupies out[out_offset_g : out_offset_g + V*B*numel_g] laid out as [V, B, numel_g].
  // Given anchors: anchor_index (empty, or one per group) names the tensor of `anchors` holding
  // group g's [B, numel_g] anchor rows, -1 for an anchor drawn from the prior.
  m.def(
      "resample_(Tensor(a!) out, Tensor? sample_ids, int[] group_meta, float[] group_params, "
      "int batch_size, int num_views, bool include_anchor, int seed, int stream, int step, "
      "int sample_offset, Tensor[]? anchors=None, int[] anchor_index=[]) -> Tensor(a!)");
  // Uniforms in (0, 1) from the same counter-based streams: out[b, e] for sample b.
  m.def(
      "uniform_(Tensor(a!) out, Tensor? sample_ids, int seed, int stream, int step, int domain, "
      "int view, int slot, int sample_offset) -> Tensor(a!)");
}

PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

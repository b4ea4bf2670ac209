// CPU kernels of mlvgm_data::resample_ and mlvgm_data::uniform_.
//
// Work items are (anchor set, run of samples): each draws the anchors of its rows once and writes
// every view of every group of the set straight into its place in the output ([V, B, numel] per
// group, so an item's rows of one group and view are one contiguous block), sized so an item is
// ~16k floats whatever the group sizes (small groups don't pay per-row or per-group overhead).
// The numbers come from resample_rows.h, compiled for AVX-512, AVX2 and in plain C++ (16 lanes),
// and the path is picked at run time: the best the CPU has, or MLVGM_CPU_PATH. Every path runs
// resample.h's operations per number, so the bits do not depend on the path, the thread count or
// the item split (tests/test_op_paths.py runs each path against the reference).
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../resample_host.h"
#include "item_pool.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// GCC's target pragmas compile the AVX2 and AVX-512 paths into this baseline x86-64 build.
#define MLVGM_X86_PATHS 1
#include <immintrin.h>
#endif

namespace mlvgm {
namespace {

// The counter of one run of rows, less the block and sample words.
struct RowKey {
  uint32_t seed, stream, step, w3;
};

// What each instruction-set path provides (resample_rows.h).
struct Kernels {
  // dst[r * n + e] = truncated_normal(word e of row r, c) for r < rows; row r has sample id samples[r].
  void (*normals)(const RowKey& key, const uint32_t* samples, int64_t rows, int32_t n, float c,
                  float* dst);
  void (*uniforms)(const RowKey& key, const uint32_t* samples, int64_t rows, int32_t n, float* dst);
  void (*perturb)(const float* anchor, float* z, int64_t count, float mu, float sigma);
  void (*normals_of_words)(const uint32_t* words, int64_t count, float c, float* out);
};

#define MLVGM_LANES inline __attribute__((always_inline))

// GCC notes that 64-byte vectors are passed differently with AVX-512 enabled; the generic
// path's lane functions are all inlined, so no call crosses that ABI. (Reported at the end of
// the file, so not in a push/pop region.)
#pragma GCC diagnostic ignored "-Wpsabi"
namespace generic {
#include "simd_generic.h"
#include "resample_rows.h"
}  // namespace generic

#ifdef MLVGM_X86_PATHS
#pragma GCC push_options
#pragma GCC target("avx2")
namespace avx2 {
#include "simd_avx2.h"
#include "resample_rows.h"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f")
// GCC 12 warns about the deliberately undefined pass-through operand of its own AVX-512
// intrinsics (_mm512_undefined_*).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace avx512 {
#include "simd_avx512.h"
#include "resample_rows.h"
}  // namespace avx512
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

#undef MLVGM_LANES

// --- which path runs -------------------------------------------------------------------------

constexpr int kNumPaths = 3;
const char* const kPathNames[kNumPaths] = {"generic", "avx2", "avx512"};

const Kernels* path_kernels(int path) {
  switch (path) {
#ifdef MLVGM_X86_PATHS
    case 2: return &avx512::kernels;
    case 1: return &avx2::kernels;
#endif
    default: return &generic::kernels;
  }
}

bool path_supported(int path) {
  if (path == 0) return true;
#ifdef MLVGM_X86_PATHS
  __builtin_cpu_init();
  if (path == 1) return __builtin_cpu_supports("avx2");
  if (path == 2) return __builtin_cpu_supports("avx512f");
#endif
  return false;
}

int best_path() {
  for (int p = kNumPaths - 1; p > 0; --p) {
    if (path_supported(p)) return p;
  }
  return 0;
}

int path_named(const std::string& name, const char* where) {
  for (int p = 0; p < kNumPaths; ++p) {
    if (name == kPathNames[p]) {
      TORCH_CHECK(path_supported(p), where, "=", name, ": this CPU (or build) has no ", name,
                  " path; the best it has is ", kPathNames[best_path()]);
      return p;
    }
  }
  TORCH_CHECK(false, where, " must be generic, avx2 or avx512, got '", name, "'");
}

// -1 until first use; then the path every call takes.
std::atomic<int> g_path{-1};

int active_path() {
  int p = g_path.load(std::memory_order_relaxed);
  if (p < 0) {
    const char* env = std::getenv("MLVGM_CPU_PATH");
    p = (env != nullptr && *env != '\0') ? path_named(env, "MLVGM_CPU_PATH") : best_path();
    g_path.store(p, std::memory_order_relaxed);
  }
  return p;
}

// --- work split ------------------------------------------------------------------------------

// Output floats per work item: large enough that the per-item cost (a few calls, the sample ids)
// vanishes, small enough that an item's anchors and output stay in L2 and the items balance.
constexpr int64_t kItemFloats = 16384;
// Output floats a helper must get before one is woken: ~80 us of work at ~2.5 ns per number,
// against a wake-up of a few to tens of microseconds (an estimate, not tuned).
constexpr int64_t kFloatsPerThread = 32768;

int helpers_for(int64_t items, int64_t total_floats) {
  if (at::in_parallel_region()) return 0;
  const int64_t threads = std::min<int64_t>(
      {static_cast<int64_t>(at::get_num_threads()), items, total_floats / kFloatsPerThread});
  return static_cast<int>(std::max<int64_t>(threads, 1) - 1);
}

// Rows per item for `batch` rows of `floats_per_row` output floats: items of equal size, at most
// kItemFloats each (512 rows that fit 409 to an item make 2 items of 256, not 409 + 103: uneven
// items leave a thread idle at the end). With k = ceil(batch / max_rows) items of
// ceil(batch / k) <= max_rows rows, the first k - 1 hold fewer than batch rows: none is empty.
int64_t rows_per_item(int64_t batch, int64_t floats_per_row) {
  const int64_t max_rows = std::min(batch, std::max<int64_t>(1, kItemFloats / floats_per_row));
  const int64_t items = (batch + max_rows - 1) / max_rows;
  return (batch + items - 1) / items;
}

// Per-thread scratch, reused across items and calls.
struct Scratch {
  std::vector<uint32_t> samples;
  std::vector<float> anchor;
};
thread_local Scratch tls_scratch;

const uint32_t* sample_ids_of(Scratch& s, const int64_t* ids, int64_t sample_offset, int64_t first,
                              int64_t rows) {
  if (s.samples.size() < static_cast<size_t>(rows)) s.samples.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    s.samples[r] = static_cast<uint32_t>(ids ? ids[first + r] : sample_offset + first + r);
  }
  return s.samples.data();
}

// Groups tied to one anchor (style mixing): the anchor is drawn once per item for all of them,
// or read from the given anchors.
struct AnchorSet {
  std::vector<const GroupRule*> groups;
  int64_t rows_per_item = 1;
  int64_t first_item = 0;
  bool needs_anchor = false;     // some view copies or perturbs it
  const float* given = nullptr;  // the set's given [B, numel] anchor rows, or null: drawn
};

at::Tensor& resample_cpu(at::Tensor& out, const c10::optional<at::Tensor>& sample_ids,
                         c10::IntArrayRef group_meta, c10::ArrayRef<double> group_params,
                         int64_t batch, int64_t views, bool include_anchor, int64_t seed,
                         int64_t stream, int64_t step, int64_t sample_offset,
                         const c10::optional<at::TensorList>& anchors,
                         c10::IntArrayRef anchor_index) {
  std::vector<GroupRule> groups = unpack_groups(group_meta, group_params);
  attach_anchors(groups, anchors, anchor_index, out, batch);
  const int64_t total =
      check_resample_args(out, sample_ids, groups, batch, views, seed, stream, step, sample_offset);
  TORCH_CHECK(out.device().is_cpu(), "resample_cpu called with a non-CPU tensor");
  const Kernels& k = *path_kernels(active_path());
  const int64_t* ids = sample_ids.has_value() ? sample_ids->data_ptr<int64_t>() : nullptr;
  float* dst = out.data_ptr<float>();

  std::vector<AnchorSet> sets;
  for (const GroupRule& g : groups) {
    auto it = std::find_if(sets.begin(), sets.end(),
                           [&](const AnchorSet& s) { return s.groups[0]->slot == g.slot; });
    if (it == sets.end()) it = sets.insert(sets.end(), AnchorSet{});
    it->groups.push_back(&g);
    it->needs_anchor |= include_anchor || g.kind != kResample;
    it->given = g.anchor;  // tied groups share it (checked): the set's anchor is given or drawn
  }
  int64_t items = 0;
  for (AnchorSet& s : sets) {
    const int64_t floats_per_row = int64_t{s.groups[0]->numel} * views * s.groups.size();
    s.rows_per_item = rows_per_item(batch, floats_per_row);
    s.first_item = items;
    items += (batch + s.rows_per_item - 1) / s.rows_per_item;
  }

  const uint32_t seed32 = static_cast<uint32_t>(seed);
  const uint32_t stream32 = static_cast<uint32_t>(stream);
  const uint32_t step32 = static_cast<uint32_t>(step);
  auto run_item = [&](int64_t item) {
    size_t si = 0;
    while (si + 1 < sets.size() && sets[si + 1].first_item <= item) ++si;
    const AnchorSet& set = sets[si];
    const GroupRule& first = *set.groups[0];
    const int32_t n = first.numel;  // tied groups share their shape (checked on the host)
    const int64_t r0 = (item - set.first_item) * set.rows_per_item;
    const int64_t rows = std::min(set.rows_per_item, batch - r0);
    const int64_t count = rows * n;
    Scratch& s = tls_scratch;
    const uint32_t* samples = sample_ids_of(s, ids, sample_offset, r0, rows);

    // A given anchor is read where it is. A drawn one goes to view 0 of the set's first group
    // with include_anchor, else to scratch.
    const float* anchor = nullptr;
    if (set.given != nullptr) {
      anchor = set.given + r0 * n;
    } else if (set.needs_anchor) {
      float* a = dst + first.out_offset + r0 * n;
      if (!include_anchor) {
        if (s.anchor.size() < static_cast<size_t>(count)) s.anchor.resize(count);
        a = s.anchor.data();
      }
      k.normals(RowKey{seed32, stream32, step32, counter_word3(kDomainAnchor, 0, first.slot)},
                samples, rows, n, first.c_anchor, a);
      anchor = a;
    }
    for (const GroupRule* g : set.groups) {
      for (int64_t v = 0; v < views; ++v) {
        float* block = dst + g->out_offset + (v * batch + r0) * n;
        if ((include_anchor && v == 0) || g->kind == kKeep) {
          if (block != anchor) std::memcpy(block, anchor, sizeof(float) * count);
          continue;
        }
        const RowKey key{seed32, stream32, step32,
                         counter_word3(kDomainView, static_cast<uint32_t>(v), g->index)};
        k.normals(key, samples, rows, n, g->c_view, block);
        // Perturb combines the fresh normals with the anchor in place; Resample keeps them.
        if (g->kind == kPerturb) k.perturb(anchor, block, count, g->mu, g->sigma);
      }
    }
  };
  ItemPool::run(items, helpers_for(items, total), run_item);
  return out;
}

at::Tensor& uniform_cpu(at::Tensor& out, const c10::optional<at::Tensor>& sample_ids, int64_t seed,
                        int64_t stream, int64_t step, int64_t domain, int64_t view, int64_t slot,
                        int64_t sample_offset) {
  check_uniform_args(out, sample_ids, seed, stream, step, domain, view, slot, sample_offset);
  TORCH_CHECK(out.device().is_cpu(), "uniform_cpu called with a non-CPU tensor");
  const int64_t batch = out.size(0);
  const int32_t n = static_cast<int32_t>(out.size(1));
  if (batch == 0 || n == 0) return out;
  const Kernels& k = *path_kernels(active_path());
  const int64_t* ids = sample_ids.has_value() ? sample_ids->data_ptr<int64_t>() : nullptr;
  float* dst = out.data_ptr<float>();
  const RowKey key{static_cast<uint32_t>(seed), static_cast<uint32_t>(stream),
                   static_cast<uint32_t>(step),
                   counter_word3(static_cast<uint32_t>(domain), static_cast<uint32_t>(view),
                                 static_cast<uint32_t>(slot))};
  const int64_t item_rows = rows_per_item(batch, n);
  const int64_t items = (batch + item_rows - 1) / item_rows;
  auto run_item = [&](int64_t item) {
    const int64_t r0 = item * item_rows;
    const int64_t rows = std::min(item_rows, batch - r0);
    k.uniforms(key, sample_ids_of(tls_scratch, ids, sample_offset, r0, rows), rows, n,
               dst + r0 * n);
  };
  ItemPool::run(items, helpers_for(items, batch * n), run_item);
  return out;
}

// --- introspection and the exhaustive test's entry point (not part of the op's contract) -----

std::string cpu_path(const c10::optional<std::string>& force) {
  if (force.has_value()) g_path.store(path_named(*force, "cpu_path"), std::memory_order_relaxed);
  return kPathNames[active_path()];
}

std::vector<std::string> cpu_paths() {
  std::vector<std::string> names;
  for (int p = kNumPaths - 1; p >= 0; --p) {
    if (path_supported(p)) names.emplace_back(kPathNames[p]);
  }
  return names;
}

at::Tensor normals_of_words(const at::Tensor& words, double c) {
  TORCH_CHECK(words.device().is_cpu() && words.scalar_type() == at::kInt && words.dim() == 1,
              "words must be a CPU int32 vector");
  const at::Tensor w = words.contiguous();
  at::Tensor out = at::empty({w.numel()}, w.options().dtype(at::kFloat));
  path_kernels(active_path())
      ->normals_of_words(reinterpret_cast<const uint32_t*>(w.data_ptr<int32_t>()), w.numel(),
                         static_cast<float>(c), out.data_ptr<float>());
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(mlvgm_data, m) {
  // The CPU path in use (generic, avx2, avx512); with an argument, switch to it (tests, benchmarks).
  m.def("_cpu_path(str? force=None) -> str", &cpu_path);
  // The paths this CPU and build can run, best first.
  m.def("_cpu_paths() -> str[]", &cpu_paths);
  // truncated_normal(words[i], c) for each int32 word, on the CPU path in use.
  m.def("_normals_of_words(Tensor words, float c) -> Tensor");
}

TORCH_LIBRARY_IMPL(mlvgm_data, CPU, m) {
  m.impl("resample_", &resample_cpu);
  m.impl("uniform_", &uniform_cpu);
  m.impl("_normals_of_words", &normals_of_words);
}

}  // namespace mlvgm

// Host emulation of the CUDA execution model, for tests: compiles csrc/cuda/resample.cu as plain
// C++ (g++, no GPU, no toolkit) so its kernels and launchers run in CI.
//
// Faithful for kernels like ours, whose threads share nothing (no shared memory, __syncthreads,
// warp intrinsics or atomics): each (block, thread) of the grid runs the kernel body once, in a
// random order of blocks and of threads within a block, since a kernel that depends on either
// order is wrong on a GPU. Streams are accepted and ignored (every launch runs to completion).
// A test may cap the grid and override the block size (EmulatedLaunchConfig) to make grid-stride
// loops wrap many times; the kernels must give the same result for any launch shape.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#define __restrict__

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
};

// The built-in variables, per host thread like registers per GPU thread.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

using cudaStream_t = struct CUstream_st*;

// The CUDA runtime's values.
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidConfiguration = 9,
};

inline thread_local cudaError_t emulated_last_error = cudaSuccess;

inline cudaError_t cudaGetLastError() {
  const cudaError_t err = emulated_last_error;
  emulated_last_error = cudaSuccess;
  return err;
}

struct EmulatedLaunchConfig {
  unsigned int max_blocks = 0;     // cap on gridDim.x (0: the launcher's grid)
  unsigned int block_threads = 0;  // blockDim.x to use instead of the launcher's (0: its own)
  uint64_t order_seed = 0;         // seeds the random order of blocks and threads
  int launches = 0;                // launches so far (the test checks the split launch)
};

inline thread_local EmulatedLaunchConfig emulated_launch_config;

namespace cuda_host_emulation {

// Runs body() once per (block, thread), with the built-in variables set as on a GPU.
template <typename Body>
void run_grid(dim3 grid, dim3 block, const Body& body) {
  EmulatedLaunchConfig& cfg = emulated_launch_config;
  if (cfg.max_blocks != 0) grid.x = std::min(grid.x, cfg.max_blocks);
  if (cfg.block_threads != 0) block = dim3(cfg.block_threads);
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  // The limits a GPU launch checks (compute capability >= 3.0).
  if (blocks == 0 || threads == 0 || threads > 1024 || block.z > 64 || grid.y > 65535 ||
      grid.z > 65535 || grid.x > 0x7FFFFFFFu) {
    emulated_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  ++cfg.launches;
  std::mt19937_64 rng(cfg.order_seed + static_cast<uint64_t>(cfg.launches));
  std::vector<uint64_t> block_order(blocks), thread_order(threads);
  std::iota(block_order.begin(), block_order.end(), uint64_t{0});
  std::iota(thread_order.begin(), thread_order.end(), uint64_t{0});
  std::shuffle(block_order.begin(), block_order.end(), rng);
  gridDim = grid;
  blockDim = block;
  for (const uint64_t bi : block_order) {
    blockIdx = uint3{static_cast<unsigned>(bi % grid.x),
                     static_cast<unsigned>(bi / grid.x % grid.y),
                     static_cast<unsigned>(bi / grid.x / grid.y)};
    std::shuffle(thread_order.begin(), thread_order.end(), rng);
    for (const uint64_t ti : thread_order) {
      threadIdx = uint3{static_cast<unsigned>(ti % block.x),
                        static_cast<unsigned>(ti / block.x % block.y),
                        static_cast<unsigned>(ti / block.x / block.y)};
      body();
    }
  }
}

// kernel<<<grid, block, shmem, stream>>>(args...): the arguments are converted to the kernel's
// parameter types once, as the CUDA runtime copies them into the parameter buffer.
template <typename... Params>
struct Launch {
  void (*kernel)(Params...);
  dim3 grid, block;
  size_t shmem;

  template <typename... Args>
  void operator()(Args&&... args) const {
    // Dynamic shared memory is shared by the threads of a block: not emulated.
    if (shmem != 0) {
      emulated_last_error = cudaErrorInvalidConfiguration;
      return;
    }
    const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
    run_grid(grid, block, [&] { std::apply(kernel, params); });
  }
};

template <typename... Params>
Launch<Params...> launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shmem,
                         cudaStream_t) {
  return Launch<Params...>{kernel, grid, block, shmem};
}

}  // namespace cuda_host_emulation

#define MLVGM_LAUNCH(kernel, grid, block, shmem, stream) \
  ::cuda_host_emulation::launch(kernel, grid, block, shmem, stream)

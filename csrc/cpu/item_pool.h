// A parallel loop over work items that never waits for a thread that has not started.
//
// at::parallel_for (OpenMP in torch's CPU wheels) gives each thread a fixed share and joins at a
// barrier, so when the machine is busy and one of its threads is descheduled, the call waits for
// that thread's time slice: on this project's 2-core machine, shared with a training job, the
// op took 4-6x longer on 2 threads than on 1. Here the calling thread and up to `helpers` pool
// threads claim items from a counter, and the caller returns once every claimed item is done: a
// helper that wakes late finds nothing left, and one descheduled mid-item delays the call by at
// most that item. Sleeping threads wait on a condition variable (no spinning that would take a
// core from the job they share it with).
#pragma once
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

namespace mlvgm {

class ItemPool {
 public:
  // Runs fn(i) for every i in [0, items), on the calling thread and up to `helpers` pool threads.
  template <class Fn>
  static void run(int64_t items, int helpers, const Fn& fn) {
    if (helpers <= 0 || items <= 1) {
      for (int64_t i = 0; i < items; ++i) fn(i);
      return;
    }
    auto job = std::make_shared<Job>();
    job->body = [](const void* ctx, int64_t i) { (*static_cast<const Fn*>(ctx))(i); };
    job->ctx = &fn;
    job->items = items;
    job->helpers = helpers;
    instance().post(job);
    work(*job);
    std::unique_lock<std::mutex> lock(job->mutex);
    job->finished.wait(lock, [&] { return job->all_done; });
  }

 private:
  struct Job {
    void (*body)(const void* ctx, int64_t item) = nullptr;
    const void* ctx = nullptr;  // the caller's fn: only touched for a claimed item
    int64_t items = 0;
    int helpers = 0;  // pool threads with an index below this take part
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mutex;
    std::condition_variable finished;
    bool all_done = false;
  };

  static void work(Job& job) {
    for (;;) {
      const int64_t i = job.next.fetch_add(1, std::memory_order_relaxed);
      if (i >= job.items) return;
      job.body(job.ctx, i);
      if (job.done.fetch_add(1, std::memory_order_acq_rel) + 1 == job.items) {
        std::lock_guard<std::mutex> lock(job.mutex);
        job.all_done = true;
        job.finished.notify_all();
      }
    }
  }

  // One pool per process, created on first use and never destroyed (its threads are detached and
  // block forever in the last wait). A forked child has none of the parent's threads: it starts
  // a new pool and leaves the parent's, whose mutex may have been held at the fork, untouched.
  static ItemPool& instance() {
    static std::once_flag registered;
    std::call_once(registered, [] { pthread_atfork(nullptr, nullptr, [] { current() = nullptr; }); });
    ItemPool* pool = current().load(std::memory_order_acquire);
    if (pool == nullptr) {
      static std::mutex creating;  // only the first calls of a process (or a child) take it
      std::lock_guard<std::mutex> lock(creating);
      pool = current().load(std::memory_order_acquire);
      if (pool == nullptr) {
        pool = new ItemPool();
        current().store(pool, std::memory_order_release);
      }
    }
    return *pool;
  }

  static std::atomic<ItemPool*>& current() {
    static std::atomic<ItemPool*> pool{nullptr};
    return pool;
  }

  void post(const std::shared_ptr<Job>& job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (threads_ < job->helpers) {
        std::thread([this, index = threads_] { loop(index); }).detach();
        ++threads_;
      }
      job_ = job;
      ++generation_;
    }
    wake_.notify_all();
  }

  void loop(int index) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      std::shared_ptr<Job> job = job_;
      lock.unlock();
      if (job && index < job->helpers) work(*job);
      job.reset();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<Job> job_;  // the latest job; a newer one replaces it (its caller still finishes)
  uint64_t generation_ = 0;
  int threads_ = 0;
};

}  // namespace mlvgm

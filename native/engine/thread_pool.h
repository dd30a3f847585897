// A fixed set of worker threads for data-parallel loops. Kernels are written so that every
// output element is produced by one thread with the same instruction sequence whatever the split,
// so which thread computes an element never changes its value. parallel_for therefore hands out
// chunks dynamically: a thread slowed by other load (the JS main thread, another process) leaves
// its chunks to the others instead of holding up the whole loop.
//
// Waiting: between jobs a worker, and the caller waiting for a job's end, first spin for a short
// while (kSpinMicros) and only then sleep on a condition variable. A forward is hundreds of short
// loops separated by short serial steps; sleeping and waking through the kernel between them
// cost up to a fifth of the engine's CPU time inside node (bench/RESULTS.md).
//
// Cancellation without kernel changes: while a CancelScope is active on the calling thread,
// parallel_for runs each thread's share in pieces of about 20 ms of work (sized by measuring the
// pieces already run) and throws Cancelled at the next piece boundary once the flag is set;
// run_on_all checks the flag before it starts. Without a scope, loops run in one piece per thread.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "cancel.h"

namespace ditpoc {

class ThreadPool {
 public:
  // threads <= 0 means one per hardware thread.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) on contiguous chunks covering [0, n); the calling thread takes part.
  // Blocks until all chunks are done. Exceptions from fn are rethrown on the calling thread.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  // Calls fn(thread_index, thread_count) once on each thread.
  void run_on_all(const std::function<void(int, int)>& fn);

  // Installs `flag` (may be null) as the cancel flag of the loops this thread starts, for the
  // scope's lifetime. Scopes nest; each thread has its own (concurrent forwards do not mix).
  class CancelScope {
   public:
    explicit CancelScope(const std::atomic<bool>* flag);
    ~CancelScope();
    CancelScope(const CancelScope&) = delete;
    CancelScope& operator=(const CancelScope&) = delete;

   private:
    const std::atomic<bool>* previous_;
  };

  // Throws Cancelled when the calling thread's cancel flag is set. Inside run_on_all the workers
  // carry the caller's flag, so a kernel that schedules its own work units there (the GEMM) may
  // call this between units to stop sooner.
  static void check_cancelled();

 private:
  void worker_loop(int index);
  // fn over [begin, end) on this thread, in timed pieces when `flag` is set (see the header).
  static void run_range(int64_t begin, int64_t end, const std::atomic<bool>* flag,
                        const std::function<void(int64_t, int64_t)>& fn);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  // Written by the caller under mu_ before generation_ is bumped (release); read by the workers
  // after they see the new generation (acquire), while the caller waits for pending_ to reach 0.
  const std::function<void(int, int)>* job_ = nullptr;
  const std::atomic<bool>* job_cancel_ = nullptr;  // the caller's cancel flag, for the workers
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // guarded by mu_
  std::mutex run_mu_;  // one job at a time
};

}  // namespace ditpoc

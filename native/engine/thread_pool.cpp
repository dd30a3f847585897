#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace ditpoc {

namespace {
thread_local const std::atomic<bool>* tls_cancel = nullptr;
// Work per piece of a cancellable loop: short enough that a stop is seen within ~100 ms even
// when pieces vary, long enough that the extra calls cost nothing measurable.
constexpr double kPieceSeconds = 0.02;
// Chunks per thread in parallel_for: enough to rebalance around a descheduled thread, few
// enough that handing them out costs nothing measurable.
constexpr int64_t kChunksPerThread = 4;

// How a waiting thread waits: it polls with sched_yield for spin_micros(), then sleeps on a
// condition variable. Polling keeps the (virtual) CPU awake, so the next loop of a forward, which
// usually starts within microseconds, does not pay a futex wake-up of a halted vCPU; yielding
// (rather than spinning with `pause`) hands the core to any runnable thread, so an
// oversubscribed machine does not lose its share to the poll: with `pause` a wan-tiny forward
// ran 3× slower at load 4 on 2 vCPUs, with sched_yield as fast as sleeping at once.
// DITPOC_POOL_SPIN_US overrides the time (0 = sleep at once), for measurements.
int64_t spin_micros() {
  static const int64_t us = [] {
    const char* e = std::getenv("DITPOC_POOL_SPIN_US");
    if (!e || !*e) return int64_t(200);
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    return (*end == 0 && v >= 0 && v <= 1000000) ? int64_t(v) : int64_t(200);
  }();
  return us;
}

// Polls until done() or until spin_micros() have passed; returns done().
template <class Done>
bool spin_until(Done done) {
  const int64_t limit = spin_micros();
  if (limit == 0) return done();
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(limit);
  for (;;) {
    if (done()) return true;
    std::this_thread::yield();
    if (std::chrono::steady_clock::now() > end) return done();
  }
}
}  // namespace

ThreadPool::CancelScope::CancelScope(const std::atomic<bool>* flag) : previous_(tls_cancel) {
  tls_cancel = flag;
}

ThreadPool::CancelScope::~CancelScope() { tls_cancel = previous_; }

void ThreadPool::check_cancelled() {
  if (tls_cancel && tls_cancel->load(std::memory_order_relaxed)) throw Cancelled();
}

void ThreadPool::run_range(int64_t begin, int64_t end, const std::atomic<bool>* flag,
                           const std::function<void(int64_t, int64_t)>& fn) {
  if (!flag) {
    fn(begin, end);
    return;
  }
  using clock = std::chrono::steady_clock;
  // The first piece is one item (its cost is unknown); later ones are sized from the measured
  // rate, so a cheap loop takes two calls and an expensive one is checked every ~20 ms.
  int64_t piece = 1;
  for (int64_t i = begin; i < end;) {
    if (flag->load(std::memory_order_relaxed)) throw Cancelled();
    const int64_t e = std::min(end, i + piece);
    const auto t0 = clock::now();
    fn(i, e);
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    const double per_item = s / static_cast<double>(e - i);
    i = e;
    const double next = per_item > 0 ? kPieceSeconds / per_item : static_cast<double>(end - i);
    piece = static_cast<int64_t>(std::clamp(next, 1.0, static_cast<double>(std::max<int64_t>(1, end - i))));
  }
}

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  auto has_work = [&] {
    return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
  };
  for (;;) {
    if (!spin_until(has_work)) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_start_.wait(lock, has_work);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    const std::function<void(int, int)>* job = job_;
    const std::atomic<bool>* cancel = job_cancel_;
    try {
      CancelScope scope(cancel);
      (*job)(index, size());
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
    // The last worker out wakes the caller if it sleeps; taking mu_ orders the notify after the
    // caller's check of pending_ under mu_, so the wake-up cannot be lost.
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_done_.notify_one();
    }
  }
}

void ThreadPool::run_on_all(const std::function<void(int, int)>& fn) {
  check_cancelled();
  std::lock_guard<std::mutex> run_lock(run_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_cancel_ = tls_cancel;
    error_ = nullptr;
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_start_.notify_all();
  std::exception_ptr mine;
  try {
    fn(0, size());
  } catch (...) {
    mine = std::current_exception();
  }
  auto all_done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  spin_until(all_done);
  std::unique_lock<std::mutex> lock(mu_);
  cv_done_.wait(lock, all_done);
  job_ = nullptr;
  if (mine) std::rethrow_exception(mine);
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const std::atomic<bool>* flag = tls_cancel;  // the workers see the caller's flag
  if (workers_.empty() || n == 1) {
    run_range(0, n, flag, fn);
    return;
  }
  const int64_t chunks = std::min<int64_t>(n, kChunksPerThread * size());
  std::atomic<int64_t> next{0};
  run_on_all([&](int, int) {
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      run_range(n * c / chunks, n * (c + 1) / chunks, flag, fn);
    }
  });
}

}  // namespace ditpoc

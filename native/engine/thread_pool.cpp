#include "thread_pool.h"

#include <algorithm>
#include <chrono>

namespace ditpoc {

namespace {
thread_local const std::atomic<bool>* tls_cancel = nullptr;
// Work per piece of a cancellable loop: short enough that a stop is seen within ~100 ms even
// when pieces vary, long enough that the extra calls cost nothing measurable.
constexpr double kPieceSeconds = 0.02;
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
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int, int)>* job;
    const std::atomic<bool>* cancel;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      cancel = job_cancel_;
    }
    try {
      CancelScope scope(cancel);
      (*job)(index, size());
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (--pending_ == 0) cv_done_.notify_one();
  }
}

void ThreadPool::run_on_all(const std::function<void(int, int)>& fn) {
  check_cancelled();
  std::lock_guard<std::mutex> run_lock(run_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_cancel_ = tls_cancel;
    pending_ = static_cast<int>(workers_.size());
    error_ = nullptr;
    ++generation_;
  }
  cv_start_.notify_all();
  std::exception_ptr mine;
  try {
    fn(0, size());
  } catch (...) {
    mine = std::current_exception();
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_done_.wait(lock, [&] { return pending_ == 0; });
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
  run_on_all([&](int t, int count) {
    const int64_t begin = n * t / count, end = n * (t + 1) / count;
    if (begin < end) run_range(begin, end, flag, fn);
  });
}

}  // namespace ditpoc

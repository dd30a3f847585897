// The pool's cancellation: a set flag ends a long parallel_for within a piece (~20 ms of work),
// on every thread, with Cancelled; with the flag clear, pieces cover the range exactly once.
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <chrono>
#include <thread>
#include <vector>

#include "check.h"
#include "thread_pool.h"

using namespace ditpoc;
using clock_type = std::chrono::steady_clock;

namespace {

void busy_for(std::chrono::microseconds d) {
  const auto until = clock_type::now() + d;
  while (clock_type::now() < until) {
  }
}

}  // namespace

int main() {
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    std::atomic<bool> flag{false};

    // Flag clear: every index is visited once, whatever the pieces.
    {
      ThreadPool::CancelScope scope(&flag);
      const int64_t n = 10007;
      std::vector<std::atomic<int>> seen(n);
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) seen[i].fetch_add(1);
        busy_for(std::chrono::microseconds(20));
      });
      int bad = 0;
      for (auto& s : seen) bad += s.load() != 1;
      CHECK_MSG(bad == 0, "threads %d: %d indices not visited exactly once", threads, bad);
    }

    // A loop of ~60 s of work (1 ms per item) stops soon after the flag is set.
    {
      ThreadPool::CancelScope scope(&flag);
      std::thread setter([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        flag.store(true);
      });
      const auto t0 = clock_type::now();
      bool cancelled = false;
      try {
        pool.parallel_for(60000 * threads, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) busy_for(std::chrono::microseconds(1000));
        });
      } catch (const Cancelled&) {
        cancelled = true;
      }
      setter.join();
      const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
      CHECK_MSG(cancelled, "threads %d: no Cancelled", threads);
      // 0.1 s until the flag, then at most a piece; generous for a loaded machine.
      CHECK_MSG(s < 5.0, "threads %d: cancel took %.2f s", threads, s);
      // run_on_all refuses to start once the flag is set.
      bool refused = false;
      try {
        pool.run_on_all([](int, int) {});
      } catch (const Cancelled&) {
        refused = true;
      }
      CHECK(refused);
      flag.store(false);
    }

    // Inside run_on_all every thread carries the caller's flag: check_cancelled() stops them.
    {
      ThreadPool::CancelScope scope(&flag);
      std::atomic<int> started{0};
      std::thread setter([&] {
        while (started.load() < threads) std::this_thread::yield();
        flag.store(true);
      });
      bool cancelled = false;
      const auto t0 = clock_type::now();
      try {
        pool.run_on_all([&](int, int) {
          started.fetch_add(1);
          for (;;) {  // a kernel's own loop of work units, checking between them
            ThreadPool::check_cancelled();
            busy_for(std::chrono::microseconds(500));
          }
        });
      } catch (const Cancelled&) {
        cancelled = true;
      }
      setter.join();
      CHECK_MSG(cancelled, "threads %d: run_on_all body not cancelled", threads);
      CHECK(std::chrono::duration<double>(clock_type::now() - t0).count() < 5.0);
      flag.store(false);
    }

    // Without a scope the flag is not consulted.
    {
      flag.store(true);
      int64_t total = 0;
      std::mutex mu;
      pool.parallel_for(100, [&](int64_t b, int64_t e) {
        std::lock_guard<std::mutex> l(mu);
        total += e - b;
      });
      CHECK(total == 100);
      flag.store(false);
    }

    // Many short jobs back to back, some after a pause longer than the poll (so the workers
    // alternate between polling and sleeping): every index once per job, every exception
    // delivered, no job lost or run twice.
    {
      int bad = 0, caught = 0;
      for (int job = 0; job < 3000; ++job) {
        if (job % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        const int64_t n = 1 + job % 37;
        std::vector<std::atomic<int>> seen(n);
        try {
          pool.parallel_for(n, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
              seen[i].fetch_add(1);
              if (job % 100 == 7 && i == n - 1) throw std::runtime_error("boom");
            }
          });
        } catch (const std::runtime_error&) {
          ++caught;
        }
        for (auto& v : seen) bad += v.load() != 1;
      }
      CHECK_MSG(bad == 0, "threads %d: %d indices not visited exactly once", threads, bad);
      CHECK_MSG(caught == 30, "threads %d: %d of 30 exceptions delivered", threads, caught);
    }
  }
  return check::finish("test_thread_pool");
}

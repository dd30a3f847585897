// One thread per loaded model runs its compute jobs (forwards, denoiser calls) in submission
// order and hands each result back to the JS thread. A job queued behind a running one starts the
// moment it ends, on the same thread, without waking another and without holding a libuv worker
// (the pool that fs and crypto share) while it waits. With one AsyncWorker per forward, each
// batch woke several threads, each of which could preempt an engine thread on a small machine
// (bench/RESULTS.md, "`generate` ÷ C++ with the nonce path in the engine").
#pragma once
#include <napi.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

namespace ditpoc::binding {

// A unit of work: Execute on the engine thread, then Settle on the JS thread (resolve or reject
// its promise). Deleted on the JS thread after Settle.
class EngineJob {
 public:
  virtual ~EngineJob() = default;
  virtual void Execute() = 0;
  virtual void Settle(Napi::Env env) = 0;
};

// EngineJob with a promise: Run() fills it on the engine thread (throwing rejects the promise
// with the exception's message), Result() builds the resolved value on the JS thread.
class PromiseJob : public EngineJob {
 public:
  explicit PromiseJob(Napi::Env env) : deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() const { return deferred_.Promise(); }
  void Execute() final;
  void Settle(Napi::Env env) final;

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  Napi::Promise::Deferred deferred_;
  std::string error_;
  bool failed_ = false;
};

class EngineQueue {
 public:
  explicit EngineQueue(Napi::Env env);
  // Closes the queue: the thread finishes the jobs it has and ends.
  ~EngineQueue() { close(); }
  EngineQueue(const EngineQueue&) = delete;
  EngineQueue& operator=(const EngineQueue&) = delete;

  // JS thread. Takes ownership; throws Napi::Error once the queue is closed.
  void submit(Napi::Env env, std::unique_ptr<EngineJob> job);
  // JS thread. No more jobs; idempotent.
  void close();

  // Shared with the thread, which outlives this object until its queue drains, and with the
  // environment's cleanup hook.
  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace ditpoc::binding

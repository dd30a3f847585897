#include "engine_queue.h"

#include <exception>
#include <thread>

namespace ditpoc::binding {

void PromiseJob::Execute() {
  try {
    Run();
  } catch (const std::exception& e) {
    failed_ = true;
    error_ = e.what();
  } catch (...) {
    failed_ = true;
    error_ = "unknown engine error";
  }
}

void PromiseJob::Settle(Napi::Env env) {
  if (failed_) {
    deferred_.Reject(Napi::Error::New(env, error_).Value());
    return;
  }
  try {
    deferred_.Resolve(Result(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

struct EngineQueue::State {
  std::mutex mu;  // guards jobs, closed, env_gone, and every use of to_js off the JS thread
  std::condition_variable cv;
  std::deque<EngineJob*> jobs;  // owned: submitted, not yet taken by the thread
  bool closed = false;
  // Set by the environment's cleanup hook: to_js is being destroyed, the thread must not touch
  // it again (a job finishing later is left to the exiting process).
  bool env_gone = false;
  Napi::ThreadSafeFunction to_js;  // carries finished jobs to the JS thread
  int unsettled = 0;               // JS thread only: submitted and not yet settled
};

namespace {
// Runs on the JS thread as the environment shuts down, before its thread-safe functions are
// destroyed (cleanup hooks run in reverse order of registration, and to_js was made first).
void on_env_cleanup(void* arg) {
  auto* held = static_cast<std::shared_ptr<EngineQueue::State>*>(arg);
  {
    std::lock_guard<std::mutex> lock((*held)->mu);
    (*held)->env_gone = true;
    (*held)->closed = true;
    (*held)->jobs.clear();  // never started: no forward begins while the process exits
  }
  (*held)->cv.notify_one();
  delete held;
}
}  // namespace

EngineQueue::EngineQueue(Napi::Env env) : state_(std::make_shared<State>()) {
  state_->to_js = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                                "dit-poc engine", 0, 1);
  state_->to_js.Unref(env);  // an idle model does not keep the process alive
  // The hook holds the state until the environment ends, whatever becomes of this object.
  napi_add_env_cleanup_hook(env, on_env_cleanup, new std::shared_ptr<State>(state_));
  std::thread([s = state_] {
    for (;;) {
      EngineJob* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(s->mu);
        s->cv.wait(lock, [&] { return s->closed || !s->jobs.empty(); });
        if (s->jobs.empty()) break;  // closed and drained
        job = s->jobs.front();
        s->jobs.pop_front();
      }
      job->Execute();
      std::lock_guard<std::mutex> lock(s->mu);
      if (s->env_gone) return;  // the job is left to the exiting process
      // The queue is unbounded: this never blocks.
      s->to_js.BlockingCall(job, [s](Napi::Env env, Napi::Function, EngineJob* done) {
        done->Settle(env);
        delete done;
        if (--s->unsettled == 0) s->to_js.Unref(env);
      });
    }
    std::lock_guard<std::mutex> lock(s->mu);
    if (!s->env_gone) s->to_js.Release();
  }).detach();
}

void EngineQueue::submit(Napi::Env env, std::unique_ptr<EngineJob> job) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->closed) throw Napi::Error::New(env, "model is disposed");
    state_->jobs.push_back(job.release());
  }
  if (state_->unsettled++ == 0) state_->to_js.Ref(env);  // pending work keeps the process alive
  state_->cv.notify_one();
}

void EngineQueue::close() {
  if (!state_) return;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->closed = true;
  }
  state_->cv.notify_one();
}

}  // namespace ditpoc::binding

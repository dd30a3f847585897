// hardExit(code): ends the process at once, without Node's exit path. process.exit() runs
// libuv's library shutdown, which joins the thread pool and so waits for any native work in
// flight (a forward that cannot be cancelled, a weights load) — minutes, in the worst case.
// `serve --shutdown-timeout` needs a bound that holds regardless; everything it must keep is on
// disk already (the spool is durable, logs are written synchronously).
#include <napi.h>

#include <cstdlib>

namespace {

Napi::Value HardExit(const Napi::CallbackInfo& info) {
  const int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  std::_Exit(code);
}

}  // namespace

void register_hard_exit(Napi::Object exports) {
  exports.Set("hardExit", Napi::Function::New(exports.Env(), HardExit));
}

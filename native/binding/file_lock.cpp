// An OS-level exclusive lock on a file (flock), for the serve spool directory. Node has no
// flock; a pid written into a lock file cannot tell a dead owner from a stranger that reuses its
// pid. The kernel drops a flock when its holder's descriptor closes, which includes every kind of
// process death (kill -9 too), so a stale lock never blocks a start.
//
// lockFile(path) → fd (the lock is held while fd stays open), or throws an Error with code
// 'ELOCKED' when another open file description holds it; unlockFile(fd) closes it.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace {

Napi::Error errno_error(Napi::Env env, const std::string& what, int err, const char* code) {
  auto e = Napi::Error::New(env, what + ": " + std::strerror(err));
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

Napi::Value LockFile(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "lockFile: path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw errno_error(env, "cannot open lock file " + path, errno, "EOPEN");
  int rc;
  do rc = ::flock(fd, LOCK_EX | LOCK_NB);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    throw errno_error(env, "cannot lock " + path, err, err == EWOULDBLOCK ? "ELOCKED" : "ELOCK");
  }
  return Napi::Number::New(env, fd);
}

Napi::Value UnlockFile(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "unlockFile: fd must be a number");
  ::close(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

}  // namespace

void register_file_lock(Napi::Object exports) {
  auto env = exports.Env();
  exports.Set("lockFile", Napi::Function::New(env, LockFile));
  exports.Set("unlockFile", Napi::Function::New(env, UnlockFile));
}

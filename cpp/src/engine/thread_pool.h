// The engine's worker threads (EngineOptions::threads > 1). Ops split their work into tasks
// with parallel_for; an engine makes its pool current on the calling thread while it plans
// and runs, so op code needs no pool argument and runs inline (one worker) outside.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace picoface {
namespace engine {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads - 1 workers beside the calling thread
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  // fn(task, worker) for every task in [0, tasks), worker in [0, threads()) (0: the caller).
  // Returns when all tasks are done; the first exception thrown by a task is rethrown here.
  void run(std::int64_t tasks, const std::function<void(std::int64_t, int)>& fn);

 private:
  void work(int worker);
  void drain(int worker);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(std::int64_t, int)>* fn_ = nullptr;
  std::int64_t tasks_ = 0, next_ = 0, finished_ = 0;
  std::uint64_t generation_ = 0;
  int busy_ = 0;  // workers inside drain() for the current generation
  bool stop_ = false;
  std::exception_ptr error_;
};

// Makes `pool` current on this thread for the guard's lifetime (nullptr: inline).
class CurrentPool {
 public:
  explicit CurrentPool(ThreadPool* pool);
  ~CurrentPool();

 private:
  ThreadPool* previous_;
};

// Workers of the current pool (1 without one): ops size per-worker scratch with it at plan time.
int worker_count();
// Runs fn(task, worker) for tasks [0, n) on the current pool, or inline as worker 0.
void parallel_for(std::int64_t n, const std::function<void(std::int64_t, int)>& fn);

}  // namespace engine
}  // namespace picoface

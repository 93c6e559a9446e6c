#include "thread_pool.h"

namespace picoface {
namespace engine {

namespace {
thread_local ThreadPool* current = nullptr;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int w = 1; w < threads; ++w) workers_.emplace_back([this, w] { work(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

// Takes tasks until none is left; records the first exception.
void ThreadPool::drain(int worker) {
  std::unique_lock<std::mutex> lock(mutex_);
  while (next_ < tasks_) {
    const std::int64_t task = next_++;
    lock.unlock();
    try {
      (*fn_)(task, worker);
    } catch (...) {
      lock.lock();
      if (!error_) error_ = std::current_exception();
      ++finished_;
      continue;
    }
    lock.lock();
    ++finished_;
  }
}

void ThreadPool::work(int worker) {
  std::uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    ++busy_;
    lock.unlock();
    drain(worker);
    lock.lock();
    --busy_;
    done_.notify_all();
  }
}

void ThreadPool::run(std::int64_t tasks, const std::function<void(std::int64_t, int)>& fn) {
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1) {
    for (std::int64_t t = 0; t < tasks; ++t) fn(t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    tasks_ = tasks;
    next_ = finished_ = 0;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  drain(0);
  std::unique_lock<std::mutex> lock(mutex_);
  // All tasks finished and no worker still inside drain() of this generation (it would read
  // fn_ after we return).
  done_.wait(lock, [&] { return finished_ == tasks_ && busy_ == 0; });
  fn_ = nullptr;
  tasks_ = 0;
  if (error_) std::rethrow_exception(error_);
}

CurrentPool::CurrentPool(ThreadPool* pool) : previous_(current) { current = pool; }
CurrentPool::~CurrentPool() { current = previous_; }

int worker_count() { return current ? current->threads() : 1; }

void parallel_for(std::int64_t n, const std::function<void(std::int64_t, int)>& fn) {
  if (current) {
    current->run(n, fn);
    return;
  }
  for (std::int64_t t = 0; t < n; ++t) fn(t, 0);
}

}  // namespace engine
}  // namespace picoface

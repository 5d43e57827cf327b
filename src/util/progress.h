// A progress line for long loops: done/total, items/s, ETA, and optional extra
// rates (e.g. tokens/s). Redraws in place on a terminal; elsewhere (logs, CI)
// prints a plain line at most every `log_interval_s` seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace flame {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, std::string unit = "it", FILE* out = stderr);
  ~ProgressBar();

  // Adds `n` finished items and `extra` units of the secondary counter (if any).
  void advance(int64_t n, int64_t extra = 0);
  // Names the secondary counter, e.g. "tok": it is shown as a rate too.
  void set_extra_unit(std::string unit) { extra_unit_ = std::move(unit); }
  // Items done before this run (a resumed job): counted in done, not in the rate.
  void set_initial(int64_t done);
  // Prints the final line once; later calls do nothing.
  void finish();

  int64_t done() const { return done_; }
  double elapsed_seconds() const;
  double items_per_second() const;

  // Formats seconds as H:MM:SS or M:SS.
  static std::string format_duration(double seconds);

 private:
  void draw(bool final_line);

  std::string label_;
  int64_t total_;
  std::string unit_;
  std::string extra_unit_;
  FILE* out_;
  bool is_tty_;
  int64_t initial_ = 0;
  int64_t done_ = 0;
  int64_t extra_ = 0;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  double log_interval_s_ = 10.0;
};

}  // namespace flame

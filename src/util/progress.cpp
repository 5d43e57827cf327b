#include "util/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace flame {

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, FILE* out)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      out_(out),
      is_tty_(out != nullptr && isatty(fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::set_initial(int64_t done) {
  initial_ = done;
  done_ = done;
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double ProgressBar::items_per_second() const {
  const double t = elapsed_seconds();
  return t > 0 ? static_cast<double>(done_ - initial_) / t : 0.0;
}

std::string ProgressBar::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

void ProgressBar::advance(int64_t n, int64_t extra) {
  done_ += n;
  extra_ += extra;
  const auto now = std::chrono::steady_clock::now();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (since_draw >= (is_tty_ ? 0.2 : log_interval_s_)) {
    last_draw_ = now;
    draw(false);
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void ProgressBar::draw(bool final_line) {
  if (out_ == nullptr) return;
  const double t = elapsed_seconds();
  const double rate = items_per_second();
  std::string line = fmt::format("{}: {}", label_, done_);
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    line += fmt::format("/{} {} ({:5.1f}%)", total_, unit_, 100.0 * frac);
  } else {
    line += " " + unit_;
  }
  line += fmt::format(" | {:.1f} {}/s", rate, unit_);
  if (!extra_unit_.empty()) {
    line += fmt::format(" | {:.0f} {}/s", t > 0 ? extra_ / t : 0.0, extra_unit_);
  }
  line += " | elapsed " + format_duration(t);
  if (total_ > 0 && !final_line) {
    const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : NAN;
    line += " | ETA " + format_duration(eta);
  }
  if (is_tty_) {
    fmt::print(out_, "\r\033[K{}{}", line, final_line ? "\n" : "");
  } else {
    fmt::print(out_, "{}\n", line);
  }
  std::fflush(out_);
}

}  // namespace flame

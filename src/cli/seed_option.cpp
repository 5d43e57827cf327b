#include <charconv>
#include <system_error>

#include "cli/commands.h"
#include "util/error.h"

namespace flame::cli {

void add_seed_option(CLI::App& cmd, uint64_t& seed, const std::string& help) {
  cmd.add_option_function<std::string>(
         "--seed",
         [&seed](const std::string& text) {
           uint64_t value = 0;
           const char* end = text.data() + text.size();
           const auto [ptr, ec] = std::from_chars(text.data(), end, value);
           if (text.empty() || ec != std::errc() || ptr != end)
             fail("--seed must be an integer in [0, 2^64), not '{}'", text);
           seed = value;
         },
         help)
      ->default_str(std::to_string(seed));
}

}  // namespace flame::cli

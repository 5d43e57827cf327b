#include "util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "util/error.h"

namespace flame {

void set_log_level(const std::string& level_name) {
  const auto level = spdlog::level::from_str(level_name);
  // from_str maps unknown names to "off"; only accept "off" when asked for.
  if (level == spdlog::level::off && level_name != "off") {
    fail("unknown log level '{}' (use trace, debug, info, warn, error or off)", level_name);
  }
  static bool initialised = false;
  if (!initialised) {
    auto logger = spdlog::stderr_color_mt("flame");
    logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    spdlog::set_default_logger(logger);
    initialised = true;
  }
  spdlog::set_level(level);
}

}  // namespace flame

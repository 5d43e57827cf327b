// Logging through spdlog: one stderr logger, level chosen by --log-level.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace flame {

// Sets the global log level from a name: trace, debug, info, warn, error, off.
// Throws flame::Error on an unknown name.
void set_log_level(const std::string& level_name);

}  // namespace flame

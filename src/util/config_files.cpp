#include "util/config_files.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>

#include "util/error.h"
#include "util/strings.h"

namespace flame {

std::filesystem::path config_dir(const std::string& kind) {
  if (const char* env = std::getenv("FLAME_CONFIG_DIR")) return std::filesystem::path(env) / kind;
  return std::filesystem::path(FLAME_SOURCE_DIR) / "configs" / kind;
}

std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("FLAME_SHARED_DIR")) return env;
  return (std::filesystem::path(FLAME_SOURCE_DIR) / ".." / "shared").lexically_normal();
}

std::vector<std::string> list_presets(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::filesystem::path find_preset(const std::string& name_or_path, const ConfigKind& kind) {
  const bool is_path = std::filesystem::is_regular_file(name_or_path) || ends_with(name_or_path, ".json") ||
                       name_or_path.find('/') != std::string::npos;
  const std::filesystem::path path =
      is_path ? std::filesystem::path(name_or_path) : kind.dir / (name_or_path + ".json");
  if (!std::filesystem::is_regular_file(path)) {
    if (is_path) fail("{} config '{}' does not exist", kind.noun, path.string());
    fail("unknown {} '{}' (no file '{}'; presets: {})", kind.preset_noun, name_or_path, path.string(),
         fmt::join(list_presets(kind.dir), ", "));
  }
  return path;
}

}  // namespace flame

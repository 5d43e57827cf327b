// The configs/ tree (model presets, prompt sets, benchmarks): where it lives
// and how a preset name or a JSON path is resolved to a file; and the shared
// tree (tokenizers/, data/) that presets and benchmarks refer to.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace flame {

// $FLAME_CONFIG_DIR/<kind>, else the source tree's configs/<kind>.
std::filesystem::path config_dir(const std::string& kind);

// The shared tree: $FLAME_SHARED_DIR, else the source tree's ../shared.
std::filesystem::path shared_dir();

// The stems of the *.json files directly in `dir`, sorted; none when `dir` is absent.
std::vector<std::string> list_presets(const std::filesystem::path& dir);

// `name_or_path` is a path when it ends in ".json" or contains '/', else a
// preset name looked up as dir/<name>.json. Throws flame::Error, using `what`
// ("model", "text tower"), when the file does not exist; for a name, the
// message lists the presets in `dir`.
std::filesystem::path find_preset(const std::string& name_or_path, const std::filesystem::path& dir,
                                  const std::string& what);

}  // namespace flame

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

// A kind of config file: where its presets live and how messages name it.
struct ConfigKind {
  std::filesystem::path dir;  // the presets: dir/<name>.json
  std::string noun;           // "model": "model config 'x.json' does not exist"
  std::string preset_noun;    // "model preset": "unknown model preset 'x' (...; presets: a, b)"
};

// The one rule for every option that takes "a preset name or a file" (models,
// text towers, prompt sets, benchmarks): a value that names an existing file,
// contains '/' or ends in ".json" is a path; anything else is the preset
// kind.dir/<value>.json. Throws flame::Error when the file does not exist; for
// a name, the message lists the presets in kind.dir.
std::filesystem::path find_preset(const std::string& name_or_path, const ConfigKind& kind);

}  // namespace flame

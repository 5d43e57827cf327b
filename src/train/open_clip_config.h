// Reading the config of an OpenCLIP-named FLAME checkpoint strictly:
// open_clip_config.json of flame's export ({"model_cfg", "preprocess_cfg",
// "flame"}) or the method's release config (a bare model config). Kept apart
// from open_clip_format.cpp (no LibTorch), so the fuzz target
// (tests/fuzz/open_clip_config_fuzz.cpp) links without it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace flame::train {

// Checks an import config as import reads it, before any tensor: every
// section an object, widths, depths and sizes positive integers,
// mm_cfg.mlp_depth 2, text_cfg.layer one integer ("39" or 39), flame's own
// record (model, text_stores) well formed. Throws flame::Error naming `path`
// and the key.
void check_open_clip_config(const nlohmann::json& config, const std::filesystem::path& path);

// The object `parent[key]` (absent: an empty object); anything else is
// refused naming `config` and `where` (the key's path in the file).
nlohmann::json open_clip_config_section(const nlohmann::json& parent, const char* key,
                                        const std::filesystem::path& config, const std::string& where);

// The release config's text_cfg.layer as text ("39" or 39; absent: nullopt);
// `from` is set to "<path>: text_cfg.layer" for messages.
std::optional<std::string> open_clip_config_layer(const nlohmann::json& config,
                                                  const std::filesystem::path& path, std::string* from);

// A layer given as text, as one integer; `from` names where it was given.
int64_t parse_open_clip_layer(const std::string& text, const std::string& from);

}  // namespace flame::train

#include "text/prompts.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>

#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/strings.h"

namespace flame::text {

namespace {

constexpr std::string_view kSlot = "{caption}";

PromptSet load_prompt_set_at(const std::string& name_or_path, int depth);

PromptSet parse_prompt_set(const nlohmann::json& j, const std::string& source, int depth) {
  if (!j.is_object()) fail("{}: a prompt set must be a JSON object", source);
  if (depth > 4) fail("{}: 'extends' chain is too deep", source);
  PromptSet set;
  if (j.contains("extends")) {
    set = load_prompt_set_at(j.at("extends").get<std::string>(), depth + 1);
    if (j.contains("num_facets")) {
      const auto n = j.at("num_facets").get<int64_t>();
      if (n < 1 || n > set.num_facets()) {
        fail("{}: num_facets {} is outside 1..{} of '{}'", source, n, set.num_facets(), set.name);
      }
      set.facets.resize(static_cast<size_t>(n));
    }
  }
  if (!j.contains("name") || !j["name"].is_string()) fail("{}: missing 'name'", source);
  set.name = j["name"].get<std::string>();
  set.role = j.contains("role") ? j["role"].get<std::string>() : set.name;
  if (j.contains("caption_rule")) set.caption_rule = j["caption_rule"].get<std::string>();
  if (set.caption_rule != "flame" && set.caption_rule != "release")
    fail("{}: caption_rule must be flame or release, not '{}'", source, set.caption_rule);
  if (j.contains("prefix")) set.prefix_template = j["prefix"].get<std::string>();
  if (j.contains("facets")) {
    set.facets.clear();
    for (const auto& f : j["facets"]) {
      if (!f.contains("name") || !f.contains("text")) fail("{}: every facet needs 'name' and 'text'", source);
      set.facets.push_back(
          {f["name"].get<std::string>(), f.value("level", ""), f["text"].get<std::string>()});
    }
  }
  const size_t slot = set.prefix_template.find(kSlot);
  if (slot == std::string::npos || set.prefix_template.find(kSlot, slot + 1) != std::string::npos) {
    fail("{}: the prefix must contain '{{caption}}' exactly once", source);
  }
  if (set.facets.empty()) fail("{}: a prompt set needs at least one facet", source);
  for (const auto& f : set.facets) {
    if (f.text.empty()) fail("{}: facet '{}' has empty text", source, f.name);
  }
  nlohmann::json content = {{"prefix", set.prefix_template}, {"facets", nlohmann::json::array()}};
  for (const auto& f : set.facets) content["facets"].push_back(f.text);
  if (set.caption_rule != "flame")
    content["caption_rule"] = set.caption_rule;  // flame's sets keep their hashes
  set.sha256 = sha256_hex(content.dump());
  return set;
}

PromptSet load_prompt_set_at(const std::string& name_or_path, int depth) {
  const std::filesystem::path path =
      find_preset(name_or_path, {prompt_config_dir(), "prompt set", "prompt set"});
  return parse_prompt_set(read_json_file(path), path.string(), depth);
}

}  // namespace

std::filesystem::path prompt_config_dir() {
  return config_dir("prompts");
}

PromptSet load_prompt_set(const std::string& name_or_path) {
  return load_prompt_set_at(name_or_path, 0);
}

std::string PromptSet::clean(std::string_view caption) const {
  return caption_rule == "release" ? release_clean_caption(caption) : clean_caption(caption);
}

std::string PromptSet::prefix(std::string_view clean) const {
  return std::string(head()) + std::string(clean) + std::string(tail());
}

std::string_view PromptSet::head() const {
  return std::string_view(prefix_template).substr(0, prefix_template.find(kSlot));
}

std::string_view PromptSet::tail() const {
  return std::string_view(prefix_template).substr(prefix_template.find(kSlot) + kSlot.size());
}

std::string clean_caption(std::string_view caption) {
  std::string out;
  out.reserve(caption.size() + 1);
  bool pending_space = false;
  for (char c : caption) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      pending_space = true;
      continue;
    }
    if (pending_space && !out.empty()) out.push_back(' ');
    pending_space = false;
    out.push_back(c == '"' ? '\'' : c);
  }
  if (!out.empty()) {
    const char last = out.back();
    if (last != '.' && last != '!' && last != '?') out.push_back('.');
  }
  return out;
}

std::string release_clean_caption(std::string_view caption) {
  std::string out(caption);
  if (!out.empty() && std::string_view(".?\"'").find(out.back()) == std::string_view::npos)
    out.push_back('.');
  std::replace(out.begin(), out.end(), '"', '\'');
  if (!out.empty() && out.back() == '?') out.back() = '.';
  return out;
}

}  // namespace flame::text

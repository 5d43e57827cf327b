// Multifaceted prompt sets: a prefix template that holds the caption and K
// facet suffixes, each ending where the model would answer in one word after
// an opening quote. The hidden state at a facet's last token is its embedding.
// Sets are data files in configs/prompts/ (see docs/architecture.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace flame::text {

struct Facet {
  std::string name;   // e.g. "main_object_category"
  std::string level;  // description | entity | interaction | scene
  std::string text;   // appended after the prefix
};

struct PromptSet {
  std::string name;
  // The part it plays where flame asks for a set by purpose ("long", "short",
  // "raw"): its "role" field, else its name. release-long plays "long".
  std::string role;
  // How a caption is cleaned before it fills the slot: "flame" (clean_caption)
  // or "release" (release_clean_caption, the released code's rule).
  std::string caption_rule = "flame";
  std::string prefix_template;  // contains "{caption}" exactly once
  std::vector<Facet> facets;
  std::string sha256;  // of the resolved content (prefix, facet texts; the caption rule unless "flame")

  int64_t num_facets() const { return static_cast<int64_t>(facets.size()); }
  // The caption as this set's caption rule cleans it.
  std::string clean(std::string_view caption) const;
  // The prefix with a (cleaned) caption in place.
  std::string prefix(std::string_view clean_caption) const;
  // Text before and after the caption slot.
  std::string_view head() const;
  std::string_view tail() const;
};

// Loads a built-in set by name ("long", "short", "raw", from configs/prompts/)
// or a file, told apart by find_preset's rule (util/config_files.h). A set may
// say {"extends": "long", "num_facets": 3}.
PromptSet load_prompt_set(const std::string& name_or_path);

// Directory of the built-in prompt sets: $FLAME_CONFIG_DIR/prompts, else the
// source tree's configs/prompts.
std::filesystem::path prompt_config_dir();

// Caption clean-up before templating, as the method does: newlines collapse
// into spaces, whitespace is trimmed, double quotes become single quotes (the
// caption sits inside double quotes), and a period is added when the caption
// does not end in a sentence mark.
std::string clean_caption(std::string_view caption);

// The released code's clean-up (MIV-XJTU/FLAME multiprompteol_embeddings.py),
// for the release-* prompt sets: a period is added unless the caption ends in
// '.', '?', '"' or '\'', then double quotes become single quotes, then a final
// '?' becomes '.'. Whitespace is left as it is.
std::string release_clean_caption(std::string_view caption);

}  // namespace flame::text

// The text side a FLAME model was trained against, recorded in its
// checkpoints' config.json ("text_stores": the identity of every store the run
// joined: LLM, layer, prompt set and its hash, dtype, normalisation, K). Eval
// and interpret read it back, so text features are rebuilt as training saw
// them (the same layer) and never from another LLM without the user saying so.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "text/store_manifest.h"

namespace flame::train {

struct TextProvenance {
  bool known = false;                       // false: a checkpoint from before it was recorded
  std::vector<text::StoreIdentity> stores;  // in the run's --texts order
};

// The "text_stores" value of a checkpoint config for these identities.
nlohmann::json text_provenance_json(const std::vector<text::StoreIdentity>& stores);

// Reads "text_stores" from a checkpoint config (absent: known = false); errors
// name `source`.
TextProvenance read_text_provenance(const nlohmann::json& config, const std::string& source);

// The store made with prompt set `name`, else the first; nullptr when unknown.
const text::StoreIdentity* store_for_prompts(const TextProvenance& provenance, const std::string& name);

// The prompt set playing `role` ("long", "raw", ...; text::PromptSet::role)
// among the stores the model was trained on, else `role` itself: a model
// trained on (or imported with) the method's release-long set is evaluated
// with it wherever flame would use "long".
std::string prompt_set_for_role(const TextProvenance& provenance, const std::string& role);

// Compares the LLM in `llm_dir` with the one the stores were made with
// (architecture, config and weights fingerprint; the folder name is not
// compared). Returns "" when they agree or the provenance is unknown, else the
// mismatch, naming both sides. A mismatch throws flame::Error naming the
// override flag unless `allow_mismatch`; then it is returned, for a warning.
std::string check_llm(const TextProvenance& provenance, const std::filesystem::path& llm_dir,
                      bool allow_mismatch, const std::string& model);

// What eval and interpret do before loading the LLM: the text side of the
// checkpoint `model` names (a checkpoint or run folder), --llm checked against
// it (check_llm), and the warnings to show and record (logged here): the text
// side is unknown, or a mismatch was allowed.
struct CheckedTextSide {
  TextProvenance provenance;
  std::vector<std::string> warnings;
};
CheckedTextSide check_text_side(const std::filesystem::path& model, const std::filesystem::path& llm_dir,
                                bool allow_mismatch);

}  // namespace flame::train

// What an embedding store is made of and how it names things: its identity
// (which LLM, prompts, layer and layout produced the vectors), the manifest
// that describes a finished store, and the shard file names.
//
// Two stores (or two runs writing one store) are compatible exactly when their
// identities are equal; count, shards, part and job info are not identity.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "text/prompts.h"
#include "util/part_selection.h"

namespace flame::text {

namespace fs = std::filesystem;

inline constexpr const char* kStoreFormat = "flame-embedding-store";
inline constexpr int kStoreVersion = 1;
inline constexpr const char* kManifestFile = "manifest.json";
inline constexpr const char* kEmbeddingsTensor = "embeddings";
inline constexpr const char* kScalesTensor = "scales";  // int8 stores: [n, K] f32

struct StoreIdentity {
  // llm/checkpoint_identity.h: {"name", "architecture", "config_sha256",
  // "weights_fingerprint"} (older stores: "weights_checksum"); compared field
  // by field except "name" (llm_differences).
  nlohmann::json llm = nlohmann::json::object();
  std::string prompt_set_name;
  std::string prompt_set_sha256;
  std::vector<std::string> facets;  // one name per facet, num_facets of them
  int layer = -1;                   // the LLM layer the vectors were taken from
  std::string dtype = "f16";        // storage dtype: "f16", "bf16" or "int8" (+ a scale per vector)
  int64_t num_facets = 0;           // K
  int64_t dim = 0;                  // D
  bool normalized = false;          // every [D] vector has unit L2 norm
  // How the vectors were computed ("computation" in the manifest): the LLM's
  // compute dtype ("bf16") and the encode mode ("fda"). Equal in theory, not
  // in rounding, so one store never mixes them. Empty in stores written
  // before they were recorded.
  std::string compute_dtype;
  std::string mode;
  // "separate" (the paper's FDA: each facet positioned as its own prompt) or
  // "concatenated" (the method's released code); stores written before it
  // was recorded were separate.
  std::string facet_positions = "separate";

  // Throws flame::Error naming `source` and the field when a value is invalid.
  void validate(const std::string& source) const;
  bool quantized() const { return dtype == "int8"; }
};

// The identity fields the LLM (its checkpoint_identity json) and the prompt set
// fix: llm, prompt set name and sha256, facet names, num_facets. The caller
// sets the rest (layer, dim, dtype, how the vectors were computed).
StoreIdentity prompt_store_identity(const nlohmann::json& llm, const PromptSet& prompts);

// The identity fields of a manifest: format, version, llm, prompt_set, layer,
// dtype, num_facets, dim, normalized.
nlohmann::json identity_to_json(const StoreIdentity& identity);
// Reads the identity fields of a manifest (other fields are ignored) and
// validates them; errors name `source`.
StoreIdentity identity_from_json(const nlohmann::json& manifest, const std::string& source);

// The rest of a finished store's manifest.json: which shard files hold how
// many embeddings. Kept apart from the shards' own checks (embedding_store)
// so the fuzz target runs this parser without torch.
struct ManifestShard {
  std::string file;  // a plain name inside the store
  int64_t count = 0;
};
struct StoreManifest {
  StoreIdentity identity;
  PartSelection part;  // a manifest without "part" is a whole store
  int64_t count = 0;   // the sum of the shard counts
  std::vector<ManifestShard> shards;
};
// Reads and checks a manifest (identity, part, count, shards); errors name
// `source` and the field.
StoreManifest manifest_from_json(const nlohmann::json& manifest, const std::string& source);

// What a shard's safetensors __metadata__ says about it: the identity, the
// part that computed it, the keys in row order (non-empty, unique) and the
// SHA-256 of its vectors ("sha256"; empty in shards written before it was
// recorded).
struct ShardMetadata {
  StoreIdentity identity;
  PartSelection part;
  std::vector<std::string> keys;
  std::string sha256;
};
ShardMetadata shard_metadata_from_strings(const std::map<std::string, std::string>& metadata,
                                          const std::string& source);

// One field on which two identities differ, as text for messages:
// {"prompt set", "'short'", "'long'"}.
struct IdentityDifference {
  std::string field;
  std::string first, second;
};
std::vector<IdentityDifference> identity_differences(const StoreIdentity& first, const StoreIdentity& second);
// The fields of two `llm` identities that differ; the folder "name" is not
// compared (a copy of a checkpoint elsewhere is the same LLM).
std::vector<IdentityDifference> llm_differences(const nlohmann::json& first, const nlohmann::json& second);

// "store was made with prompt set 'short', this job uses 'long'; ..." or "" when equal.
std::string describe_differences(const std::vector<IdentityDifference>& differences,
                                 const std::string& first_name, const std::string& second_name);

// Shards are numbered from 0: shard-00000.safetensors, shard-00001.safetensors, ...
std::string shard_file_name(int64_t shard_id);
// Returns false for names that are not shard files.
bool parse_shard_file_name(const std::string& name, int64_t* shard_id);
// The shard files in `dir`, by id.
std::vector<std::pair<int64_t, fs::path>> list_shard_files(const fs::path& dir);

}  // namespace flame::text

// Content hashes for manifests and checksums (SHA-256 through OpenSSL).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace flame {

// Incremental SHA-256, for what is hashed in pieces (a checkpoint's sampled
// fingerprint). hex() ends it.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view text) { update(text.data(), text.size()); }
  std::string hex();

 private:
  std::unique_ptr<evp_md_ctx_st, void (*)(evp_md_ctx_st*)> ctx_;
};

std::string sha256_hex(std::string_view bytes);
// Streams a file through SHA-256 (memory-mapped); throws naming the file.
std::string sha256_file_hex(const std::filesystem::path& path);

// Feeds `samples` evenly spaced pieces of `sample_bytes` of [data, data +
// size) to `hash`, the first and the last included; all of it when it is no
// larger than the pieces together. Returns the bytes hashed. A cheap identity
// of large files (LLM weights, image tar shards) that still sees every region.
uint64_t hash_evenly_spaced(Sha256& hash, const uint8_t* data, uint64_t size, int samples,
                            uint64_t sample_bytes);

}  // namespace flame

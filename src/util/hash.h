// Content hashes for manifests and checksums (SHA-256 through OpenSSL).
#pragma once

#include <cstddef>
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

}  // namespace flame

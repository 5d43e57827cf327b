// Content hashes for manifests and checksums (SHA-256 through OpenSSL).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace flame {

std::string sha256_hex(std::string_view bytes);
// Streams a file through SHA-256 (memory-mapped); throws naming the file.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace flame

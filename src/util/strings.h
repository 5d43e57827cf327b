// Small string helpers shared by the CLI and the data readers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flame {

// "512", "100KB", "100MB", "2GB", "1.5GiB" -> bytes (KB = 1000, KiB = 1024).
uint64_t parse_byte_size(const std::string& text);
// Human-readable byte count, e.g. "1.23 GB".
std::string format_bytes(uint64_t bytes);
// Splits on a single character; keeps empty fields.
std::vector<std::string> split(std::string_view text, char sep);
std::string_view trim(std::string_view text);
// ASCII letters to lower case (file extensions, format names); other bytes unchanged.
std::string lowercase(std::string text);
bool starts_with(std::string_view text, std::string_view prefix);
bool ends_with(std::string_view text, std::string_view suffix);

}  // namespace flame

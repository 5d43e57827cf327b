// Test helper: writes tar archives with libarchive (WebDataset-style shards).
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace flame::test {

// Members in the given order, in the given libarchive format; a name ending in
// '/' is a directory.
enum class TarFormat { kUstar, kPax, kGnu };
inline void write_tar(const std::filesystem::path& path, const std::vector<std::pair<std::string, std::string>>& members, TarFormat format = TarFormat::kUstar,
               bool gzip = false) {
  struct archive* a = archive_write_new();
  if (format == TarFormat::kUstar) archive_write_set_format_ustar(a);
  if (format == TarFormat::kPax) archive_write_set_format_pax_restricted(a);
  if (format == TarFormat::kGnu) archive_write_set_format_gnutar(a);
  if (gzip) archive_write_add_filter_gzip(a);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  for (const auto& [name, data] : members) {
    struct archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, name.c_str());
    const bool is_dir = name.back() == '/';
    archive_entry_set_filetype(entry, is_dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(entry, is_dir ? 0755 : 0644);
    archive_entry_set_size(entry, is_dir ? 0 : static_cast<la_int64_t>(data.size()));
    ASSERT_EQ(archive_write_header(a, entry), ARCHIVE_OK) << archive_error_string(a);
    if (!is_dir)
      ASSERT_EQ(archive_write_data(a, data.data(), data.size()), static_cast<la_ssize_t>(data.size()));
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
}

}  // namespace flame::test

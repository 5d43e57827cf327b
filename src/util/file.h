// File helpers: whole-file reads, positioned reads, atomic writes (temp file +
// fsync + rename), read-only memory maps, and an append-only JSONL log.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

namespace flame {

namespace fs = std::filesystem;

// Reads a whole file; throws flame::Error naming the path on failure.
std::string read_file(const fs::path& path);

// Reads and parses a JSON file; errors name the path and the parse position.
nlohmann::json read_json_file(const fs::path& path);

// Writes `bytes` to `path` atomically: a sibling temp file is written, flushed
// to disk, then renamed over `path`. A crash leaves the old file or the new one,
// never a partial one.
void write_file_atomic(const fs::path& path, std::string_view bytes);

// Checks, before a long job starts, that `path` can be written later: not a
// directory, its folder exists or can be created, and a file can be created
// there (tried and removed: as root, permission bits say nothing, a read-only
// file system does). Throws flame::Error naming `what` (e.g. "--out") and the path.
void check_output_file(const fs::path& path, const std::string& what);

// Writes JSON (indented) atomically.
void write_json_file_atomic(const fs::path& path, const nlohmann::json& value);

// A sibling temporary name for `path` (same directory, so rename is atomic).
fs::path temp_path_for(const fs::path& path);

// Renames `from` to `to` and fsyncs the directory, so the rename survives a crash.
void rename_durable(const fs::path& from, const fs::path& to);

// Puts the folder `staged` (complete) at `target` as a whole: renamed there
// when `target` does not exist, else swapped with it in one atomic
// renameat2(RENAME_EXCHANGE) and the old content removed. A crash leaves the
// old folder or the new one at `target`, never a mix (the other under the
// staged name, which the next writer of the folder removes). Both must be on
// one file system (make `staged` a sibling: temp_path_for(target)).
void replace_dir_durable(const fs::path& staged, const fs::path& target);

// Reads `size` bytes at `offset` of an open descriptor with pread (no shared
// file position, so threads may read one descriptor at once), retrying short
// reads; returns how many bytes were there before the end of the file. Throws
// flame::Error on a read error.
size_t pread_full(int fd, char* out, size_t size, uint64_t offset);

// An exclusive lock on DIR/.lock (flock) while alive: one writer per store or
// run folder. The holder's pid and host are written into the file, so a second
// process fails fast naming them: "<dir>: <what> is in use by pid 123 on host
// h (it holds <dir>/.lock)". The kernel drops the lock when the holder dies,
// so a killed job never leaves the folder locked. Creates `dir`.
// `lock_file` other than ".lock" locks a sibling file instead, for a folder
// that is replaced as a whole (replace_dir_durable): pass dir's parent and
// "<name>.lock".
class DirectoryLock {
 public:
  DirectoryLock(const fs::path& dir, const std::string& what, const std::string& lock_file = ".lock");
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

// A read-only memory map of a whole file. Move-only; unmaps on destruction.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const fs::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const fs::path& path() const { return path_; }

 private:
  void release();
  fs::path path_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Appends one JSON object per line and flushes each line, so a killed job
// leaves a readable log.
class JsonlWriter {
 public:
  JsonlWriter() = default;
  explicit JsonlWriter(const fs::path& path, bool append = true);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;

  bool is_open() const { return file_ != nullptr; }
  void write(const nlohmann::json& record);

 private:
  FILE* file_ = nullptr;
  fs::path path_;
};

}  // namespace flame

#include "util/file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "util/error.h"

namespace flame {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '{}': {}", path.string(), std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("error reading '{}'", path.string());
  return ss.str();
}

nlohmann::json read_json_file(const fs::path& path) {
  const std::string text = read_file(path);
  // nlohmann stops at a NUL as at the end of the text ("unexpected end of
  // input"), which hides that the file is binary or corrupt.
  const size_t nul = text.find('\0');
  if (nul != std::string::npos) {
    fail("invalid JSON in '{}': a NUL byte at offset {} (a binary or corrupt file?)", path.string(), nul);
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // out_of_range too: a number like 1e999
    fail("invalid JSON in '{}': {}", path.string(), e.what());
  }
}

fs::path temp_path_for(const fs::path& path) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return path.parent_path() /
         fmt::format(".{}.tmp.{}.{:x}", path.filename().string(), getpid(), rng() & 0xffffffu);
}

static void fsync_directory(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void rename_durable(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    fail("cannot rename '{}' to '{}': {}", from.string(), to.string(), std::strerror(errno));
  }
  fsync_directory(to.parent_path());
}

namespace {

// The rename of an atomic write would replace whatever is at `path`: a device
// (/dev/full, /dev/null), a FIFO or a socket must be refused, not swapped for a
// regular file (as root that deleted /dev/full and printed "wrote").
void check_replaceable(const fs::path& path, const std::string& what) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (fs::exists(status) && !fs::is_regular_file(status) && !fs::is_directory(status))
    fail("{}'{}' is not a regular file (a device, FIFO or socket); give a file name", what, path.string());
}

}  // namespace

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  check_replaceable(path, "");
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  const fs::path tmp = temp_path_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("cannot create '{}': {}", tmp.string(), std::strerror(errno));
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("cannot write '{}': {} (the partial file was removed)", path.string(), why);
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail("cannot flush '{}': {}", tmp.string(), std::strerror(errno));
  }
  try {
    rename_durable(tmp, path);
  } catch (...) {
    ::unlink(tmp.c_str());  // nothing half-done left beside `path`
    throw;
  }
}

void check_output_file(const fs::path& path, const std::string& what) {
  if (fs::is_directory(path)) fail("{} '{}' is a directory; give a file name", what, path.string());
  check_replaceable(path, what + " ");
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{} '{}': cannot create the folder '{}': {}", what, path.string(), dir.string(), ec.message());
  const fs::path probe = temp_path_for(path);
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) fail("{} '{}' cannot be written: {}", what, path.string(), std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

void write_json_file_atomic(const fs::path& path, const nlohmann::json& value) {
  write_file_atomic(path, value.dump(2) + "\n");
}

size_t pread_full(int fd, char* out, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read error: {}", std::strerror(errno));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

void replace_dir_durable(const fs::path& staged, const fs::path& target) {
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(target, ec);
  if (!fs::exists(status)) {
    rename_durable(staged, target);
    return;
  }
  if (!fs::is_directory(status))
    fail("'{}' is in the way of the folder to be written there: it is not a folder", target.string());
  if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0)
    fail("cannot put '{}' in place of '{}': {}", staged.string(), target.string(), std::strerror(errno));
  const int dir_fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  fs::remove_all(staged, ec);  // the old content; a leftover is removed by the next writer
}

DirectoryLock::DirectoryLock(const fs::path& dir, const std::string& what, const std::string& lock_file) {
  fs::create_directories(dir);
  const fs::path path = dir / lock_file;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create '{}': {}", path.string(), std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    std::string holder(256, '\0');
    const ssize_t n = ::pread(fd_, holder.data(), holder.size(), 0);
    holder.resize(n > 0 ? static_cast<size_t>(n) : 0);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
    ::close(fd_);
    // A sibling lock file guards a folder or file named in `what`; the folder
    // prefix would name its parent instead.
    const std::string where = lock_file == ".lock" ? dir.string() + ": " : "";
    fail("{}{} is in use by {} (it holds '{}')", where, what, holder.empty() ? "another process" : holder,
         path.string());
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string holder = fmt::format("pid {} on host {}\n", ::getpid(), host);
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, holder.data(), holder.size(), 0) < 0) {
    // The lock holds without the note; only the message of a second process is poorer.
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);
}

MappedFile::MappedFile(const fs::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot open '{}': {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail("cannot stat '{}': {}", path.string(), std::strerror(errno));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail("cannot memory-map '{}': {}", path.string(), std::strerror(errno));
    }
    data_ = static_cast<uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  release();
}

void MappedFile::release() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

JsonlWriter::JsonlWriter(const fs::path& path, bool append) : path_(path) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  file_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  if (file_ == nullptr) fail("cannot open log '{}': {}", path.string(), std::strerror(errno));
}

JsonlWriter::~JsonlWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void JsonlWriter::write(const nlohmann::json& record) {
  if (file_ == nullptr) return;
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    fail("cannot write log '{}': {}", path_.string(), std::strerror(errno));
  }
}

}  // namespace flame

#include "data/image_source.h"

#include "data/tar_reader.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "data/brace_expand.h"
#include "util/error.h"
#include "util/file.h"
#include "util/strings.h"

namespace flame::data {

namespace {

constexpr size_t kBlock = 512;
constexpr size_t kMaxExamples = 5;

// Reads exactly `size` bytes at `offset`; returns how many were available.
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

// A NUL-terminated (or full-width) header field.
std::string field(const char* block, size_t offset, size_t width) {
  const char* begin = block + offset;
  return std::string(begin, strnlen(begin, width));
}

// Header numbers are octal text, or base-256 when the first byte has its top
// bit set (GNU/star, for sizes of 8 GiB and more).
bool parse_number(const char* block, size_t offset, size_t width, uint64_t* value) {
  const auto* p = reinterpret_cast<const unsigned char*>(block + offset);
  *value = 0;
  if (p[0] & 0x80) {
    for (size_t i = 1; i < width; ++i) *value = (*value << 8) | p[i];
    return (p[0] & 0x7f) == 0;  // larger than 2^64 or negative: refuse
  }
  size_t i = 0;
  while (i < width && (p[i] == ' ' || p[i] == 0)) ++i;
  bool any = false;
  for (; i < width && p[i] >= '0' && p[i] <= '7'; ++i, any = true) *value = (*value << 3) | (p[i] - '0');
  for (; i < width; ++i)
    if (p[i] != ' ' && p[i] != 0) return false;
  return any;
}

// A pax extended header: records "LENGTH key=value\n". Only path and size
// matter for locating members.
void parse_pax(const std::string& data, std::string* path, uint64_t* size, const std::string& where) {
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t space = data.find(' ', pos);
    if (space == std::string::npos) break;
    const uint64_t length = std::strtoull(data.c_str() + pos, nullptr, 10);
    if (length == 0 || pos + length > data.size() || data[pos + length - 1] != '\n') {
      fail("{}: malformed pax extended header", where);
    }
    const std::string record = data.substr(space + 1, pos + length - 1 - (space + 1));
    const size_t eq = record.find('=');
    if (eq != std::string::npos) {
      const std::string key = record.substr(0, eq), value = record.substr(eq + 1);
      if (key == "path") *path = value;
      if (key == "size") *size = std::strtoull(value.c_str(), nullptr, 10);
    }
    pos += length;
  }
}

// Walks the ustar/pax/GNU headers of an uncompressed tar and calls `on_file`
// for each regular file with its data offset and size. Data is skipped, not read.
void index_tar(int fd, const std::string& path, uint64_t file_size,
               const std::function<void(const std::string& name, uint64_t offset, uint64_t size)>& on_file) {
  char block[kBlock];
  uint64_t offset = 0;
  std::string next_path;  // from a GNU long-name or pax header, for the next entry
  uint64_t next_size = UINT64_MAX;
  while (true) {
    const size_t got = pread_full(fd, block, kBlock, offset);
    if (got == 0) return;  // no end-of-archive blocks: tolerated, as tar does
    if (got < kBlock) fail("tar file '{}' is truncated at byte {}", path, offset);
    if (std::all_of(block, block + kBlock, [](char c) { return c == 0; })) return;
    uint64_t checksum = 0;
    if (!parse_number(block, 148, 8, &checksum))
      fail("'{}' is not a tar file (bad header at byte {})", path, offset);
    uint64_t sum = 0;
    for (size_t i = 0; i < kBlock; ++i)
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(block[i]);
    if (sum != checksum)
      fail("'{}' is not a tar file or is corrupt (header checksum at byte {})", path, offset);
    uint64_t size = 0;
    if (!parse_number(block, 124, 12, &size)) fail("tar file '{}': bad member size at byte {}", path, offset);
    const char type = block[156];
    std::string name = field(block, 0, 100);
    if (std::memcmp(block + 257, "ustar\0", 6) == 0) {  // POSIX: a prefix completes the name
      const std::string prefix = field(block, 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    const uint64_t data_offset = offset + kBlock;
    if (type == 'x' || type == 'L') {  // metadata for the next entry
      if (size > (64u << 20)) fail("tar file '{}': oversized extended header at byte {}", path, offset);
      std::string data(size, '\0');
      if (pread_full(fd, data.data(), size, data_offset) != size) {
        fail("tar file '{}' is truncated at byte {}", path, data_offset);
      }
      if (type == 'L') {
        next_path = data.substr(0, strnlen(data.c_str(), data.size()));
      } else {
        parse_pax(data, &next_path, &next_size, fmt::format("tar file '{}' at byte {}", path, offset));
      }
    } else {
      if (!next_path.empty()) name = next_path;
      if (next_size != UINT64_MAX) size = next_size;
      next_path.clear();
      next_size = UINT64_MAX;
      if (type == '0' || type == '\0' || type == '7') {
        if (data_offset + size > file_size) {
          fail("tar file '{}' is truncated: member '{}' needs {} bytes, the file ends first", path, name,
               size);
        }
        on_file(name, data_offset, size);
      }
    }
    offset = data_offset + (size + kBlock - 1) / kBlock * kBlock;
  }
}

// Compressed tars would need reading from the start for every image.
void refuse_compressed(int fd, const std::string& path) {
  unsigned char magic[6] = {0};
  const size_t got = pread_full(fd, reinterpret_cast<char*>(magic), sizeof(magic), 0);
  const auto starts = [&](std::initializer_list<unsigned char> bytes) {
    return got >= bytes.size() && std::equal(bytes.begin(), bytes.end(), magic);
  };
  if (starts({0x1f, 0x8b}) || starts({0x28, 0xb5, 0x2f, 0xfd}) || starts({'B', 'Z', 'h'}) ||
      starts({0xfd, '7', 'z', 'X', 'Z', 0x00})) {
    fail("image shard '{}' is compressed; images need random access, so decompress it to a plain .tar", path);
  }
}

bool is_supported_image(const std::string& ext) {
  return ext == "jpg" || ext == "jpeg" || ext == "png";
}
bool is_other_image(const std::string& ext) {
  return ext == "webp" || ext == "gif" || ext == "bmp" || ext == "tif" || ext == "tiff";
}

std::vector<std::string> read_lines(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {} '{}': {}", what, path, std::strerror(errno));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (lines.empty() && starts_with(line, "\xEF\xBB\xBF")) line.erase(0, 3);
    lines.push_back(std::move(line));
  }
  if (in.bad()) fail("cannot read {} '{}'", what, path);
  return lines;
}

std::string examples(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < kMaxExamples; ++i) out += (i ? ", '" : "'") + names[i] + "'";
  return out;
}

}  // namespace

struct ImageSource::OpenFiles {
  std::vector<int> fds;
  ~OpenFiles() {
    for (int fd : fds) ::close(fd);
  }
};

ImageSource ImageSource::open(const std::string& spec, const ImageSourceOptions& options) {
  ImageSource source;
  std::unordered_map<std::string, int64_t> index_of_key;
  const auto add = [&](ImageRecord record, const std::string& member) {
    const auto [it, inserted] =
        index_of_key.emplace(record.key, static_cast<int64_t>(source.records_.size()));
    source.records_.push_back(std::move(record));
    if (source.tar_) source.member_names_.push_back(member);
    if (!inserted) {
      fail("duplicate image key '{}': {} and {}", it->first, source.location(it->second),
           source.location(source.size() - 1));
    }
  };

  const std::string lower = lowercase(spec);
  if (ends_with(lower, ".tsv")) {
    const fs::path tsv(spec);
    const fs::path dir =
        options.image_dir.empty() ? tsv.parent_path() / "images" : fs::path(options.image_dir);
    const std::vector<std::string> lines = read_lines(spec, "image table");
    if (lines.empty()) fail("{}: empty TSV file, expected a header row", spec);
    const std::vector<std::string> header = split(lines[0], '\t');
    const auto column_it = std::find(header.begin(), header.end(), options.image_column);
    if (column_it == header.end()) {
      fail("{}: no column '{}' in the header (columns: {})", spec, options.image_column,
           fmt::join(header, ", "));
    }
    const size_t column = static_cast<size_t>(column_it - header.begin());
    std::unordered_set<std::string> seen;
    int64_t bad_rows = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      if (lines[i].empty()) continue;
      const std::vector<std::string> cells = split(lines[i], '\t');
      // Rows repeat an image once per caption: the first occurrence makes the record.
      if (cells.size() != header.size() || trim(cells[column]).empty()) {
        ++bad_rows;
        continue;
      }
      const std::string& name = cells[column];  // untrimmed, as caption_source keys TSV rows
      if (!seen.insert(name).second) continue;
      source.files_.push_back((dir / name).string());
      source.records_.push_back(ImageRecord{name, static_cast<int32_t>(source.files_.size() - 1), 0, 0});
    }
    if (bad_rows > 0)
      spdlog::warn("{}: {} rows with a wrong column count or no image name were left out", spec, bad_rows);
  } else {
    std::vector<std::string> paths = expand_braces(spec);
    for (const auto& path : paths) {
      if (!ends_with(lowercase(path), ".tar")) {
        fail("image input '{}' is neither a .tsv table nor a .tar shard (compressed tars are not supported)",
             path);
      }
      if (!fs::is_regular_file(path)) fail("image shard '{}' does not exist or is not a file", path);
    }
    source.tar_ = true;
    auto open_files = std::make_shared<OpenFiles>();
    int64_t unsupported = 0;
    std::string unsupported_example;
    for (const auto& path : paths) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) fail("cannot open image shard '{}': {}", path, std::strerror(errno));
      open_files->fds.push_back(fd);
      source.files_.push_back(path);
      struct stat info {};
      if (::fstat(fd, &info) != 0) fail("cannot stat image shard '{}': {}", path, std::strerror(errno));
      refuse_compressed(fd, path);
      const auto file = static_cast<int32_t>(source.files_.size() - 1);
      index_tar(fd, path, static_cast<uint64_t>(info.st_size),
                [&](const std::string& name, uint64_t offset, uint64_t size) {
                  std::string key, ext;
                  if (!split_member_path(name, &key, &ext) || key.empty() || key.back() == '/') return;
                  if (is_other_image(ext)) {
                    if (unsupported++ == 0) unsupported_example = path + ":" + name;
                  }
                  if (!is_supported_image(ext)) return;
                  add(ImageRecord{key, file, offset, size}, name);
                });
    }
    source.open_files_ = std::move(open_files);
    if (unsupported > 0) {
      spdlog::warn("{}: {} image members in formats other than JPEG and PNG were left out, e.g. {}", spec,
                   unsupported, unsupported_example);
    }
  }

  if (!options.split_file.empty()) {
    std::unordered_set<std::string> wanted;
    for (const auto& line : read_lines(options.split_file, "split file"))
      if (!trim(line).empty()) wanted.emplace(trim(line));
    std::vector<ImageRecord> kept;
    std::vector<std::string> kept_members;
    std::unordered_set<std::string> found;
    for (size_t i = 0; i < source.records_.size(); ++i) {
      if (wanted.count(source.records_[i].key) == 0) continue;
      found.insert(source.records_[i].key);
      kept.push_back(std::move(source.records_[i]));
      if (source.tar_) kept_members.push_back(std::move(source.member_names_[i]));
    }
    source.records_ = std::move(kept);
    source.member_names_ = std::move(kept_members);
    if (found.size() < wanted.size()) {
      std::vector<std::string> absent;
      for (const auto& key : wanted)
        if (found.count(key) == 0) absent.push_back(key);
      std::sort(absent.begin(), absent.end());
      spdlog::warn("{}: {} of its {} images are not in {}, e.g. {}", options.split_file, absent.size(),
                   wanted.size(), spec, examples(absent));
    }
  }

  if (!source.tar_) {
    // Sizes are known (and missing files found) only once the split is applied,
    // so a split of a partly downloaded set still opens.
    std::vector<std::string> missing;
    for (auto& record : source.records_) {
      std::error_code ec;
      const auto size = fs::file_size(source.files_[record.file], ec);
      if (ec) {
        missing.push_back(source.files_[record.file]);
      } else {
        record.size = size;
      }
    }
    if (!missing.empty()) {
      fail("{} of the {} images listed in '{}' are missing or unreadable, e.g. {}", missing.size(),
           source.records_.size(), spec, examples(missing));
    }
  }
  if (source.records_.empty()) {
    fail("no images in '{}'{}", spec,
         options.split_file.empty() ? "" : fmt::format(" (after the split '{}')", options.split_file));
  }
  return source;
}

const ImageRecord& ImageSource::record(int64_t index) const {
  if (index < 0 || index >= size()) fail("image record {} out of range (the source has {})", index, size());
  return records_[static_cast<size_t>(index)];
}

std::string ImageSource::location(int64_t index) const {
  const ImageRecord& r = record(index);
  if (tar_) return files_[r.file] + ":" + member_names_[static_cast<size_t>(index)];
  return files_[r.file];
}

std::string ImageSource::read_bytes(int64_t index) const {
  const ImageRecord& r = record(index);
  if (!tar_) return read_file(files_[r.file]);
  std::string bytes(r.size, '\0');
  size_t got = 0;
  try {
    got = pread_full(open_files_->fds[r.file], bytes.data(), bytes.size(), r.offset);
  } catch (const Error& e) {
    fail("cannot read image '{}': {}", location(index), e.what());
  }
  if (got != bytes.size())
    fail("cannot read image '{}': the shard is shorter than when it was opened", location(index));
  return bytes;
}

}  // namespace flame::data

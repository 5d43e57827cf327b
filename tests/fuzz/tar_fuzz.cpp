// Tar archives both ways flame reads them: TarReader (libarchive, for
// captions: read_captions on a .tar) and index_tar_members (the 512-byte
// header walker the image loader uses). Every member the index reports lies
// inside the file.
#include <fcntl.h>
#include <unistd.h>

#include "data/caption_source.h"
#include "data/tar_reader.h"
#include "fuzz_targets.h"
#include "util/error.h"

namespace flame::fuzz {

namespace {

// Closes the descriptor on every path out, the error included.
struct Fd {
  int fd;
  ~Fd() { ::close(fd); }
};

int64_t index_members(const std::string& path, size_t size) {
  const Fd file{::open(path.c_str(), O_RDONLY)};
  if (file.fd < 0) __builtin_trap();
  int64_t members = 0;
  data::index_tar_members(file.fd, path, size, [&](const data::TarMemberLocation& m) {
    if (m.offset > size || m.size > size - m.offset) __builtin_trap();
    ++members;
  });
  return members;
}

}  // namespace

bool tar(const uint8_t* data, size_t size) {
  const std::string path = input_file(data, size, "shard.tar").string();
  bool parsed = true;
  try {
    data::TarReader reader(path);
    data::TarMember member;
    while (reader.next(&member)) {
    }
  } catch (const Error&) {
    parsed = false;
  }
  try {
    index_members(path, size);
  } catch (const Error&) {
    parsed = false;
  }
  try {
    data::read_captions({path});
  } catch (const Error&) {
    parsed = false;
  }
  return parsed;
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(tar)

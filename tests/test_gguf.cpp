// GGUF reader: typed metadata round-trips from hand-made files, the shared
// vocabulary files parse, and truncated or corrupt files are refused with a
// flame::Error naming the file (never a crash or a huge allocation).
#include <gtest/gtest.h>

#include <cstring>

#include "llm/gguf.h"
#include "test_helpers.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::llm {
namespace {

// Little-endian GGUF writer for tests.
struct GgufBuilder {
  std::string bytes;
  template <typename T>
  void put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    bytes.append(b, sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes += s;
  }
  void header(uint32_t version, uint64_t tensors, uint64_t kvs) {
    bytes += "GGUF";
    put<uint32_t>(version);
    put<uint64_t>(tensors);
    put<uint64_t>(kvs);
  }
  void key(const std::string& k, GgufType t) {
    str(k);
    put<uint32_t>(static_cast<uint32_t>(t));
  }
};

GgufFile parse(const std::string& bytes) {
  return parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.gguf");
}

std::string parse_error(const std::string& bytes) {
  try {
    parse(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string sample_file() {
  GgufBuilder b;
  b.header(3, 1, 7);
  b.key("general.architecture", GgufType::String);
  b.str("llama");
  b.key("a.u32", GgufType::Uint32);
  b.put<uint32_t>(4000000000u);
  b.key("a.i8", GgufType::Int8);
  b.put<int8_t>(-5);
  b.key("a.f32", GgufType::Float32);
  b.put<float>(0.5f);
  b.key("a.bool", GgufType::Bool);
  b.put<uint8_t>(1);
  b.key("a.strings", GgufType::Array);
  b.put<uint32_t>(static_cast<uint32_t>(GgufType::String));
  b.put<uint64_t>(3);
  b.str("x");
  b.str("");
  b.str("\xe2\x96\x81hi");
  b.key("a.ints", GgufType::Array);
  b.put<uint32_t>(static_cast<uint32_t>(GgufType::Int32));
  b.put<uint64_t>(2);
  b.put<int32_t>(-1);
  b.put<int32_t>(7);
  // one tensor info
  b.str("w");
  b.put<uint32_t>(2);
  b.put<uint64_t>(4);
  b.put<uint64_t>(2);
  b.put<uint32_t>(0);  // F32
  b.put<uint64_t>(0);
  while (b.bytes.size() % 32 != 0) b.bytes += '\0';
  b.bytes += std::string(32, '\x01');  // tensor data
  return b.bytes;
}

TEST(Gguf, ParsesTypedMetadataAndTensorInfos) {
  const GgufFile f = parse(sample_file());
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.keys.size(), 7u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_integer("a.u32"), 4000000000LL);
  EXPECT_EQ(f.get_integer("a.i8"), -5);
  EXPECT_EQ(f.get_real("a.f32"), 0.5);
  EXPECT_EQ(f.get_bool("a.bool"), true);
  ASSERT_NE(f.get_strings("a.strings"), nullptr);
  EXPECT_EQ(*f.get_strings("a.strings"), (std::vector<std::string>{"x", "", "\xe2\x96\x81hi"}));
  EXPECT_EQ(*f.get_integers("a.ints"), (std::vector<int64_t>{-1, 7}));
  EXPECT_EQ(f.get_string("missing"), std::nullopt);
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.tensors[0].name, "w");
  EXPECT_EQ(f.tensors[0].shape, (std::vector<uint64_t>{4, 2}));
  EXPECT_EQ(f.data_offset % 32, 0u);
}

TEST(Gguf, WrongTypeErrorsNameTheKey) {
  const GgufFile f = parse(sample_file());
  try {
    f.get_string("a.u32");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a.u32"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.gguf"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f.get_strings("a.ints"), Error);
  EXPECT_THROW(f.get_integers("general.architecture"), Error);
}

TEST(Gguf, RejectsBadMagicVersionsAndCorruptCounts) {
  EXPECT_NE(parse_error("GGML").find("not a GGUF file"), std::string::npos);
  GgufBuilder v1;
  v1.header(1, 0, 0);
  EXPECT_NE(parse_error(v1.bytes).find("version 1"), std::string::npos);
  GgufBuilder big_endian;
  big_endian.header(0x03000000, 0, 0);
  EXPECT_NE(parse_error(big_endian.bytes).find("big-endian"), std::string::npos);

  // A huge array count must fail before allocating.
  GgufBuilder huge;
  huge.header(3, 0, 1);
  huge.key("tokenizer.ggml.tokens", GgufType::Array);
  huge.put<uint32_t>(static_cast<uint32_t>(GgufType::String));
  huge.put<uint64_t>(1ull << 60);
  const std::string err = parse_error(huge.bytes);
  EXPECT_NE(err.find("tokenizer.ggml.tokens"), std::string::npos) << err;

  GgufBuilder huge_string;
  huge_string.header(3, 0, 1);
  huge_string.key("k", GgufType::String);
  huge_string.put<uint64_t>(~0ull);
  EXPECT_NE(parse_error(huge_string.bytes).find("'k'"), std::string::npos);

  GgufBuilder bad_type;
  bad_type.header(3, 0, 1);
  bad_type.key("k", static_cast<GgufType>(99));
  EXPECT_NE(parse_error(bad_type.bytes).find("unknown value type 99"), std::string::npos);

  GgufBuilder many_kvs;
  many_kvs.header(3, 0, 1ull << 62);
  EXPECT_NE(parse_error(many_kvs.bytes).find("metadata count"), std::string::npos);

  GgufBuilder dup;
  dup.header(3, 0, 2);
  dup.key("k", GgufType::Uint8);
  dup.put<uint8_t>(1);
  dup.key("k", GgufType::Uint8);
  dup.put<uint8_t>(2);
  EXPECT_NE(parse_error(dup.bytes).find("duplicate"), std::string::npos);
}

TEST(Gguf, EveryTruncationOfAHandMadeFileThrows) {
  const std::string bytes = sample_file();
  const size_t header_end = parse(bytes).data_offset;
  for (size_t cut = 0; cut < header_end; ++cut) {
    // Cuts inside the padding before the data leave a complete header but too little data.
    EXPECT_THROW(parse(bytes.substr(0, cut)), Error) << "cut at " << cut;
  }
}

TEST(Gguf, SharedVocabularyFilesParse) {
  const auto dir = test::llama_cpp_vocab_dir();
  for (const char* name : {"bert-bge", "gpt-2", "llama-spm"}) {
    const GgufFile f = read_gguf(dir / (std::string("ggml-vocab-") + name + ".gguf"));
    EXPECT_EQ(f.version, 3u);
    EXPECT_TRUE(f.tensors.empty());
    ASSERT_NE(f.get_strings("tokenizer.ggml.tokens"), nullptr) << name;
    EXPECT_GT(f.get_strings("tokenizer.ggml.tokens")->size(), 30000u) << name;
  }
}

TEST(Gguf, TruncatedVocabularyFileThrowsAtEveryCut) {
  const std::string path = (test::llama_cpp_vocab_dir() / "ggml-vocab-bert-bge.gguf").string();
  const std::string bytes = read_file(path);
  std::vector<size_t> cuts;
  for (size_t cut = 0; cut < 320; ++cut) cuts.push_back(cut);               // magic, counts, the first keys
  for (size_t k = 1; k < 200; ++k) cuts.push_back(bytes.size() * k / 200);  // through the token array
  cuts.push_back(bytes.size() - 1);
  for (size_t cut : cuts) {
    try {
      parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), cut, path);
      ADD_FAILURE() << "no error for a file cut at " << cut;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path));
}

TEST(Gguf, MissingFileIsAnError) {
  EXPECT_THROW(read_gguf(test::fresh_temp_dir() / "none.gguf"), Error);
}

}  // namespace
}  // namespace flame::llm

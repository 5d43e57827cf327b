// safetensors: the writer's bytes follow the format, files round-trip through
// the reader (single and sharded), and every kind of malformed header is
// refused with an error naming the file and tensor.
#include <gtest/gtest.h>

#include <cstring>

#include "llm/weights.h"
#include "test_helpers.h"
#include "util/error.h"
#include "util/file.h"
#include "util/safetensors.h"

namespace flame::llm {
namespace {

using test::fresh_temp_dir;

std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

// A file made by hand: header JSON + buffer.
std::string make_file(const std::string& header, const std::string& buffer) {
  return u64le(header.size()) + header + buffer;
}

std::string parse_error(const std::string& bytes) {
  try {
    parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "f.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, WriterBytesFollowTheFormat) {
  SafetensorsWriter w;
  w.add("b", DType::F32, {2}, std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8));  // 1.0f, 2.0f
  w.add("a", DType::BF16, {1, 3}, std::string(6, '\x01'));
  w.set_metadata({{"format", "pt"}});
  const auto dir = fresh_temp_dir();
  w.write(dir / "x.safetensors");
  const std::string bytes = read_file(dir / "x.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  ASSERT_EQ((8 + n) % 8, 0u) << "buffer must start 8-byte aligned";
  ASSERT_EQ(bytes.size(), 8 + n + 14);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));  // trailing spaces are valid JSON whitespace
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  EXPECT_EQ(header["a"]["dtype"], "BF16");
  EXPECT_EQ(header["a"]["shape"], nlohmann::json({1, 3}));
  EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json({0, 6}));  // name order
  EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json({6, 14}));
  float values[2];
  std::memcpy(values, bytes.data() + 8 + n + 6, 8);
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], 2.0f);
}

TEST(Safetensors, TorchRoundTripIsExactAndZeroCopy) {
  const auto dir = fresh_temp_dir();
  torch::manual_seed(0);
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"w.bf16", torch::randn({5, 7}).to(torch::kBFloat16)},
      {"w.f16", torch::randn({3}).to(torch::kFloat16)},
      {"w.f32", torch::randn({2, 2, 2})},
      {"ids", torch::arange(10, torch::kInt64)},
      {"empty", torch::zeros({0, 4})},
  };
  write_checkpoint_weights(dir, tensors);
  WeightFiles files(dir);
  ASSERT_EQ(files.names().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const auto back = files.get(name, t.scalar_type(), torch::kCPU);
    EXPECT_TRUE(torch::equal(back, t)) << name;
  }
  // Same dtype on the CPU: the tensor points into the memory map.
  const auto& file = *files.files().front();
  const auto view = files.get("w.f32", torch::kFloat32, torch::kCPU);
  const auto* begin = file.mapping()->data();
  const auto* p = static_cast<const uint8_t*>(view.data_ptr());
  EXPECT_TRUE(p >= begin && p < begin + file.mapping()->size());
  // Another dtype: converted copy with the same values.
  const auto converted = files.get("w.bf16", torch::kFloat32, torch::kCPU);
  EXPECT_TRUE(torch::equal(converted, tensors[0].second.to(torch::kFloat32)));
  EXPECT_THROW(files.get("w.f32", torch::kFloat32, torch::kCPU, {2, 4}), Error);
  // Integer data read as a float weight is refused, naming the tensor (it was
  // silently converted: an I32 / U8 / BOOL "weight" ran as garbage).
  const std::string message = test::error_of([&] { files.get("ids", torch::kBFloat16, torch::kCPU); });
  EXPECT_TRUE(test::contains(message, "tensor 'ids' is stored as Long; weights must be a float dtype"))
      << message;
}

TEST(Safetensors, AnF8TensorIsNamedWithItsFile) {
  // F8 has no LibTorch 1.13 dtype; the error named neither file nor tensor.
  SafetensorsWriter w;
  w.add("model.norm.weight", DType::F8_E4M3, {4}, std::string(4, '\x38'));
  const auto dir = fresh_temp_dir();
  w.write(dir / "model.safetensors");
  WeightFiles files(dir);
  const std::string message =
      test::error_of([&] { files.get("model.norm.weight", torch::kFloat32, torch::kCPU); });
  EXPECT_TRUE(test::contains(
      message, (dir / "model.safetensors").string() + ": tensor 'model.norm.weight' is stored as F8_E4M3"))
      << message;
}

TEST(Safetensors, ShardedCheckpointRoundTrips) {
  const auto dir = fresh_temp_dir();
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (int i = 0; i < 6; ++i) tensors.emplace_back("t" + std::to_string(i), torch::full({100}, float(i)));
  write_checkpoint_weights(dir, tensors, /*shard_bytes=*/900);  // 400 bytes each: 2 per shard
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir / "model-00003-of-00003.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  const auto index = read_json_file(dir / "model.safetensors.index.json");
  EXPECT_EQ(index["metadata"]["total_size"], 2400);
  EXPECT_EQ(index["weight_map"]["t5"], "model-00003-of-00003.safetensors");
  WeightFiles files(dir);
  EXPECT_EQ(files.files().size(), 3u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(files.get("t" + std::to_string(i), torch::kFloat32, torch::kCPU)[99].item<float>(), float(i));
  }
}

TEST(Safetensors, IndexPointingAtMissingShardIsAnError) {
  const auto dir = fresh_temp_dir();
  write_checkpoint_weights(dir, {{"a", torch::ones({300})}, {"b", torch::ones({300})}}, 1000);
  fs::remove(dir / "model-00002-of-00002.safetensors");
  try {
    WeightFiles files(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model-00002-of-00002.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, MalformedHeadersAreRefusedWithTheirReason) {
  const std::string ok_header = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(parse_error(make_file(ok_header, std::string(8, '\0'))), "");
  struct Case {
    std::string bytes;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"abc", "shorter than the 8-byte header size"},
      {u64le(1ull << 40) + "{}", "exceeds"},
      {u64le(100) + "{}", "truncated"},
      {make_file("[1,2]", ""), "not a JSON object"},
      // Garbage whose first 8 bytes make a plausible size was "not a JSON object".
      {make_file("\x01\x02garbage", ""),
       "its 9-byte header is not JSON (it starts with bytes 0102676172626167)"},
      {make_file("{\"t\":", ""), "not valid JSON"},
      {make_file(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", std::string(8, 0)),
       "unknown dtype 'F33'"},
      {make_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, 0)),
       "non-negative"},
      {make_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 0)),
       "shape x dtype needs 12"},
      {make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", std::string(8, 0)),
       "past the data buffer"},
      {make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::string(8, 0)),
       "begin 8 > end 0"},
      {make_file(
           R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           std::string(12, 0)),
       "overlaps"},
      {make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, 0)), "hole"},
      {make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(12, 0)),
       "tensors cover 8"},
      {make_file(R"({"__metadata__":{"a":1}})", ""), "not a string"},
      // Two entries of one name: the parser kept the last, and the first's bytes were reported as a hole.
      {make_file(
           R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"t":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
           std::string(16, 0)),
       "the header names 't' twice"},
      {make_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
                 std::string(8, 0)),
       "overflows"},
  };
  for (const auto& c : cases) {
    const std::string err = parse_error(c.bytes);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << err << "'";
    if (!err.empty()) {
      EXPECT_NE(err.find("f.safetensors"), std::string::npos) << err;
    }
  }
}

}  // namespace
}  // namespace flame::llm

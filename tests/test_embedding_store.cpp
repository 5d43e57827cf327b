// The offline embedding store: round trips, the shard file format, resuming a
// killed job, refusing mixed identities, scale-out parts (verify, merge),
// corrupt shards, and joining stores by key.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "data/caption_source.h"
#include "log_capture.h"
#include "test_helpers.h"
#include "text/embedding_store.h"
#include "text/joined_stores.h"
#include "text/store_parts.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/safetensors.h"

namespace flame::text {
namespace {

using test::contains;
using test::error_of;
using test::fresh_temp_dir;
using Strings = std::vector<std::string>;

StoreIdentity make_identity(const std::string& prompt_set = "long", int64_t k = 7, int64_t d = 16,
                            const std::string& dtype = "f16") {
  StoreIdentity id;
  id.llm = {{"name", "tiny-llama"},
            {"architecture", "llama"},
            {"config_sha256", "c0ffee"},
            {"weights_checksum", "w1"}};
  id.prompt_set_name = prompt_set;
  id.prompt_set_sha256 = "sha-" + prompt_set;
  for (int64_t i = 0; i < k; ++i) id.facets.push_back(fmt::format("{}{}", prompt_set, i));
  id.layer = 20;
  id.dtype = dtype;
  id.num_facets = k;
  id.dim = d;
  id.normalized = true;
  return id;
}

Strings make_keys(int n, const std::string& prefix = "img") {
  Strings keys;
  for (int i = 0; i < n; ++i) keys.push_back(fmt::format("{}{:04}.jpg", prefix, i));
  return keys;
}

// A unit-norm [K, D] embedding that depends only on the key (and a salt), as
// an LLM's would depend only on the caption.
torch::Tensor embedding_of(const std::string& key, int64_t k, int64_t d, uint64_t salt = 0) {
  auto generator = at::detail::createCPUGenerator(data::key_hash(key) + salt);
  const torch::Tensor x = torch::randn({k, d}, generator);
  return x / x.norm(2, -1, true);
}

torch::Tensor embeddings_of(const Strings& keys, int64_t k, int64_t d, uint64_t salt = 0) {
  std::vector<torch::Tensor> rows;
  for (const auto& key : keys) rows.push_back(embedding_of(key, k, d, salt));
  return rows.empty() ? torch::zeros({0, k, d}) : torch::stack(rows);
}

Strings slice(const Strings& keys, size_t begin, size_t end) {
  return Strings(keys.begin() + std::min(begin, keys.size()), keys.begin() + std::min(end, keys.size()));
}

// Writes `keys` in shards of `shard_size`, as `flame embed` would, and finalizes.
void write_store(const fs::path& dir, const StoreIdentity& id, const Strings& keys, size_t shard_size,
                 PartSelection part = {}) {
  EmbeddingStoreWriter writer(dir, id, part);
  for (size_t begin = 0, shard = 0; begin < keys.size(); begin += shard_size, ++shard) {
    const Strings shard_keys = slice(keys, begin, begin + shard_size);
    writer.write_shard(static_cast<int64_t>(shard), shard_keys,
                       embeddings_of(shard_keys, id.num_facets, id.dim));
  }
  writer.finalize({{"test", ::testing::UnitTest::GetInstance()->current_test_info()->name()}});
}

TEST(EmbeddingStore, RoundTrip) {
  for (const std::string dtype : {"f16", "bf16"}) {
    const auto dir = fresh_temp_dir(dtype);
    const StoreIdentity id = make_identity("long", 7, 16, dtype);
    const Strings keys = make_keys(25);
    write_store(dir, id, keys, 10);

    const EmbeddingStore store = EmbeddingStore::open(dir);
    ASSERT_EQ(store.size(), 25);
    EXPECT_EQ(store.num_facets(), 7);
    EXPECT_EQ(store.dim(), 16);
    EXPECT_EQ(store.keys(), keys);
    EXPECT_EQ(store.facets(), id.facets);
    const auto& m = store.manifest();
    EXPECT_EQ(m["format"], "flame-embedding-store");
    EXPECT_EQ(m["version"], 1);
    EXPECT_EQ(m["count"], 25);
    EXPECT_EQ(m["dtype"], dtype);
    EXPECT_EQ(m["layer"], 20);
    EXPECT_EQ(m["normalized"], true);
    EXPECT_EQ(m["llm"]["name"], "tiny-llama");
    EXPECT_EQ(m["prompt_set"]["name"], "long");
    EXPECT_EQ(m["prompt_set"]["facets"].size(), 7u);
    EXPECT_EQ(m["part"], nlohmann::json({{"index", 0}, {"count", 1}}));
    EXPECT_EQ(m["shards"], nlohmann::json::parse(R"([{"file": "shard-00000.safetensors", "count": 10},
        {"file": "shard-00001.safetensors", "count": 10}, {"file": "shard-00002.safetensors", "count": 5}])"));
    EXPECT_EQ(m["job"]["test"], "RoundTrip");

    const double tolerance = dtype == "f16" ? 1e-3 : 8e-3;  // half a unit in the last place near 1
    for (int64_t i = 0; i < store.size(); ++i) {
      EXPECT_EQ(store.key(i), keys[i]);
      EXPECT_EQ(store.index_of(keys[i]), i);
      const torch::Tensor row = store.get(i);
      EXPECT_EQ(row.scalar_type(), store_torch_dtype(id));
      EXPECT_EQ(row.sizes(), torch::IntArrayRef({7, 16}));
      EXPECT_TRUE(torch::allclose(row.to(torch::kFloat32), embedding_of(keys[i], 7, 16), 0, tolerance))
          << keys[i];
      EXPECT_TRUE(torch::equal(store.get(keys[i]), row));
    }
    // Zero-copy: the same index gives the same memory, inside the map.
    EXPECT_EQ(store.get(12).data_ptr(), store.get(12).data_ptr());
    EXPECT_FALSE(store.index_of("absent.jpg").has_value());
    const std::string message = error_of([&] { store.get("absent.jpg"); });
    EXPECT_TRUE(contains(message, "absent.jpg") && contains(message, dir.string())) << message;
    EXPECT_THROW(store.get(int64_t{25}), Error);
    EXPECT_THROW(store.key(-1), Error);

    const std::vector<int64_t> order = {24, 0, 13, 13, 9, 10};
    const torch::Tensor batch = store.gather(order);
    ASSERT_EQ(batch.sizes(), torch::IntArrayRef({6, 7, 16}));
    EXPECT_EQ(batch.scalar_type(), torch::kFloat32);
    for (size_t j = 0; j < order.size(); ++j) {
      EXPECT_TRUE(torch::equal(batch[j], store.get(order[j]).to(torch::kFloat32))) << j;
    }
    EXPECT_EQ(store.gather(order, torch::kBFloat16).scalar_type(), torch::kBFloat16);
    EXPECT_EQ(store.gather({}).sizes(), torch::IntArrayRef({0, 7, 16}));
    EXPECT_THROW(store.gather({3, 99}), Error);
  }
}

TEST(EmbeddingStore, EmptyStore) {
  const auto dir = fresh_temp_dir();
  write_store(dir, make_identity(), {}, 10);
  const EmbeddingStore store = EmbeddingStore::open(dir);
  EXPECT_EQ(store.size(), 0);
  EXPECT_EQ(store.manifest()["shards"].size(), 0u);
}

TEST(EmbeddingStore, ShardsAreSafetensorsWithKeysMetadata) {
  const auto dir = fresh_temp_dir();
  const StoreIdentity id = make_identity("short", 3, 8);
  const Strings keys = make_keys(6);
  write_store(dir, id, keys, 4);

  SafetensorsFile file(dir / "shard-00001.safetensors");
  ASSERT_EQ(file.tensors().size(), 1u);
  const TensorInfo& info = file.info("embeddings");
  EXPECT_EQ(info.dtype, DType::F16);
  EXPECT_EQ(info.shape, (std::vector<int64_t>{2, 3, 8}));
  const auto& metadata = file.header().metadata;
  EXPECT_EQ(metadata.at("format"), "pt");
  EXPECT_EQ(nlohmann::json::parse(metadata.at("keys")), nlohmann::json(slice(keys, 4, 6)));
  EXPECT_EQ(nlohmann::json::parse(metadata.at("part")), nlohmann::json({{"index", 0}, {"count", 1}}));
  const auto identity = nlohmann::json::parse(metadata.at("identity"));
  EXPECT_EQ(identity["prompt_set"]["name"], "short");
  EXPECT_EQ(identity["dim"], 8);
  // The data is the f16 rounding of the vectors, in row order.
  torch::Tensor stored = torch::empty({2, 3, 8}, torch::kFloat16);
  std::memcpy(stored.data_ptr(), file.data(info), info.byte_size());
  EXPECT_TRUE(torch::equal(stored, embeddings_of(slice(keys, 4, 6), 3, 8).to(torch::kFloat16)));
  // Nothing but the shards, the manifest and the lock file.
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{".lock", "manifest.json", "shard-00000.safetensors",
                                          "shard-00001.safetensors"}));
}

TEST(EmbeddingStore, ResumesAfterACrash) {
  const StoreIdentity id = make_identity();
  const Strings keys = make_keys(30);
  const auto reference_dir = fresh_temp_dir("-reference");
  write_store(reference_dir, id, keys, 10);

  const auto dir = fresh_temp_dir();
  {
    EmbeddingStoreWriter writer(dir, id);
    for (int shard : {0, 2}) {
      const Strings shard_keys = slice(keys, shard * 10, shard * 10 + 10);
      writer.write_shard(shard, shard_keys, embeddings_of(shard_keys, 7, 16));
    }
    // Killed while writing shard 1: its temp file is left behind, no manifest.
    write_file_atomic(dir / ".shard-00001.safetensors.tmp.4242.beef", "partial shard bytes");
  }
  EXPECT_TRUE(contains(error_of([&] { EmbeddingStore::open(dir); }), "no manifest.json"));
  {
    EmbeddingStoreWriter writer(dir, id);
    EXPECT_FALSE(fs::exists(dir / ".shard-00001.safetensors.tmp.4242.beef")) << "stale temp file removed";
    EXPECT_TRUE(writer.has_shard(0));
    EXPECT_FALSE(writer.has_shard(1));
    EXPECT_TRUE(writer.has_shard(2));
    EXPECT_FALSE(writer.has_shard(3));
    const Strings shard0 = slice(keys, 0, 10), shard2 = slice(keys, 20, 30);
    EXPECT_TRUE(writer.has_shard(0, &shard0));
    // Resuming with another split (inputs or shard size changed) is refused.
    const std::string message = error_of([&] { writer.has_shard(2, &shard0); });
    EXPECT_TRUE(contains(message, "shard-00002.safetensors") && contains(message, "changed")) << message;
    // The first keys agree (a merged store's shards): the message names where they part.
    Strings other = shard2;
    other[3] = "moved.jpg";
    const std::string later = error_of([&] { writer.has_shard(2, &other); });
    EXPECT_TRUE(contains(later, "differ at position 3 ('" + shard2[3] + "' vs 'moved.jpg')")) << later;
    // Not finished: finalize names the missing shard.
    EXPECT_TRUE(contains(error_of([&] { writer.finalize(); }), "shard-00001.safetensors is missing"));
    const Strings shard1 = slice(keys, 10, 20);
    writer.write_shard(1, shard1, embeddings_of(shard1, 7, 16));
    EXPECT_TRUE(writer.has_shard(1, &shard1));
    writer.finalize();
  }
  const EmbeddingStore resumed = EmbeddingStore::open(dir);
  const EmbeddingStore reference = EmbeddingStore::open(reference_dir);
  ASSERT_EQ(resumed.size(), 30);
  std::set<std::string> seen(resumed.keys().begin(), resumed.keys().end());
  EXPECT_EQ(seen.size(), 30u) << "every key exactly once";
  for (const auto& key : keys) EXPECT_TRUE(torch::equal(resumed.get(key), reference.get(key))) << key;
  EXPECT_EQ(read_file(dir / "shard-00001.safetensors"), read_file(reference_dir / "shard-00001.safetensors"));

  // Writing into a finished store withdraws its manifest until finalize.
  {
    EmbeddingStoreWriter writer(dir, id);
    const Strings extra = {"late.jpg"};
    writer.write_shard(3, extra, embeddings_of(extra, 7, 16));
    EXPECT_FALSE(fs::exists(dir / "manifest.json"));
    writer.finalize();
  }
  EXPECT_EQ(EmbeddingStore::open(dir).size(), 31);
}

TEST(EmbeddingStore, RefusesAnotherIdentity) {
  const auto dir = fresh_temp_dir();
  const StoreIdentity short_set = make_identity("short", 3, 16);
  write_store(dir, short_set, make_keys(5), 10);

  StoreIdentity long_set = short_set;
  long_set.prompt_set_name = "long";
  std::string message = error_of([&] { EmbeddingStoreWriter(dir, long_set); });
  EXPECT_TRUE(contains(message, "store was made with prompt set 'short', this job uses 'long'")) << message;
  EXPECT_TRUE(contains(message, dir.string())) << message;

  StoreIdentity other = short_set;
  other.llm["weights_checksum"] = "w2";
  other.layer = 12;
  message = error_of([&] { EmbeddingStoreWriter(dir, other); });
  EXPECT_TRUE(contains(message, "LLM weights_checksum 'w1', this job uses 'w2'")) << message;
  EXPECT_TRUE(contains(message, "layer 20, this job uses 12")) << message;

  other = short_set;
  other.dtype = "bf16";
  EXPECT_TRUE(
      contains(error_of([&] { EmbeddingStoreWriter(dir, other); }), "dtype 'f16', this job uses 'bf16'"));
  EXPECT_TRUE(contains(error_of([&] {
                         EmbeddingStoreWriter(dir, short_set, {1, 2});
                       }),
                       "store was made as part 0 of 1, this job is part 1 of 2"));

  // Without a manifest (a crashed job), the shards tell the identity.
  fs::remove(dir / "manifest.json");
  message = error_of([&] { EmbeddingStoreWriter(dir, long_set); });
  EXPECT_TRUE(contains(message, "shard-00000.safetensors") && contains(message, "prompt set 'short'"))
      << message;
  EXPECT_TRUE(contains(error_of([&] { EmbeddingStoreWriter(dir, short_set, {1, 2}); }), "part 0 of 1"));
  EmbeddingStoreWriter same(dir, short_set);  // the same identity reopens
  EXPECT_TRUE(same.has_shard(0));
}

// A wrong --texts path says so, rather than "no manifest.json".
TEST(EmbeddingStore, OpenNamesAMissingPath) {
  const auto dir = fresh_temp_dir();
  EXPECT_TRUE(
      contains(error_of([&] { EmbeddingStore::open(dir / "typo"); }), "typo: no such embedding store"));
  write_file_atomic(dir / "file", "x");
  EXPECT_TRUE(contains(error_of([&] { EmbeddingStore::open(dir / "file"); }), "a store is a folder"));
  EXPECT_TRUE(contains(error_of([&] { EmbeddingStore::open(dir); }), "no manifest.json"));
}

TEST(EmbeddingStore, OneWriterAtATime) {
  const auto dir = fresh_temp_dir();
  auto writer = std::make_unique<EmbeddingStoreWriter>(dir, make_identity());
  const std::string message = error_of([&] { EmbeddingStoreWriter second(dir, make_identity()); });
  // The second writer names the holder (this process here).
  EXPECT_TRUE(contains(message, fmt::format("the store is in use by pid {} on host", ::getpid()))) << message;
  writer.reset();
  EmbeddingStoreWriter after(dir, make_identity());
}

TEST(EmbeddingStore, WriteShardChecksItsInput) {
  const auto dir = fresh_temp_dir();
  EmbeddingStoreWriter writer(dir, make_identity("long", 2, 4));
  const Strings keys = {"a", "b"};
  const torch::Tensor good = embeddings_of(keys, 2, 4);
  EXPECT_TRUE(
      contains(error_of([&] { writer.write_shard(0, {"a"}, good); }), "shape [2, 2, 4], expected [1, 2, 4]"));
  EXPECT_TRUE(
      contains(error_of([&] { writer.write_shard(0, keys, good.transpose(1, 2)); }), "expected [2, 2, 4]"));
  EXPECT_TRUE(contains(error_of([&] { writer.write_shard(0, {"a", "a"}, good); }), "key 'a' appears twice"));
  EXPECT_TRUE(contains(error_of([&] { writer.write_shard(0, {"a", ""}, good); }), "empty key"));
  torch::Tensor nan = good.clone();
  nan[1][0][2] = std::nanf("");
  EXPECT_TRUE(contains(error_of([&] { writer.write_shard(0, keys, nan); }), "key 'b' has NaN or infinite"));
  const std::string message = error_of([&] { writer.write_shard(0, keys, good * 2); });
  EXPECT_TRUE(contains(message, "marked normalized") &&
              (contains(message, "has L2 norm 2.0") || contains(message, "has L2 norm 1.99")))
      << message;
  EXPECT_THROW(writer.write_shard(0, keys, torch::ones({2, 2, 4}, torch::kInt64)), Error);
  EXPECT_FALSE(writer.has_shard(0)) << "nothing written by a refused shard";

  // Not normalized: values past the f16 range are caught after conversion.
  StoreIdentity raw = make_identity("raw", 2, 4);
  raw.normalized = false;
  EmbeddingStoreWriter raw_writer(fresh_temp_dir("-raw"), raw);
  EXPECT_TRUE(contains(error_of([&] { raw_writer.write_shard(0, keys, good * 1e6); }), "NaN or infinite"));
  raw_writer.write_shard(0, keys, (good * 100).to(torch::kFloat64));  // any float dtype is accepted
}

TEST(EmbeddingStore, MergedPartsEqualASingleProcessStore) {
  const StoreIdentity id = make_identity();
  std::vector<data::CaptionRecord> records;
  for (const auto& key : make_keys(100)) records.push_back({key, {{"long", "text"}}, ""});
  Strings all_keys;
  for (const auto& r : records) all_keys.push_back(r.key);

  const auto root = fresh_temp_dir();
  write_store(root / "single", id, all_keys, 16);
  std::vector<fs::path> parts;
  for (int p = 0; p < 3; ++p) {
    Strings part_keys;
    for (const auto& r : data::part_records(records, {p, 3})) part_keys.push_back(r.key);
    parts.push_back(root / fmt::format("part{}", p));
    write_store(parts.back(), id, part_keys, 8, {p, 3});
  }
  const StoreCheckReport report = verify_stores(parts, &all_keys);
  EXPECT_TRUE(report.ok()) << report.summary();
  EXPECT_EQ(report.count, 100);

  // Parts given in any order.
  merge_stores({parts[2], parts[0], parts[1]}, root / "merged");
  const EmbeddingStore merged = EmbeddingStore::open(root / "merged");
  const EmbeddingStore single = EmbeddingStore::open(root / "single");
  ASSERT_EQ(merged.size(), 100);
  EXPECT_EQ(std::set<std::string>(merged.keys().begin(), merged.keys().end()),
            std::set<std::string>(all_keys.begin(), all_keys.end()));
  for (const auto& key : all_keys) EXPECT_TRUE(torch::equal(merged.get(key), single.get(key))) << key;
  EXPECT_EQ(merged.part(), (PartSelection{0, 1}));
  EXPECT_EQ(merged.keys().front(), EmbeddingStore::open(parts[0]).keys().front()) << "part order";
  EXPECT_EQ(merged.manifest()["job"]["merged_from"].size(), 3u);
  EXPECT_EQ(fs::hard_link_count(root / "merged" / "shard-00000.safetensors"), 2u)
      << "hard-linked, not copied";
  EXPECT_TRUE(verify_stores({root / "merged"}, &all_keys).ok());

  EXPECT_TRUE(contains(error_of([&] { merge_stores(parts, root / "merged"); }), "not empty"));
  // A merged store can be reopened by a writer with its own identity (part 0 of 1).
  EmbeddingStoreWriter reopened(root / "merged", id);
  EXPECT_TRUE(reopened.has_shard(0));
}

TEST(EmbeddingStore, VerifyReportsProblems) {
  const StoreIdentity id = make_identity("short", 3, 8);
  const Strings keys = make_keys(12);
  const auto root = fresh_temp_dir();
  const fs::path p0 = root / "p0", p1 = root / "p1", p2 = root / "p2";
  write_store(p0, id, slice(keys, 0, 4), 3, {0, 3});
  write_store(p1, id, slice(keys, 4, 8), 3, {1, 3});
  write_store(p2, id, slice(keys, 8, 12), 3, {2, 3});
  EXPECT_TRUE(verify_stores({p0, p1, p2}, &keys).ok());

  StoreCheckReport report = verify_stores({p0, p2});
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.errors, Strings({"part 1 of 3 is missing"}));
  EXPECT_EQ(report.count, 8);
  EXPECT_TRUE(contains(error_of([&] { merge_stores({p0, p2}, root / "out"); }), "part 1 of 3 is missing"));
  EXPECT_FALSE(fs::exists(root / "out" / "manifest.json"));

  Strings expected = keys;
  expected.push_back("never-embedded.jpg");
  report = verify_stores({p0, p1, p2}, &expected);
  EXPECT_EQ(report.missing_keys, Strings({"never-embedded.jpg"}));
  EXPECT_TRUE(report.errors.empty());
  EXPECT_FALSE(report.ok());

  report = verify_stores({p0, p1, p1, p2});
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_TRUE(contains(report.errors[0], "part 1 of 3 is given twice")) << report.errors[0];

  // Part 1 redone with keys overlapping part 0 (a bad split).
  const fs::path p1_overlap = root / "p1-overlap";
  write_store(p1_overlap, id, slice(keys, 3, 8), 3, {1, 3});
  report = verify_stores({p0, p1_overlap, p2});
  EXPECT_EQ(report.duplicate_keys, Strings({keys[3]}));
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(contains(report.summary(), "1 keys in more than one part: '" + keys[3] + "'"))
      << report.summary();

  // Part 2 made with another prompt set.
  const fs::path p2_other = root / "p2-other";
  StoreIdentity other = id;
  other.prompt_set_name = "short-v2";
  write_store(p2_other, other, slice(keys, 8, 12), 3, {2, 3});
  report = verify_stores({p0, p1, p2_other});
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_TRUE(contains(report.errors[0], "prompt set 'short', " + p2_other.string() + " with 'short-v2'"))
      << report.errors[0];

  // A part of another split count.
  const fs::path p_of_2 = root / "p-of-2";
  write_store(p_of_2, id, slice(keys, 8, 12), 3, {1, 2});
  report = verify_stores({p0, p1, p_of_2});
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(contains(report.summary(), "is part 1 of 2")) << report.summary();
}

// A part out of range reads the same wherever it comes from: the writer, the
// record split, a manifest, a shard's metadata, verify and merge.
TEST(EmbeddingStore, APartOutOfRangeIsRefusedWithOneMessage) {
  const std::string invalid = "invalid part 2 of 2: need 0 <= index < count";
  const auto dir = fresh_temp_dir();
  const StoreIdentity id = make_identity("short", 3, 8);
  EXPECT_EQ(error_of([&] {
              EmbeddingStoreWriter(dir / "w", id, {2, 2});
            }),
            (dir / "w").string() + ": " + invalid);
  EXPECT_EQ(error_of([&] { data::part_records({}, {2, 2}); }), "part_records: " + invalid);
  EXPECT_TRUE(contains(error_of([&] { data::part_records({}, {0, 0}); }), "invalid part 0 of 0"));

  write_store(dir / "store", id, make_keys(4), 2, {1, 2});
  auto manifest = read_json_file(dir / "store" / "manifest.json");
  manifest["part"]["index"] = 2;
  write_json_file_atomic(dir / "store" / "manifest.json", manifest);
  const std::string manifest_error = (dir / "store" / "manifest.json").string() + ": " + invalid;
  EXPECT_EQ(error_of([&] { EmbeddingStore::open(dir / "store"); }), manifest_error);
  EXPECT_EQ(verify_stores({dir / "store"}).errors, Strings({manifest_error}));
  EXPECT_TRUE(contains(error_of([&] { merge_stores({dir / "store"}, dir / "merged"); }), manifest_error));

  // A shard whose metadata claims such a part.
  const fs::path shard = dir / "shard" / shard_file_name(0);
  write_store_shard(shard, id, {1, 2}, {"k"}, embeddings_of({"k"}, 3, 8));
  std::string bytes = read_file(shard);
  const std::string good = R"({\"count\":2,\"index\":1})", bad = R"({\"count\":2,\"index\":2})";
  ASSERT_NE(bytes.find(good), std::string::npos);
  bytes.replace(bytes.find(good), good.size(), bad);  // same length: the header stays valid
  write_file_atomic(shard, bytes);
  EXPECT_EQ(error_of([&] { open_store_shard(shard); }), shard.string() + ": __metadata__: " + invalid);
}

TEST(EmbeddingStore, DetectsTruncatedAndTamperedShards) {
  const auto dir = fresh_temp_dir();
  const StoreIdentity id = make_identity();
  write_store(dir, id, make_keys(20), 8);
  const fs::path shard = dir / "shard-00001.safetensors";
  const std::string bytes = read_file(shard);

  for (const size_t size : {bytes.size() - 1, bytes.size() / 2, size_t{100}, size_t{4}, size_t{0}}) {
    write_file_atomic(shard, std::string_view(bytes).substr(0, size));
    const std::string message = error_of([&] { EmbeddingStore::open(dir); });
    EXPECT_TRUE(contains(message, "shard-00001.safetensors")) << size << ": " << message;
    EXPECT_FALSE(verify_stores({dir}).ok());
    const std::string writer_message = error_of([&] { EmbeddingStoreWriter(dir, id); });
    EXPECT_TRUE(contains(writer_message, "shard-00001.safetensors")) << writer_message;
  }
  // A shard deleted, or changed under the manifest.
  fs::remove(shard);
  EXPECT_TRUE(contains(error_of([&] { EmbeddingStore::open(dir); }), "shard-00001.safetensors"));
  {
    auto manifest = read_json_file(dir / "manifest.json");
    write_file_atomic(shard, bytes);
    manifest["count"] = 21;
    write_json_file_atomic(dir / "manifest.json", manifest);
    EXPECT_TRUE(contains(error_of([&] { EmbeddingStore::open(dir); }), "the manifest says count 21"));
    manifest["count"] = 20;
    manifest["dim"] = 32;
    write_json_file_atomic(dir / "manifest.json", manifest);
    EXPECT_TRUE(contains(error_of([&] { EmbeddingStore::open(dir); }), "dim 32, this shard has 16"));
    manifest["dim"] = 16;
    write_json_file_atomic(dir / "manifest.json", manifest);
  }
  EXPECT_EQ(EmbeddingStore::open(dir).size(), 20);
  // Not a store at all.
  EXPECT_TRUE(
      contains(error_of([&] { EmbeddingStore::open(fresh_temp_dir("-empty")); }), "no manifest.json"));
}

TEST(EmbeddingStore, AShardChangedOnDiskIsNamedByVerifyAndComputedAgainOnResume) {
  // One flipped low mantissa bit: still finite and of unit norm, so only the
  // checksum recorded at write time can tell.
  const auto dir = fresh_temp_dir();
  const StoreIdentity id = make_identity();
  const Strings keys = make_keys(20);
  write_store(dir, id, keys, 8);
  ASSERT_TRUE(verify_stores({dir}).ok()) << verify_stores({dir}).summary();
  const fs::path shard = dir / "shard-00001.safetensors";
  std::string bytes = read_file(shard);
  const auto header =
      parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "s");
  bytes[header.data_start + header.tensors.at(kEmbeddingsTensor).begin + 10] ^= 1;
  write_file_atomic(shard, bytes);
  EXPECT_EQ(EmbeddingStore::open(dir).size(), 20);  // opening does not hash (training reads every shard)
  const auto report = verify_stores({dir});
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(contains(report.summary(), shard.string() + ": its vectors changed after they were written"))
      << report.summary();

  {
    EmbeddingStoreWriter writer(dir, id);  // resume: the shard is dropped, to be computed again
    EXPECT_FALSE(fs::exists(shard));
    EXPECT_FALSE(fs::exists(dir / "manifest.json"));
    EXPECT_TRUE(writer.has_shard(0));
    EXPECT_FALSE(writer.has_shard(1));
    const Strings again = slice(keys, 8, 16);
    writer.write_shard(1, again, embeddings_of(again, id.num_facets, id.dim));
    writer.finalize({});
  }
  EXPECT_TRUE(verify_stores({dir}).ok()) << verify_stores({dir}).summary();
}

TEST(EmbeddingStore, ACorruptManifestIsRefusedBeforeItIsTrusted) {
  // A huge count was reserved before the shards were read (std::length_error,
  // "internal error"); a float layer was cast (undefined past int); a part
  // count of 2^32 + 1 wrapped to 1.
  const auto dir = fresh_temp_dir();
  write_store(dir, make_identity(), make_keys(20), 8);
  const auto good = read_json_file(dir / "manifest.json");
  const auto message = [&](const std::string& field, const nlohmann::json& value) {
    auto manifest = good;
    manifest[field] = value;
    write_json_file_atomic(dir / "manifest.json", manifest);
    return error_of([&] { EmbeddingStore::open(dir); });
  };
  const std::string count = message("count", int64_t{1000000000000000000});
  EXPECT_TRUE(contains(count, "the shards list 20 embeddings, the manifest says count 1000000000000000000"))
      << count;
  const std::string layer = message("layer", 20.0);
  EXPECT_TRUE(contains(layer, "field 'layer' must be an integer, got 20.0")) << layer;
  const std::string part = message("part", {{"index", 0}, {"count", 4294967297u}});
  EXPECT_TRUE(contains(part, "part count 4294967297 is too large")) << part;
  auto shards = good["shards"];
  shards[0]["count"] = -3;
  const std::string shard = message("shards", shards);
  EXPECT_TRUE(contains(shard, "lists -3 embeddings")) << shard;
  write_json_file_atomic(dir / "manifest.json", good);
  EXPECT_EQ(EmbeddingStore::open(dir).size(), 20);
}

// A shard whose values went bad after it was written (NaN bits, a vector
// scaled off unit norm) opens, but `embed verify` names it and the first key.
TEST(EmbeddingStore, VerifyReadsEveryVector) {
  const auto dir = fresh_temp_dir();
  const StoreIdentity id = make_identity("short", 3, 8);
  const Strings keys = make_keys(6);
  write_store(dir, id, keys, 4);
  ASSERT_TRUE(verify_stores({dir}).ok());
  const fs::path shard = dir / "shard-00001.safetensors";
  const std::string good = read_file(shard);
  const auto patched = [&](uint16_t bits) {
    const SafetensorsFile file(shard);
    std::string bytes = good;
    const uint64_t at = file.header().data_start + file.info("embeddings").begin;  // key 4, facet 0, value 0
    bytes[at] = static_cast<char>(bits & 0xff);
    bytes[at + 1] = static_cast<char>(bits >> 8);
    write_file_atomic(shard, bytes);
    return verify_stores({dir});
  };
  // Each change also breaks the shard's checksum, reported first; the value
  // check names the first bad key.
  const StoreCheckReport nan = patched(0x7e00);  // f16 NaN
  ASSERT_EQ(nan.errors.size(), 2u);
  EXPECT_TRUE(contains(nan.errors[0], "shard-00001.safetensors: its vectors changed")) << nan.errors[0];
  EXPECT_TRUE(contains(nan.errors[1], "1 rows hold NaN or inf values (first: key '" + keys[4] + "')"))
      << nan.errors[1];
  const StoreCheckReport off = patched(0x5640);  // f16 100.0: the vector is no longer unit
  ASSERT_EQ(off.errors.size(), 2u);
  EXPECT_TRUE(contains(off.errors[1], "a vector off unit norm (first: key '" + keys[4] + "')"))
      << off.errors[1];
}

TEST(EmbeddingStore, JoinedStoresConcatenateFacetsByKey) {
  const auto root = fresh_temp_dir();
  const Strings keys = make_keys(9);
  Strings reversed(keys.rbegin(), keys.rend());
  write_store(root / "raw", make_identity("raw", 1, 16), keys, 4);
  write_store(root / "short", make_identity("short", 3, 16, "bf16"), reversed, 5);  // another order and dtype
  write_store(root / "long", make_identity("long", 7, 16), keys, 9);

  const JoinedStores joined = JoinedStores::open({root / "raw", root / "short", root / "long"});
  EXPECT_EQ(joined.size(), 9);
  EXPECT_EQ(joined.num_facets(), 11);
  EXPECT_EQ(joined.dim(), 16);
  EXPECT_EQ(joined.facets(), Strings({"raw0", "short0", "short1", "short2", "long0", "long1", "long2",
                                      "long3", "long4", "long5", "long6"}));
  EXPECT_EQ(joined.keys(), keys);
  const std::vector<int64_t> order = {8, 0, 4};
  const torch::Tensor batch = joined.gather(order);
  ASSERT_EQ(batch.sizes(), torch::IntArrayRef({3, 11, 16}));
  for (size_t j = 0; j < order.size(); ++j) {
    const std::string& key = keys[order[j]];
    const torch::Tensor expected = torch::cat({joined.stores()[0].get(key).to(torch::kFloat32),
                                               joined.stores()[1].get(key).to(torch::kFloat32),
                                               joined.stores()[2].get(key).to(torch::kFloat32)});
    EXPECT_TRUE(torch::equal(batch[j], expected)) << key;
    EXPECT_TRUE(torch::equal(joined.get(key), expected)) << key;
  }
  EXPECT_TRUE(contains(error_of([&] { joined.get("nope.jpg"); }), "nope.jpg"));

  write_store(root / "dim8", make_identity("short", 3, 8), keys, 9);
  EXPECT_TRUE(contains(error_of([&] {
                         JoinedStores::open({root / "raw", root / "dim8"});
                       }),
                       "different dims"));
  StoreIdentity other_llm = make_identity("short", 3, 16);
  other_llm.llm["config_sha256"] = "0ther";
  write_store(root / "other-llm", other_llm, keys, 9);
  const std::string other = error_of([&] { JoinedStores::open({root / "raw", root / "other-llm"}); });
  EXPECT_TRUE(contains(other, "different LLMs") && contains(other, "LLM config_sha256 'c0ffee'") &&
              contains(other, "'0ther'"))
      << other;
  // The same checkpoint copied to another folder is the same LLM.
  StoreIdentity copied = make_identity("short", 3, 16);
  copied.llm["name"] = "copy-of-tiny-llama";
  write_store(root / "copied-llm", copied, keys, 9);
  EXPECT_EQ(JoinedStores::open({root / "raw", root / "copied-llm"}).num_facets(), 4);
  Strings renamed = keys;
  renamed[5] = "renamed.jpg";
  write_store(root / "renamed", make_identity("short", 3, 16), renamed, 9);
  const std::string message = error_of([&] { JoinedStores::open({root / "raw", root / "renamed"}); });
  EXPECT_TRUE(contains(message, keys[5]) && contains(message, "renamed")) << message;
}

// Stores joined as one text side must be encoded alike: another layer,
// normalisation or facet positioning is refused naming the field, and so is
// one store given twice.
TEST(EmbeddingStore, JoinRefusesStoresComputedDifferently) {
  const auto root = fresh_temp_dir();
  const Strings keys = make_keys(4);
  write_store(root / "raw", make_identity("raw", 1, 16), keys, 4);
  const auto refusal = [&](const std::string& name, const std::function<void(StoreIdentity&)>& change) {
    StoreIdentity id = make_identity("short", 3, 16);
    change(id);
    write_store(root / name, id, keys, 4);
    return error_of([&] { JoinedStores::open({root / "raw", root / name}); });
  };
  const std::string layer = refusal("layer", [](StoreIdentity& id) { id.layer = 12; });
  EXPECT_TRUE(contains(layer, "computed differently") && contains(layer, "layer 20") &&
              contains(layer, "layer with 12"))
      << layer;
  const std::string norm = refusal("unnormalized", [](StoreIdentity& id) { id.normalized = false; });
  EXPECT_TRUE(contains(norm, "normalized true") && contains(norm, "unnormalized with false")) << norm;
  const std::string positions =
      refusal("concatenated", [](StoreIdentity& id) { id.facet_positions = "concatenated"; });
  EXPECT_TRUE(contains(positions, "facet positions 'separate'") && contains(positions, "concatenated"))
      << positions;
  const std::string twice = error_of([&] {
    JoinedStores::open({root / "raw", root / "layer" / ".." / "raw"});
  });
  EXPECT_TRUE(contains(twice, "same store, given twice")) << twice;
  EXPECT_EQ(refusal("fine", [](StoreIdentity&) {}), "");
}

// facet_positions is part of a store's identity; stores from before it was
// recorded read as "separate" (what flame always computed).
TEST(EmbeddingStore, FacetPositionsAreIdentityAndDefaultToSeparate) {
  StoreIdentity id = make_identity();
  nlohmann::json manifest = identity_to_json(id);
  EXPECT_EQ(manifest["facet_positions"], "separate");
  manifest.erase("facet_positions");
  EXPECT_EQ(identity_from_json(manifest, "old").facet_positions, "separate");
  manifest["facet_positions"] = "concatenated";
  const StoreIdentity concatenated = identity_from_json(manifest, "new");
  EXPECT_EQ(concatenated.facet_positions, "concatenated");
  const auto differences = identity_differences(id, concatenated);
  ASSERT_EQ(differences.size(), 1u);
  EXPECT_EQ(differences[0].field, "facet positions");
  manifest["facet_positions"] = "interleaved";
  EXPECT_TRUE(
      contains(error_of([&] { identity_from_json(manifest, "bad"); }), "facet_positions 'interleaved'"));
}

TEST(EmbeddingStoreInt8, QuantizesSymmetricallyWithOneScalePerVector) {
  // Worked by hand: scale = max|x| / 127; q = round(x / scale).
  const torch::Tensor x = torch::tensor({0.5f, -0.2f, 0.1f, 0.0f}).view({1, 1, 4});
  const QuantizedEmbeddings q = quantize_int8(x);
  EXPECT_NEAR(q.scales.item<float>(), 0.5f / 127, 1e-9);
  EXPECT_TRUE(
      torch::equal(q.values.view({4}), torch::tensor({127, -51, 25, 0}, torch::kInt8)));  // -50.8, 25.4
  EXPECT_TRUE(torch::allclose(dequantize_int8(q.values, q.scales).view({4}),
                              torch::tensor({0.5f, -51 * 0.5f / 127, 25 * 0.5f / 127, 0.0f})));
}

TEST(EmbeddingStoreInt8, RoundTripKeepsCosineAbove0999AndReadsLikePython) {
  const auto dir = fresh_temp_dir();
  const StoreIdentity id = make_identity("short", 3, 576, "int8");
  const Strings keys = make_keys(40);
  write_store(dir, id, keys, 16);
  const EmbeddingStore store = EmbeddingStore::open(dir);
  ASSERT_EQ(store.size(), 40);
  EXPECT_EQ(store.manifest()["dtype"], "int8");
  std::vector<int64_t> order(40);
  for (int64_t i = 0; i < 40; ++i) order[static_cast<size_t>(i)] = 39 - i;
  const torch::Tensor restored = store.gather(order);  // [40, 3, 576] f32
  const torch::Tensor original = embeddings_of(slice(keys, 0, 40), 3, 576).flip(0);
  const torch::Tensor cosine = (restored * original).sum(-1) / restored.norm(2, -1);
  EXPECT_GE(cosine.min().item<double>(), 0.999);
  EXPECT_TRUE(torch::equal(store.get(keys[5]), restored[34]));

  // The documented Python reading: embeddings.float() * scales[..., None].
  SafetensorsFile shard(dir / "shard-00000.safetensors");
  EXPECT_EQ(shard.info("embeddings").dtype, DType::I8);
  EXPECT_EQ(shard.info("scales").shape, (std::vector<int64_t>{16, 3}));
  const auto* values = reinterpret_cast<const int8_t*>(shard.data(shard.info("embeddings")));
  const auto* scales = reinterpret_cast<const float*>(shard.data(shard.info("scales")));
  EXPECT_FLOAT_EQ(static_cast<float>(values[576 + 7]) * scales[1], store.get(keys[0])[1][7].item<float>());
}

TEST(EmbeddingStoreInt8, AShardWithoutScalesIsNamed) {
  const auto dir = fresh_temp_dir();
  const StoreIdentity id = make_identity("short", 3, 8, "int8");
  write_store(dir, id, make_keys(4), 4);
  const fs::path path = dir / "shard-00000.safetensors";
  SafetensorsWriter writer;
  {
    const SafetensorsFile shard(path);
    const TensorInfo& info = shard.info("embeddings");
    writer.add("embeddings", info.dtype, info.shape,
               std::string(reinterpret_cast<const char*>(shard.data(info)), info.byte_size()));
    writer.set_metadata(shard.header().metadata);
  }
  writer.write(path);
  const std::string error = error_of([&] { EmbeddingStore::open(dir); });
  EXPECT_TRUE(contains(error, "shard-00000.safetensors")) << error;
  EXPECT_TRUE(contains(error, "'scales'")) << error;
}

// A shard rewritten with `change` applied to its vectors (checksum updated),
// as a store from before a check, or from another tool, would hold them.
void rewrite_vectors(const fs::path& path, const std::function<void(torch::Tensor&)>& change) {
  const StoreShard shard = open_store_shard(path);
  torch::Tensor values = shard.embeddings().clone();
  change(values);
  SafetensorsWriter writer;
  const TensorInfo& info = shard.file->info("embeddings");
  writer.add("embeddings", info.dtype, info.shape,
             std::string(static_cast<const char*>(values.data_ptr()), static_cast<size_t>(values.nbytes())));
  auto metadata = shard.file->header().metadata;
  metadata["sha256"] = sha256_hex(
      std::string_view(static_cast<const char*>(values.data_ptr()), static_cast<size_t>(values.nbytes())));
  writer.set_metadata(metadata);
  writer.write(path);
}

// An all-zero vector has no direction (a zero hidden state cannot be
// normalised); it was stored and passed verify. The writer refuses it naming
// the store, the key and the facet, for every dtype (also values that
// underflow to zero as stored), and verify reports one already on disk.
TEST(EmbeddingStore, AllZeroVectorsAreRefusedAndReportedByVerify) {
  const Strings keys = {"a.jpg", "b.jpg"};
  for (const std::string dtype : {"f16", "bf16", "int8"}) {
    StoreIdentity id = make_identity("raw", 2, 4, dtype);
    id.normalized = false;
    const auto dir = fresh_temp_dir(dtype);
    EmbeddingStoreWriter writer(dir, id);
    torch::Tensor zero = embeddings_of(keys, 2, 4);
    zero[1][1].zero_();
    const std::string message = error_of([&] { writer.write_shard(0, keys, zero); });
    EXPECT_TRUE(contains(message, dir.string()) && contains(message, "facet 'raw1' of key 'b.jpg'") &&
                contains(message, "all-zero"))
        << dtype << ": " << message;
    torch::Tensor tiny = embeddings_of(keys, 2, 4).to(torch::kFloat64);
    tiny[0][0] *= 1e-300;  // nonzero, but zero in every stored dtype
    EXPECT_TRUE(contains(error_of([&] { writer.write_shard(0, keys, tiny); }), "key 'a.jpg' is an all-zero"))
        << dtype;
    EXPECT_FALSE(writer.has_shard(0));
  }
  StoreIdentity id = make_identity("raw", 2, 4);
  id.normalized = false;
  const auto dir = fresh_temp_dir("old");
  write_store(dir, id, keys, 2);
  ASSERT_TRUE(verify_stores({dir}).ok());
  rewrite_vectors(dir / "shard-00000.safetensors", [](torch::Tensor& v) { v[1][0].zero_(); });
  const StoreCheckReport report = verify_stores({dir});
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(contains(report.summary(), "all-zero vector (first: key 'b.jpg')")) << report.summary();
}

// NaN or inf where vectors enter a store is refused naming the store and the key.
TEST(EmbeddingStore, NonFiniteVectorsAreRefusedNamingStoreAndKey) {
  for (const std::string dtype : {"f16", "bf16", "int8"}) {
    const auto dir = fresh_temp_dir(dtype);
    EmbeddingStoreWriter writer(dir, make_identity("short", 2, 4, dtype));
    for (const float bad : {std::nanf(""), INFINITY, -INFINITY}) {
      torch::Tensor values = embeddings_of({"x", "y"}, 2, 4);
      values[1][1][3] = bad;
      const std::string message = error_of([&] { writer.write_shard(0, {"x", "y"}, values); });
      EXPECT_TRUE(contains(message, (dir / "shard-00000.safetensors").string()) &&
                  contains(message, "key 'y' has NaN or infinite"))
          << message;
    }
  }
}

using test::LogCapture;

// The int8 writer's cosine check overflowed in f32 (dot products of vectors
// of magnitude 1e20 are inf) and warned about vectors it stored fine. The
// stored vectors keep cosine > 0.999 (checked in f64 here), and no warning.
TEST(EmbeddingStoreInt8, LargeMagnitudeVectorsStoreWithoutAFalseWarning) {
  StoreIdentity id = make_identity("raw", 2, 64, "int8");
  id.normalized = false;
  const auto dir = fresh_temp_dir();
  const Strings keys = make_keys(3);
  const torch::Tensor values = embeddings_of(keys, 2, 64) * 1e20;
  {
    LogCapture log;
    EmbeddingStoreWriter writer(dir, id);
    writer.write_shard(0, keys, values);
    writer.finalize();
    EXPECT_FALSE(contains(log.text(), "int8 keeps cosine")) << log.text();
  }
  const torch::Tensor restored = EmbeddingStore::open(dir).gather({0, 1, 2}, torch::kFloat64);
  const torch::Tensor x = values.to(torch::kFloat64);
  const torch::Tensor cosine = (x * restored).sum(-1) / (x.norm(2, -1) * restored.norm(2, -1));
  EXPECT_GT(cosine.min().item<double>(), 0.999);
  // A vector int8 does keep badly is still named: one outlier dimension sets
  // the scale, and the 1023 others (each 1/300 of it) round to 0.
  id.dim = 1024;
  torch::Tensor outlier = torch::full({3, 2, 1024}, 1e20 / 300);
  outlier[2][1][5] = 1e20;
  LogCapture log;
  EmbeddingStoreWriter writer(fresh_temp_dir("outlier"), id);
  writer.write_shard(0, keys, outlier);
  EXPECT_TRUE(contains(log.text(), "int8 keeps cosine") && contains(log.text(), keys[2])) << log.text();
}

// Joined stores are compared by content, not path: a copy of a store given as
// a second --texts (or the same prompts embedded twice) made every positive
// count twice. Refused naming both paths.
TEST(EmbeddingStore, JoinRefusesACopyOfAStore) {
  const auto root = fresh_temp_dir();
  const Strings keys = make_keys(5);
  write_store(root / "raw", make_identity("raw", 1, 16), keys, 2);
  write_store(root / "short", make_identity("short", 3, 16), keys, 2);
  fs::copy(root / "short", root / "copy", fs::copy_options::recursive);
  const std::string copy = error_of([&] {
    JoinedStores::open({root / "raw", root / "short", root / "copy"});
  });
  EXPECT_TRUE(contains(copy, (root / "short").string()) && contains(copy, (root / "copy").string()) &&
              contains(copy, "copy of") && contains(copy, "count twice"))
      << copy;
  // The same inputs embedded again with the same prompt set (other shards,
  // another dtype): the same facets twice. The same prompt set over other
  // texts (another --field or caption file), or stores recording neither, join.
  const auto store_of = [&](const std::string& name, const std::string& dtype, size_t shard_size,
                            const std::string& inputs_sha256) {
    EmbeddingStoreWriter writer(root / name, make_identity("short", 3, 16, dtype));
    for (size_t begin = 0, shard = 0; begin < keys.size(); begin += shard_size, ++shard) {
      const Strings shard_keys = slice(keys, begin, begin + shard_size);
      writer.write_shard(static_cast<int64_t>(shard), shard_keys, embeddings_of(shard_keys, 3, 16));
    }
    writer.finalize({{"inputs", {name + ".jsonl"}}, {"inputs_sha256", inputs_sha256}});
    return root / name;
  };
  const auto f16 = store_of("f16", "f16", 2, "aaa");
  const auto bf16 = store_of("bf16", "bf16", 5, "aaa");
  const auto other_texts = store_of("other-texts", "f16", 3, "bbb");  // other vectors: not a copy
  const std::string again = error_of([&] { JoinedStores::open({f16, bf16}); });
  EXPECT_TRUE(contains(again, bf16.string()) && contains(again, "same inputs") && contains(again, "aaa"))
      << again;
  EXPECT_EQ(JoinedStores::open({f16, other_texts}).num_facets(), 6);
  write_store(root / "again", make_identity("short", 3, 16, "bf16"), keys, 5);
  EXPECT_EQ(JoinedStores::open({root / "short", root / "again"}).num_facets(), 6);
  EXPECT_EQ(JoinedStores::open({root / "raw", root / "short"}).num_facets(), 4);
}

// The parts of one store must have read the same inputs: parts of two
// caption files (the same identity) merged into a store that verify called
// ok. Parts written before the inputs were recorded still merge.
TEST(EmbeddingStore, MergeRefusesPartsOfDifferentInputs) {
  const StoreIdentity id = make_identity("short", 3, 8);
  const Strings keys = make_keys(8);
  const auto root = fresh_temp_dir();
  const auto part = [&](const std::string& name, int index, const nlohmann::json& job) {
    EmbeddingStoreWriter writer(root / name, id, {index, 2});
    Strings mine;
    for (const auto& key : keys)
      if (data::in_part(key, {index, 2})) mine.push_back(key);
    writer.write_shard(0, mine, embeddings_of(mine, 3, 8));
    writer.finalize(job);
    return root / name;
  };
  const auto a0 = part("a0", 0, {{"inputs", {"a.jsonl"}}, {"inputs_sha256", "aaa"}, {"limit", 0}});
  const auto a1 = part("a1", 1, {{"inputs", {"a-copy.jsonl"}}, {"inputs_sha256", "aaa"}, {"limit", 0}});
  const auto b1 = part("b1", 1, {{"inputs", {"b.jsonl"}}, {"inputs_sha256", "bbb"}, {"limit", 0}});
  const auto l1 = part("l1", 1, {{"inputs", {"a.jsonl"}}, {"inputs_sha256", "aaa"}, {"limit", 3}});
  const auto old1 = part("old1", 1, {{"inputs", {"a.jsonl"}}});
  EXPECT_TRUE(verify_stores({a0, a1}).ok()) << verify_stores({a0, a1}).summary();
  const StoreCheckReport report = verify_stores({a0, b1});
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(contains(report.summary(), "different inputs") && contains(report.summary(), a0.string()) &&
              contains(report.summary(), b1.string()) && contains(report.summary(), "b.jsonl"))
      << report.summary();
  const std::string merge = error_of([&] { merge_stores({a0, b1}, root / "mixed"); });
  EXPECT_TRUE(contains(merge, "different inputs")) << merge;
  EXPECT_FALSE(fs::exists(root / "mixed" / kManifestFile));
  EXPECT_TRUE(contains(verify_stores({a0, l1}).summary(), "limit 0 vs 3"))
      << verify_stores({a0, l1}).summary();
  merge_stores({a0, old1}, root / "old");  // unknown inputs: not compared
  merge_stores({a0, a1}, root / "merged");
  EXPECT_EQ(EmbeddingStore::open(root / "merged").manifest()["job"]["inputs_sha256"], "aaa");
  EXPECT_TRUE(EmbeddingStore::open(root / "merged").manifest()["job"]["inputs"].is_array());
  fs::create_symlink(root / "loop1", root / "loop2");
  fs::create_symlink(root / "loop2", root / "loop1");
  const std::string loop = error_of([&] { merge_stores({a0, a1}, root / "loop1"); });
  EXPECT_TRUE(contains(loop, "cannot merge into '" + (root / "loop1").string() + "': cannot read it"))
      << loop;
  // One merge into a folder at a time.
  DirectoryLock held(root / "busy", "a test");
  EXPECT_TRUE(contains(error_of([&] { merge_stores({a0, a1}, root / "busy"); }), "in use by pid"));
}

}  // namespace
}  // namespace flame::text

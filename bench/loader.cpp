// Loader throughput you can plan with: images/s of the training input path
// (decode + RandomResizedCrop + resize to 224 px + CLIP normalisation, the
// exact functions the training loader's workers call) per loader thread, for
// Flickr8k's 128 px JPEGs and for web-sized JPEGs (Flickr8k upscaled to
// 500 x 375, quality 90, the typical CC3M / LAION image). A user divides a
// GPU's step rate (images/s) by the per-thread rate to size --workers.
// Writes bench/results/loader.md.
#include <fmt/format.h>
#include <turbojpeg.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <tuple>

#include "bench_util.h"
#include "data/image_decode.h"
#include "data/image_transform.h"
#include "util/rng.h"
#include "util/strings.h"

using namespace flame;
using namespace flame::bench;

namespace {

constexpr const char* kUsage = "loader [--images 400] [--threads 1,2] [--size 224] [--no-write]";

std::vector<std::string> flickr_jpegs(size_t n) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(fs::path(FLAME_SHARED_DIR) / "data" / "flickr8k" / "images"))
    names.push_back(e.path().string());
  std::sort(names.begin(), names.end());
  names.resize(std::min(n, names.size()));
  std::vector<std::string> bytes;
  for (const auto& name : names) bytes.push_back(read_file(name));
  return bytes;
}

std::string encode_jpeg(const torch::Tensor& hwc, int quality) {
  const torch::Tensor c = hwc.contiguous();
  tjhandle handle = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  if (tjCompress2(handle, c.data_ptr<uint8_t>(), static_cast<int>(c.size(1)), 0, static_cast<int>(c.size(0)),
                  TJPF_RGB, &out, &size, TJSAMP_420, quality, 0) != 0) {
    fail("encoding a JPEG: {}", tjGetErrorStr2(handle));
  }
  std::string bytes(reinterpret_cast<const char*>(out), size);
  tjFree(out);
  tjDestroy(handle);
  return bytes;
}

// Each image decoded and upscaled to width x height, then re-encoded.
std::vector<std::string> web_sized(const std::vector<std::string>& jpegs, int64_t width, int64_t height) {
  std::vector<std::string> out;
  for (const auto& bytes : jpegs) {
    const torch::Tensor hwc = data::decode_image(bytes, "flickr");
    const data::CropBox all{0, 0, hwc.size(0), hwc.size(1)};
    out.push_back(encode_jpeg(data::resized_crop(hwc, all, height, width), 90));
  }
  return out;
}

// Images/s of `threads` threads sharing the work (each image decoded and
// transformed with its own seed, as a loader worker does).
double rate(const std::vector<std::string>& jpegs, int threads, int64_t size, int rounds) {
  data::ImageTransformOptions options;
  options.size = size;
  options.train = true;
  std::atomic<int64_t> next{0};
  const int64_t total = static_cast<int64_t>(jpegs.size()) * rounds;
  const auto work = [&] {
    for (int64_t i = next++; i < total; i = next++) {
      const torch::Tensor hwc = data::decode_image(jpegs[static_cast<size_t>(i) % jpegs.size()], "bench");
      data::transform_image(hwc, options, mix_seed(7, static_cast<uint64_t>(i)));
    }
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  return static_cast<double>(total) / seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse_args(argc, argv, kUsage, {"images", "threads", "size"});
  const int64_t size = a.num("size", 224);
  const std::vector<std::string> small = flickr_jpegs(static_cast<size_t>(a.num("images", 400)));
  const std::vector<std::string> web = web_sized(small, 500, 375);
  double small_bytes = 0, web_bytes = 0;
  for (const auto& b : small) small_bytes += static_cast<double>(b.size()) / small.size();
  for (const auto& b : web) web_bytes += static_cast<double>(b.size()) / web.size();
  const std::string load_start = load_average();
  const auto wall0 = Clock::now();
  std::string rows;
  double web_per_thread = 0;
  for (const std::string& t : split(a.get("threads", "1,2"), ',')) {
    const int threads = std::stoi(t);
    for (const auto& [name, jpegs, bytes] : {std::tuple{"Flickr8k 128 x 128", &small, small_bytes},
                                             std::tuple{"web-sized 500 x 375", &web, web_bytes}}) {
      rate(*jpegs, threads, size, 1);  // warm-up: page cache, allocator
      const double r = rate(*jpegs, threads, size, 2);
      if (threads == 1 && jpegs == &web) web_per_thread = r;
      const std::string row = fmt::format("| {} | {:.0f} KB | {} | {:.0f} | {:.0f} | {:.2f} ms |", name,
                                          bytes / 1024, threads, r, r / threads, 1000.0 * threads / r);
      fmt::print("{}\n", row);
      rows += row + "\n";
    }
  }
  std::string plan;
  for (const double target : {500.0, 2000.0, 5000.0}) {
    plan += fmt::format("| {:.0f} | {:.0f} |\n", target, std::ceil(target / web_per_thread));
  }
  const std::string md = fmt::format(
      "# Loader throughput\n\n"
      "Generated by `bench/loader.cpp`.\n\n"
      "- Machine: {}. Command: `bench/loader` (from the build directory); wall time {:.0f} s. Load average "
      "(1/5/15 min) at start {}, at end {}.\n"
      "- Each image goes through what a training loader worker runs: `decode_image` (TurboJPEG), "
      "`transform_image` with training augmentation (RandomResizedCrop over 90-100% of the area, antialiased "
      "bicubic resize to {} px, CLIP normalisation to float32 [3, {}, {}]). {} images, each processed twice "
      "after a warm-up pass; threads share the list as loader workers do.\n"
      "- Web-sized = the same Flickr8k images upscaled to 500 x 375 and re-encoded at JPEG quality 90 "
      "(4:2:0), "
      "the size of a typical CC3M / LAION image.\n\n"
      "| images | mean file | threads | images/s | images/s per thread | per image per thread |\n"
      "|---|---:|---:|---:|---:|---:|\n{}\n"
      "## Sizing --workers\n\n"
      "Loader threads needed to feed a step rate (web-sized images at the single-thread rate above; "
      "add one or two for headroom, and more if images are larger or stored remotely):\n\n"
      "| images/s the trainer consumes | loader threads |\n|---:|---:|\n{}",
      machine_line(), seconds_since(wall0), load_start, load_average(), size, size, size, small.size(), rows,
      plan);
  publish(a, "loader.md", md);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "loader: {}\n", e.what());
  return 1;
}

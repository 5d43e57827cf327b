// Prompt-processing throughput and memory of the frozen LLM forward pass on
// the real shapes of SmolLM2-135M and Qwen2.5-0.5B (random weights), bf16 and
// fp32, batch 1 and 16, sequences of 128 and 512 tokens. Every configuration
// runs in a fresh child process so its peak RSS (VmHWM) is its own. Also
// measures the GEMM rate of this machine (the bar a llama.cpp-class engine is
// held to), the time per stage, and the two facet-decoupled attention (FDA)
// strategies. Writes a table to stdout and bench/results/llm_forward.md.
//
//   llm_forward [--threads 2] [--cache DIR] [--min-seconds 2] [--quick] [--no-write]
//   llm_forward --render      re-renders the .md from bench/results/llm_forward.json
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "llm/batch.h"
#include "llm/config.h"
#include "llm/random_checkpoint.h"
#include "llm/transformer.h"
#include "llm/weights.h"
#include "util/allocator.h"
#include "util/error.h"
#include "util/file.h"

namespace fs = std::filesystem;
using namespace flame;
using namespace flame::bench;
using nlohmann::json;

namespace {

torch::Tensor random_ids(int64_t b, int64_t t, int64_t vocab) {
  return torch::randint(3, vocab, {b, t}, torch::kInt64);
}

// FLOPs of one pass: 2 per weight per token in the projections (no LM head),
// plus q k^T and p v over the full square the attention computes.
std::pair<double, double> pass_flops(const llm::LlmConfig& c, int64_t B, int64_t T) {
  const double H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const double q = c.num_attention_heads * D, kv = c.num_key_value_heads * D;
  const double per_layer_weights = H * (q + 2 * kv) + q * H + 3 * H * I;
  const double linear = 2.0 * per_layer_weights * c.num_hidden_layers * B * T;
  const double attention = 4.0 * B * T * T * q * c.num_hidden_layers;
  return {linear, attention};
}

// --- children -------------------------------------------------------------

json child_forward(const Args& a) {
  torch::set_num_threads(static_cast<int>(a.num("threads", 2)));
  const fs::path dir = checkpoint_dir(a.get("cache"), a.get("preset"));
  const int64_t B = a.num("batch", 1), T = a.num("seq", 128);
  const double rss0 = status_mib("VmRSS");
  llm::TransformerOptions options;
  options.dtype = llm::parse_compute_dtype(a.get("dtype"));
  options.fuse_projections = !a.flag("unfused");
  auto t0 = Clock::now();
  const auto model = llm::Transformer::load(dir, options);
  const double load_s = seconds_since(t0);
  const double rss_loaded = status_mib("VmRSS");
  const auto& c = model.config();
  const int64_t L = c.num_hidden_layers;

  llm::ForwardInput in;
  llm::ForwardRequest req;
  req.hidden_layers = {L};
  // Warm-up at a small size: touches every weight page and creates kernels.
  in.input_ids = random_ids(1, std::min<int64_t>(T, 32), c.vocab_size);
  model.forward(in, req);
  in.input_ids = random_ids(B, T, c.vocab_size);
  req.gather = torch::full({B, 1}, T - 1, torch::kInt64);
  llm::StageTimes stages;
  req.timings = &stages;
  std::vector<double> times;
  const double min_seconds = a.real("min-seconds", 2.0);
  double total = 0;
  while (times.empty() || (total < min_seconds && times.size() < 5)) {
    t0 = Clock::now();
    model.forward(in, req);
    times.push_back(seconds_since(t0));
    total += times.back();
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  json per_stage = json::object();
  for (const auto& [k, v] : stages.seconds) per_stage[k] = v / static_cast<double>(times.size());
  const auto [linear_flops, attention_flops] = pass_flops(c, B, T);
  return {{"tokens_per_s", static_cast<double>(B * T) / median},
          {"pass_s", median},
          {"reps", times.size()},
          {"load_s", load_s},
          {"rss_start_mib", rss0},
          {"rss_loaded_mib", rss_loaded},
          {"peak_rss_mib", status_mib("VmHWM")},
          {"linear_gflop", linear_flops / 1e9},
          {"attention_gflop", attention_flops / 1e9},
          {"stages", per_stage}};
}

// The projections of a model as plain GEMMs (q/k/v fused, gate/up fused, o,
// down) with M token rows: the GEMM-only rate, FLOPs / time, for M in 128,
// 512, 2048. The bar a GEMM-bound engine (llama.cpp-class) is held to.
json child_gemm(const Args& a) {
  torch::set_num_threads(static_cast<int>(a.num("threads", 2)));
  retain_freed_memory();  // as the forward pass: no fresh pages per output
  torch::NoGradGuard no_grad;
  const auto dtype = llm::parse_compute_dtype(a.get("dtype"));
  const auto c = llm::load_llm_config(checkpoint_dir(a.get("cache"), a.get("preset")));
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {H, q + 2 * kv}, {q, H}, {H, 2 * I}, {I, H}};  // in, out
  json out;
  for (const int64_t M : {128, 512, 2048}) {
    double flops = 0, seconds = 0;
    for (const auto& [in, n] : shapes) {
      const torch::Tensor x = torch::randn({M, in}).to(dtype), w = torch::randn({n, in}).to(dtype);
      for (int i = 0; i < 3; ++i) torch::linear(x, w);  // primitive creation, first touch
      // The fastest of the timed calls: the bar is an upper bound, so
      // interference from other work must not lower it.
      double best = 1e30;
      int reps = 0;
      const auto t0 = Clock::now();
      while (seconds_since(t0) < a.real("min-seconds", 2.0) / 8 || reps < 5) {
        const auto t = Clock::now();
        torch::linear(x, w);
        best = std::min(best, seconds_since(t));
        ++reps;
      }
      seconds += best;
      flops += 2.0 * M * in * n;
    }
    out[std::to_string(M)] = flops / seconds / 1e9;
  }
  return out;
}

// FDA: packed block mask (a) vs prefix cache + batched facets (b) vs naive.
json child_fda(const Args& a) {
  torch::set_num_threads(static_cast<int>(a.num("threads", 2)));
  const fs::path dir = checkpoint_dir(a.get("cache"), a.get("preset"));
  llm::TransformerOptions options;
  options.dtype = llm::parse_compute_dtype(a.get("dtype"));
  const auto model = llm::Transformer::load(dir, options);
  const auto& c = model.config();
  const int64_t B = a.num("batch", 16), P = a.num("prefix", 48), K = a.num("facets", 5),
                F = a.num("facet", 12);
  const int64_t layer = c.num_hidden_layers - 1;
  auto gen = at::detail::createCPUGenerator(3);
  auto ids = [&](int64_t n) {
    const torch::Tensor t = torch::randint(3, c.vocab_size, {n}, gen, torch::kInt64);
    return llm::TokenIds(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
  };
  std::vector<llm::TokenIds> prefixes;
  std::vector<std::vector<llm::TokenIds>> facets;
  for (int64_t b = 0; b < B; ++b) {
    prefixes.push_back(ids(P - b % 8));  // some padding, as real captions
    facets.emplace_back();
    for (int64_t k = 0; k < K; ++k) facets.back().push_back(ids(F));
  }
  auto packed = [&] {
    const auto p = llm::pack_facets(prefixes, facets);
    llm::ForwardInput in{p.input_ids, p.valid, p.positions, p.attention_mask};
    llm::ForwardRequest req;
    req.hidden_layers = {layer};
    req.gather = p.facet_last;
    return model.forward(in, req).hidden[0];
  };
  auto cached = [&] {
    const auto pb = llm::pad_right(prefixes);
    llm::ForwardInput pin;
    pin.input_ids = pb.input_ids;
    pin.valid = pb.valid;
    llm::ForwardRequest preq;
    preq.cache = true;
    preq.cache_layers = layer;
    const auto cache = model.forward(pin, preq).cache;
    std::vector<llm::TokenIds> rows;
    for (const auto& f : facets) rows.insert(rows.end(), f.begin(), f.end());
    const auto fb = llm::pad_right(rows);
    llm::ForwardInput in;
    in.input_ids = fb.input_ids;
    in.valid = fb.valid;
    in.past = &cache;
    in.rows_per_past = K;
    llm::ForwardRequest req;
    req.hidden_layers = {layer};
    req.gather = fb.last_index;
    return model.forward(in, req).hidden[0].view({B, K, -1});
  };
  auto naive = [&] {
    std::vector<llm::TokenIds> rows;
    for (int64_t b = 0; b < B; ++b) {
      for (const auto& f : facets[static_cast<size_t>(b)]) {
        llm::TokenIds r = prefixes[static_cast<size_t>(b)];
        r.insert(r.end(), f.begin(), f.end());
        rows.push_back(r);
      }
    }
    const auto batch = llm::pad_right(rows);
    llm::ForwardInput in;
    in.input_ids = batch.input_ids;
    in.valid = batch.valid;
    llm::ForwardRequest req;
    req.hidden_layers = {layer};
    req.gather = batch.last_index;
    return model.forward(in, req).hidden[0].view({B, K, -1});
  };
  json out;
  torch::Tensor reference;
  for (const auto& [name, fn] : std::vector<std::pair<std::string, std::function<torch::Tensor()>>>{
           {"packed", packed}, {"cache", cached}, {"naive", naive}}) {
    fn();  // warm-up
    const auto t0 = Clock::now();
    int reps = 0;
    torch::Tensor result;
    while (seconds_since(t0) < a.real("min-seconds", 2.0) || reps < 2) {
      result = fn();
      ++reps;
    }
    const double s = seconds_since(t0) / reps;
    if (!reference.defined()) reference = result.to(torch::kFloat32);
    const double cos =
        torch::cosine_similarity(result.to(torch::kFloat32), reference, -1).min().item<double>();
    out[name] = {{"seconds", s}, {"captions_per_s", B / s}, {"min_cosine_vs_packed", cos}};
  }
  out["shape"] =
      fmt::format("{} captions, prefix ~{} tokens, {} facets x {} tokens, layer {}", B, P, K, F, layer);
  return out;
}

// --- parent ---------------------------------------------------------------

int render(const json& results);

json run_child(const std::string& self, const std::string& args) {
  const std::string out = command_output(self + " " + args);
  const auto start = out.rfind("\n{");
  return json::parse(start == std::string::npos ? out : out.substr(start + 1));
}

int parent(int argc, char** argv, const Args& a) {
  const std::string self = fs::canonical("/proc/self/exe").string();
  const int64_t threads = a.num("threads", 2);
  const std::string min_s = a.get("min-seconds", "2");
  const fs::path cache = a.get("cache", (fs::temp_directory_path() / "flame-bench-llm").string());
  const bool quick = a.flag("quick");
  std::string command = "bench/llm_forward";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  const auto wall0 = Clock::now();
  const std::string load_start = load_average();

  const std::vector<std::string> presets = {"smollm2-135m", "qwen2.5-0.5b"};
  for (const auto& p : presets) ensure_checkpoint(cache, p);
  std::map<std::string, llm::LlmConfig> configs;
  for (const auto& p : presets) configs[p] = llm::load_llm_config(checkpoint_dir(cache, p));

  const std::string common =
      fmt::format("--cache {} --threads {} --min-seconds {}", cache.string(), threads, min_s);
  json gemm;
  for (const auto& preset : presets) {
    for (const std::string dtype : {"bf16", "f32"}) {
      const json g =
          run_child(self, fmt::format("--child gemm --preset {} --dtype {} {}", preset, dtype, common));
      gemm[preset][dtype] = g;
      fmt::print(
          "GEMM-only rate of {} projections, {}: {:.0f} / {:.0f} / {:.0f} GFLOP/s at 128 / 512 / 2048 rows\n",
          preset, dtype, g["128"].get<double>(), g["512"].get<double>(), g["2048"].get<double>());
    }
  }

  struct Row {
    std::string preset, dtype;
    int64_t batch, seq;
    json r;
  };
  std::vector<Row> rows;
  fmt::print("\n{:<14} {:>5} {:>5} {:>5} {:>10} {:>9} {:>8} {:>10} {:>10}\n", "model", "dtype", "batch",
             "seq", "tokens/s", "pass s", "GFLOP/s", "RSS load", "peak RSS");
  for (const auto& preset : presets) {
    for (const std::string dtype : {"bf16", "f32"}) {
      for (const int64_t batch : {1, 16}) {
        for (const int64_t seq : {128, 512}) {
          if (quick && (batch == 16 && seq == 512)) continue;
          json r =
              run_child(self, fmt::format("--child forward --preset {} --dtype {} --batch {} --seq {} {}",
                                          preset, dtype, batch, seq, common));
          const auto [lin, att] = pass_flops(configs[preset], 1, seq);
          r["flops_per_token_causal"] = (lin + att / 2) / static_cast<double>(seq);
          const double gflops = (r["linear_gflop"].get<double>() + r["attention_gflop"].get<double>()) /
                                r["pass_s"].get<double>();
          fmt::print("{:<14} {:>5} {:>5} {:>5} {:>10.0f} {:>9.3f} {:>8.0f} {:>7.0f} MiB {:>6.0f} MiB\n",
                     preset, dtype, batch, seq, r["tokens_per_s"].get<double>(), r["pass_s"].get<double>(),
                     gflops, r["rss_loaded_mib"].get<double>(), r["peak_rss_mib"].get<double>());
          std::fflush(stdout);
          rows.push_back({preset, dtype, batch, seq, r});
        }
      }
    }
  }
  json fda = run_child(self, fmt::format("--child fda --preset smollm2-135m --dtype bf16 {}", common));
  fmt::print("\nFDA ({}):\n", fda["shape"].get<std::string>());
  for (const std::string k : {"packed", "cache", "naive"}) {
    fmt::print("  {:<7} {:8.3f} s/batch {:8.1f} captions/s  (min cosine vs packed {:.5f})\n", k,
               fda[k]["seconds"].get<double>(), fda[k]["captions_per_s"].get<double>(),
               fda[k]["min_cosine_vs_packed"].get<double>());
  }
  const double wall = seconds_since(wall0);
  fmt::print("\ntotal {:.0f} s\n", wall);
  json results = {{"machine", machine_line()},
                  {"command", command},
                  {"threads", threads},
                  {"wall_s", wall},
                  {"load_average_start", load_start},
                  {"load_average_end", load_average()},
                  {"gemm", gemm},
                  {"fda", fda},
                  {"rows", json::array()}};
  for (const auto& row : rows) {
    results["rows"].push_back(
        {{"preset", row.preset}, {"dtype", row.dtype}, {"batch", row.batch}, {"seq", row.seq}, {"r", row.r}});
  }
  if (a.flag("no-write")) return 0;
  const fs::path raw = fs::path(FLAME_BENCH_RESULTS_DIR) / "llm_forward.json";
  write_json_file_atomic(raw, results);
  fmt::print("wrote {}\n", raw.string());
  return render(results);
}

// Renders the results (and bench/results/llm_forward_notes.md) as llm_forward.md.
int render(const json& results) {
  const int64_t threads = results["threads"].get<int64_t>();
  const json& gemm = results["gemm"];
  const json& fda = results["fda"];
  const double wall = results["wall_s"].get<double>();
  const std::string command = results["command"].get<std::string>();
  struct Row {
    std::string preset, dtype;
    int64_t batch, seq;
    json r;
  };
  std::vector<Row> rows;
  for (const auto& row : results["rows"])
    rows.push_back({row["preset"], row["dtype"], row["batch"], row["seq"], row["r"]});
  std::ostringstream md;
  md << "# LLM forward pass: prompt-processing throughput\n\n";
  md << "Generated by `bench/llm_forward.cpp`; the sections below the tables are regenerated with the "
        "figures.\n\n";
  md << fmt::format("- Machine: {} (AVX512-BF16). LibTorch {} (PyPI): bf16 matmuls via oneDNN.\n",
                    results["machine"].get<std::string>(), FLAME_TORCH_VERSION);
  md << fmt::format(
      "- Command: `{}` (from the build directory), {} torch threads, total wall time {:.0f} s. "
      "Load average (1/5/15 min) at start {}, at end {}: the 2 cores are shared with other work.\n",
      command, threads, wall, results["load_average_start"].get<std::string>(),
      results["load_average_end"].get<std::string>());
  md << "- Models: the real shapes of SmolLM2-135M (30 layers, hidden 576, 9/3 heads) and Qwen2.5-0.5B (24 "
        "layers, "
        "hidden 896, 14/2 heads, q/k/v biases), random bf16 weights from `make_random_checkpoint`. fp32 rows "
        "load "
        "the same bf16 files and convert (a copy); bf16 rows map the file without copying.\n";
  md << "- A pass = all layers + final norm for every token, hidden state gathered at the last token (no LM "
        "head), "
        "as FLAME uses it. tokens/s = batch x seq / median pass time after a warm-up; each configuration in "
        "a fresh "
        "process; peak RSS = VmHWM of that process (includes the mapped weight pages it touched).\n";
  md << "- GFLOP/s counts 2 x weights x tokens for the projections plus 4 x T^2 x q_dim per layer for the "
        "attention "
        "as computed (full square, masked).\n\n";
  md << "| model | dtype | batch | seq | tokens/s | pass (s) | GFLOP/s | RSS after load | peak RSS |\n";
  md << "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& row : rows) {
    const auto& r = row.r;
    const double gflops =
        (r["linear_gflop"].get<double>() + r["attention_gflop"].get<double>()) / r["pass_s"].get<double>();
    md << fmt::format("| {} | {} | {} | {} | {:.0f} | {:.3f} | {:.0f} | {:.0f} MiB | {:.0f} MiB |\n",
                      row.preset, row.dtype, row.batch, row.seq, r["tokens_per_s"].get<double>(),
                      r["pass_s"].get<double>(), gflops, r["rss_loaded_mib"].get<double>(),
                      r["peak_rss_mib"].get<double>());
  }
  md << "\n## Comparison with llama.cpp-class prompt processing (an estimate, not a measurement)\n\n";
  md << "llama.cpp is not installed and cannot be downloaded here, so it was not run. Its CPU prompt "
        "processing is "
        "bound by the same matrix multiplications, so its bar is estimated from FLOPs and this machine's "
        "measured "
        "GEMM rate:\n\n"
        "- FLOPs per token = 2 x non-embedding weights (the projections) + attention at its causal average, "
        "2 x 2 x (T/2) x q_dim per layer (q k^T and p v over half the keys).\n"
        "- GEMM-only rate = the model's own projection shapes (q/k/v fused, o, gate/up fused, down) run as "
        "plain "
        "`torch::linear` calls, FLOPs / (sum over the shapes of the fastest call's time), with M = min(batch "
        "x seq, 2048) token rows (bf16: oneDNN with "
        "AVX512-BF16; fp32: OpenBLAS), 2 threads:\n\n";
  md << "| model | dtype | M = 128 | M = 512 | M = 2048 |\n|---|---|---:|---:|---:|\n";
  for (const auto& [preset, by_dtype] : gemm.items()) {
    for (const auto& [dtype, g] : by_dtype.items()) {
      md << fmt::format("| {} | {} | {:.0f} GFLOP/s | {:.0f} GFLOP/s | {:.0f} GFLOP/s |\n", preset, dtype,
                        g["128"].get<double>(), g["512"].get<double>(), g["2048"].get<double>());
    }
  }
  md << "\n- Bar = FLOPs per token / GEMM-only rate: an engine that ran every FLOP, attention included, at "
        "the "
        "GEMM rate and spent nothing on norms, RoPE, softmax or activations. llama.cpp's bf16/fp32 CPU "
        "matmuls "
        "(ggml, llamafile's tinyBLAS) are of the same class as these libraries (their author reports "
        "tinyBLAS "
        "on par with or up to 2x faster than MKL for cache-resident matrices), and it spends time outside "
        "GEMMs "
        "too, so **estimate llama.cpp-class prompt processing at roughly 0.6-1.0 x the bar** on these 2 "
        "cores.\n\n";
  md << "| model | dtype | batch | seq | FLOPs/token | bar tokens/s | llama.cpp-class estimate | measured | "
        "measured / bar |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& row : rows) {
    const double per_token = row.r["flops_per_token_causal"].get<double>();
    const std::string m =
        std::to_string(std::min<int64_t>(2048, std::max<int64_t>(128, row.batch * row.seq)));
    const double rate = gemm[row.preset][row.dtype][m].get<double>();
    const double bar = rate * 1e9 / per_token;
    const double measured = row.r["tokens_per_s"].get<double>();
    md << fmt::format("| {} | {} | {} | {} | {:.2f} GFLOP | {:.0f} | {:.0f}-{:.0f} | {:.0f} | {:.0f}% |\n",
                      row.preset, row.dtype, row.batch, row.seq, per_token / 1e9, bar, 0.6 * bar, bar,
                      measured, 100 * measured / bar);
  }
  md << "\n## Where the time goes\n\n";
  md << "Per-stage wall time of one pass (stages timed inside `Transformer::forward` with "
        "`ForwardRequest::timings`; "
        "'linear' = q/k/v, o, gate/up and down projections; 'attention' = scores, mask, fp32 softmax, "
        "weighted sum; "
        "'rope' = rotary embedding of q and k plus the v transpose; 'norm' = RMSNorm; 'activation' = SiLU x "
        "up).\n\n";
  std::vector<std::string> stage_names;
  for (const auto& row : rows) {
    for (const auto& [k, v] : row.r["stages"].items()) {
      if (std::find(stage_names.begin(), stage_names.end(), k) == stage_names.end()) stage_names.push_back(k);
    }
  }
  md << "| model | dtype | batch | seq |";
  for (const auto& s : stage_names) md << " " << s << " |";
  md << "\n|---|---|---:|---:|";
  for (size_t i = 0; i < stage_names.size(); ++i) md << "---:|";
  md << "\n";
  for (const auto& row : rows) {
    const auto& st = row.r["stages"];
    double total = 0;
    for (const auto& [k, v] : st.items()) total += v.get<double>();
    md << fmt::format("| {} | {} | {} | {} |", row.preset, row.dtype, row.batch, row.seq);
    for (const auto& s : stage_names) {
      const double v = st.contains(s) ? st[s].get<double>() : 0.0;
      md << fmt::format(" {:.0f}% |", 100 * v / total);
    }
    md << "\n";
  }
  md << fmt::format("\n## Facet-decoupled attention strategies ({}, smollm2-135m bf16)\n\n",
                    fda["shape"].get<std::string>());
  md << "| strategy | s / batch | captions/s | min cosine vs packed |\n|---|---:|---:|---:|\n";
  for (const std::string k : {"packed", "cache", "naive"}) {
    md << fmt::format("| {} | {:.3f} | {:.1f} | {:.5f} |\n", k, fda[k]["seconds"].get<double>(),
                      fda[k]["captions_per_s"].get<double>(), fda[k]["min_cosine_vs_packed"].get<double>());
  }
  md << "\npacked = one pass per caption row with the block mask (`pack_facets`); cache = prefix pass with "
        "`cache_layers`, then all B x K facets in one pass reading the shared cache (`rows_per_past`); "
        "naive = B x K full prompts.\n";
  const std::string notes_path = std::string(FLAME_BENCH_RESULTS_DIR) + "/llm_forward_notes.md";
  if (fs::exists(notes_path)) md << "\n" << read_file(notes_path);
  const fs::path out = fs::path(FLAME_BENCH_RESULTS_DIR) / "llm_forward.md";
  write_file_atomic(out, md.str());
  fmt::print("wrote {}\n", out.string());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a =
        parse_args(argc, argv,
                   "llm_forward [--threads 2] [--cache DIR] [--min-seconds 2] [--quick] [--no-write] | "
                   "llm_forward --render (re-renders the .md from bench/results/llm_forward.json)",
                   {"threads", "cache", "min-seconds", "quick", "render", "unfused", "child", "dtype",
                    "preset", "batch", "facet", "facets", "prefix", "seq"});
    const std::string child = a.get("child");
    if (a.flag("render")) {
      return render(read_json_file(fs::path(FLAME_BENCH_RESULTS_DIR) / "llm_forward.json"));
    }
    if (child.empty()) return parent(argc, argv, a);
    json r;
    if (child == "forward")
      r = child_forward(a);
    else if (child == "gemm")
      r = child_gemm(a);
    else if (child == "fda")
      r = child_fda(a);
    else
      fail("unknown --child '{}'", child);
    std::cout << "\n" << r.dump() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "llm_forward: " << e.what() << "\n";
    return 1;
  }
}

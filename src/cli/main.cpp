// flame: command-line entry point.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <new>

#include "cli/commands.h"
#include "util/error.h"
#include "util/log.h"

namespace {

// What a bug report needs: the LibTorch flame links and whether CUDA is in it.
std::string version_text() {
#ifdef FLAME_WITH_CUDA
  const std::string cuda = fmt::format("CUDA {} compiled in, {} device(s) visible", FLAME_CUDA_VERSION,
                                       torch::cuda::device_count());
#else
  const std::string cuda = "CPU only: no CUDA compiled in";
#endif
  return fmt::format("flame {} (LibTorch {}, {})", FLAME_VERSION, FLAME_TORCH_VERSION, cuda);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flame: language-image pre-training with a frozen LLM text encoder (FLAME)", "flame"};
  app.set_version_flag("--version", version_text);
  app.require_subcommand(1);
  app.add_option_function<std::string>(
         "--log-level", [](const std::string& level) { flame::set_log_level(level); },
         "trace, debug, info, warn, error or off (default: info)")
      ->configurable(false);
  app.fallthrough();

  flame::cli::add_llm_commands(app);
  flame::cli::add_embed_command(app);
  flame::cli::add_train_command(app);
  flame::cli::add_interpret_command(app);
  flame::cli::add_eval_command(app);
  flame::cli::add_export_commands(app);

  try {
    flame::set_log_level("info");
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const flame::Error& e) {
    std::fprintf(stderr, "flame: error: %s\n", e.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the user gave (a symlink loop, a permission, a full disk): theirs to fix, not a bug.
    std::fprintf(stderr, "flame: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "flame: error: out of memory (a smaller --batch-size, --limit or model may fit)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flame: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}

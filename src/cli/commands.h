// Each command group registers its subcommands on the root app. Commands are
// thin: they parse arguments and call the library.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace flame::cli {

// flame llm ... (llm_commands.cpp registers the group and calls the others)
void add_llm_commands(CLI::App& app);
void add_llm_tokenize_command(CLI::App& llm);  // llm_tokenize_command.cpp
void add_llm_run_commands(CLI::App& llm);      // llm_run_commands.cpp: embed, generate

// flame embed [merge|verify] (embed_command.cpp)
void add_embed_command(CLI::App& app);

// flame train (train_command.cpp)
void add_train_command(CLI::App& app);

// flame interpret (interpret_command.cpp)
void add_interpret_command(CLI::App& app);

// flame eval (eval_command.cpp)
void add_eval_command(CLI::App& app);

// flame export / flame import (export_commands.cpp)
void add_export_commands(CLI::App& app);

// Shared options: --threads N (default: all cores) applied to torch.
void add_threads_option(CLI::App& cmd, int* threads);
void apply_threads(int threads);

// --seed, read strictly into `seed` (seed_option.cpp): an integer in
// [0, 2^64); CLI11 would wrap -1 to 18446744073709551615.
void add_seed_option(CLI::App& cmd, uint64_t& seed, const std::string& help);

}  // namespace flame::cli

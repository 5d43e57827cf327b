// Each command group registers its subcommands on the root app. Commands are
// thin: they parse arguments and call the library.
#pragma once

#include <CLI/CLI.hpp>

namespace flame::cli {

void add_llm_commands(CLI::App& app);

}  // namespace flame::cli

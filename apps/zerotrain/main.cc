// zerotrain: the command-line entry point. Subcommands are in <name>_cmd.cc.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "zerotrain/version.h"
#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"zerotrain: DeepSpeed's training engine in C++ on LibTorch"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(zerotrain::kVersion));
  int exit_code = 0;
  zerotrain::cli::add_config_command(app, exit_code);
  zerotrain::cli::add_estimate_command(app, exit_code);
  zerotrain::cli::add_launch_command(app, exit_code);
#ifdef ZEROTRAIN_CLI_WITH_TORCH
  zerotrain::cli::add_train_command(app, exit_code);
  zerotrain::cli::add_convert_command(app, exit_code);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zerotrain: error: %s\n", e.what());
    return 1;
  }
  return exit_code;
}

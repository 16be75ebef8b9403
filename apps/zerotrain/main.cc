// zerotrain: the command-line entry point. Subcommands are in <name>_cmd.cc.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "zerotrain/version.h"
#include "commands.h"

namespace zerotrain::cli {
namespace {
std::vector<std::string>& stored_command_line() {
  static std::vector<std::string> words;
  return words;
}
}  // namespace
void set_command_line(int argc, char** argv) { stored_command_line().assign(argv, argv + argc); }
const std::vector<std::string>& command_line() { return stored_command_line(); }
}  // namespace zerotrain::cli

int main(int argc, char** argv) {
  CLI::App app{"zerotrain: DeepSpeed's training engine in C++ on LibTorch"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(zerotrain::kVersion));
  int exit_code = 0;
  zerotrain::cli::set_command_line(argc, argv);
  zerotrain::cli::add_config_command(app, exit_code);
  zerotrain::cli::add_estimate_command(app, exit_code);
  zerotrain::cli::add_launch_command(app, exit_code);
  zerotrain::cli::add_autotune_command(app, exit_code);
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

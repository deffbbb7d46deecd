// sluice: command line. The effective configuration is the built-in defaults, then the YAML file
// of --config, then the SLUICE_* variables and flags the user gave; the Server runs it.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config_file.h"
#include "core/config.h"
#include "core/log.h"
#include "demo/demo_thread.h"
#include "net/listener.h"
#include "server/server.h"

namespace {

using namespace sluice;

// The options of a command that runs the proxy: the main command and `demo`.
struct ProxyCommand {
  CLI::App* app = nullptr;
  std::string config_file;
  bool print_config = false;
  std::map<std::string, std::string> values;  // flag name -> value, filled by CLI11
  std::vector<std::pair<const OverrideFlag*, CLI::Option*>> options;
};

void add_proxy_flags(CLI::App& app, ProxyCommand& cmd, bool demo) {
  cmd.app = &app;
  app.add_option("--config", cmd.config_file,
                 "YAML configuration file; the environment and flags override it")
      ->type_name("FILE")
      ->envname("SLUICE_CONFIG");
  app.add_flag("--print-config", cmd.print_config,
               "print the effective configuration (file, environment, flags) as YAML and exit");
  for (const OverrideFlag& f : override_flags()) {
    std::string name = f.name;
    // Bound to a string and parsed by the loader, so that a flag and the file accept the same
    // text. The default is only shown: a flag not given never overrides the file.
    auto* opt = app.add_option("--" + name, cmd.values[name], f.help)
                    ->envname(override_env_name(name))
                    ->type_name(f.value_name);
    std::string shown = demo && name == "drain-delay" ? "0s" : f.default_value;
    if (!shown.empty()) opt->default_str(shown);
    cmd.options.emplace_back(&f, opt);
  }
}

// The flags and variables the user actually gave: environment first, then flags (which win).
std::vector<ConfigOverride> collect_overrides(const ProxyCommand& cmd) {
  const auto& on_command_line = cmd.app->parse_order();
  std::vector<ConfigOverride> from_env, from_flags;
  for (const auto& [flag, opt] : cmd.options) {
    if (opt->count() == 0) continue;
    bool given =
        std::find(on_command_line.begin(), on_command_line.end(), opt) != on_command_line.end();
    ConfigOverride o{flag->name, cmd.values.at(flag->name), given ? "" : opt->get_envname()};
    (given ? from_flags : from_env).push_back(std::move(o));
  }
  from_env.insert(from_env.end(), from_flags.begin(), from_flags.end());
  return from_env;
}

void print_lines(const std::vector<std::string>& lines) {
  for (const auto& l : lines) fprintf(stderr, "%s\n", l.c_str());
}

int run_proxy(const ProxyCommand& cmd, bool demo) {
  Config defaults = default_config();
  if (demo) defaults.drain.delay = Millis(0);  // nothing routes to a local demo: no propagation
  std::optional<std::string> file;
  if (!cmd.config_file.empty()) file = cmd.config_file;
  std::vector<ConfigOverride> overrides = collect_overrides(cmd);

  ConfigLoad load = load_config(file ? &*file : nullptr, overrides, defaults);
  if (!load.config) {
    print_lines(load.errors);
    print_lines(load.warnings);
    fprintf(stderr, "sluice: %zu error%s in the configuration; not starting\n", load.errors.size(),
            load.errors.size() == 1 ? "" : "s");
    return 1;
  }
  print_lines(load.warnings);
  if (cmd.print_config) {
    fputs(dump_config_yaml(*load.config).c_str(), stdout);
    return 0;
  }
  log_set_level(load.config->log.level);

  ConfigPtr config = load.config;
  std::unique_ptr<DemoThread> demo_app;
  if (demo) {
    // The demo app on a thread of its own, on a port of its own; every cluster points at it.
    std::string error;
    int fd = open_listen_socket(HostPort{"127.0.0.1", 0}, false, error);
    if (fd < 0) {
      fprintf(stderr, "sluice: demo app: %s\n", error.c_str());
      return 1;
    }
    auto pointed = std::make_shared<Config>(*config);
    const uint16_t port = static_cast<uint16_t>(bound_port(fd));
    for (auto& c : pointed->clusters) c.endpoints = {HostPort{"127.0.0.1", port}};
    config = std::move(pointed);
    demo_app = std::make_unique<DemoThread>(fd);
    demo_app->start();
  }

  ServerOptions options;
  if (file) {
    options.config_file = *file;
    // SIGHUP and POST /reload read the file again; the same environment and flags still win.
    options.reload = [file = *file, overrides, defaults] {
      return load_config(&file, overrides, defaults);
    };
  }
  int status;
  {
    Server server(config, std::move(options));
    status = server.run();
  }
  if (demo_app) demo_app->stop();
  return status;
}

int check_config(const std::vector<std::string>& files) {
  int status = 0;
  for (const auto& file : files) {
    ConfigLoad load = load_config(&file, {});
    print_lines(load.errors);
    print_lines(load.warnings);
    if (load.config) {
      printf("%s: ok\n", file.c_str());
      fflush(stdout);
    } else {
      fprintf(stderr, "%s: %zu error%s\n", file.c_str(), load.errors.size(),
              load.errors.size() == 1 ? "" : "s");
      status = 1;
    }
  }
  return status;
}

[[noreturn]] void bad(const std::string& what, const std::string& value, const char* expected) {
  fprintf(stderr, "sluice: --%s: invalid value '%s' (expected %s)\n", what.c_str(), value.c_str(),
          expected);
  exit(1);
}

HostPort address(const std::string& name, const std::string& v) {
  auto a = parse_host_port(v);
  if (!a) bad(name, v, "HOST:PORT");
  return *a;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice: a sidecar HTTP/1.1 proxy that makes deploys lossless"};
  app.set_version_flag("--version", std::string("sluice ") + SLUICE_VERSION);
  ProxyCommand proxy;
  add_proxy_flags(app, proxy, false);

  ProxyCommand demo_cmd;
  auto* demo = app.add_subcommand("demo", "run sluice in front of its built-in demo app");
  add_proxy_flags(*demo, demo_cmd, true);

  std::vector<std::string> check_files;
  auto* check =
      app.add_subcommand("check-config",
                         "validate configuration files without starting anything: every problem "
                         "as FILE:LINE:COL: message, exit 1 if there is any");
  check->add_option("FILE", check_files, "configuration files")
      ->envname("SLUICE_CONFIG")
      ->required();

  std::string demo_app_listen = "127.0.0.1:4000";
  auto* demo_app = app.add_subcommand("demo-app", "run only the demo app (an upstream for tests)");
  demo_app->add_option("--listen", demo_app_listen, "address to listen on")->capture_default_str();

  std::string drain_admin = "127.0.0.1:9901";
  bool drain_wait = false;
  auto* drain = app.add_subcommand("drain", "start a drain through the admin API");
  drain->add_option("--admin", drain_admin, "the admin listener of the sluice to drain")
      ->envname("SLUICE_ADMIN")
      ->capture_default_str();
  drain->add_flag("--wait", drain_wait, "wait until the drain has finished, showing progress");
  auto* resume = app.add_subcommand(
      "resume", "undo a drain the admin API started (listeners open again, readiness follows)");
  resume->add_option("--admin", drain_admin, "the admin listener of the sluice to resume")
      ->envname("SLUICE_ADMIN")
      ->capture_default_str();

  std::string maint_mode, maint_listener, maint_retry, maint_message;
  auto* maint = app.add_subcommand(
      "maintenance",
      "switch maintenance mode live through the admin API: on (full), read-only, off, or clear "
      "(back to the configuration file's mode)");
  maint->add_option("MODE", maint_mode, "on | full | read-only | off | clear")
      ->required()
      ->check(CLI::IsMember({"on", "full", "read-only", "off", "clear"}));
  maint->add_option("--listener", maint_listener, "only this listener (default: every listener)");
  maint->add_option("--retry-after", maint_retry,
                    "Retry-After of the 503s, a duration such as 120s (default: the file's)");
  auto* maint_message_opt =
      maint->add_option("--message", maint_message, "text shown in the 503 body");
  maint->add_option("--admin", drain_admin, "the admin listener of the sluice to switch")
      ->envname("SLUICE_ADMIN")
      ->capture_default_str();

  app.require_subcommand(0, 1);
  CLI11_PARSE(app, argc, argv);

  if (*check) return check_config(check_files);
  if (*drain) return run_drain_command(address("admin", drain_admin), drain_wait);
  if (*resume) return run_resume_command(address("admin", drain_admin));
  if (*maint)
    return run_maintenance_command(address("admin", drain_admin), maint_mode, maint_listener,
                                   maint_retry, maint_message, maint_message_opt->count() > 0);
  if (*demo_app) return run_demo_app(address("listen", demo_app_listen));
  if (*demo) return run_proxy(demo_cmd, true);
  return run_proxy(proxy, false);
}

// What the benchmark programs share: medians, and running the PyTorch peer (tools/torch_peer.py,
// Debian's python3-torch) or another program to read the one JSON line it prints.
#pragma once

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kat/error.h"
#include "kat/parallel.h"

namespace kat::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs the shell command `cmd` and returns the last JSON object it printed on stdout; on failure
// the error gives `hint` and what the command printed.
inline nlohmann::json run_json_command(const std::string& cmd, const std::string& hint) {
  FILE* p = popen(cmd.c_str(), "r");
  check(p != nullptr, "cannot run ", cmd);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  check(pclose(p) == 0 && out.rfind('{') != std::string::npos, hint, ":\n", out);
  return nlohmann::json::parse(out.substr(out.rfind('{')));
}

// Runs `tools/torch_peer.py <args>` and returns its JSON result line.
inline nlohmann::json run_torch_peer(const std::string& args) {
  return run_json_command("/usr/bin/python3 " KAT_TOOLS_DIR "/torch_peer.py " + args,
                          "the PyTorch peer failed (is python3-torch installed? scripts/setup "
                          "--tools)");
}

// The main() of a benchmark program: re-executes with a short OpenMP spin (as the kat command
// runs), then runs `run`, turning an error into one "<program>: error:" line and exit status 1.
template <class Run>
int run_main(int argc, char** argv, const char* program, Run&& run) {
  use_short_openmp_spin(argv);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace kat::bench

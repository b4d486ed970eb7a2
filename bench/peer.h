// What the benchmark programs share: medians, and running the PyTorch peer (tools/torch_peer.py,
// Debian's python3-torch) to read the one JSON line it prints.
#pragma once

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kat/error.h"

namespace kat::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs `tools/torch_peer.py <args>` and returns its JSON result line.
inline nlohmann::json run_torch_peer(const std::string& args) {
  const std::string cmd = "/usr/bin/python3 " KAT_TOOLS_DIR "/torch_peer.py " + args;
  FILE* p = popen(cmd.c_str(), "r");
  check(p != nullptr, "cannot run ", cmd);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  check(pclose(p) == 0 && out.rfind('{') != std::string::npos,
        "the PyTorch peer failed (is python3-torch installed? scripts/setup --tools):\n", out);
  return nlohmann::json::parse(out.substr(out.rfind('{')));
}

}  // namespace kat::bench

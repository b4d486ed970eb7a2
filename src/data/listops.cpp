#include "kat/listops.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "kat/error.h"
#include "kat/files.h"
#include "kat/rng.h"

namespace kat {
namespace {

const char* kOperators[] = {"[MIN", "[MAX", "[MED", "[SM"};

// One subtree at `depth` appended to `out`; returns its LRA length and sets its value. A tree
// stops growing once `budget` (what is left of max_length) is spent: it would be rejected anyway,
// and unchecked trees of depth 10 can run to millions of tokens.
int64_t grow(std::string& out, int depth, const ListOpsRules& rules, Rng& rng, int& value,
             int64_t budget) {
  const double r = depth < rules.max_depth ? rng.uniform_double() : 1.0;
  if (r > rules.value_p) {
    value = static_cast<int>(rng.below(10));
    out += static_cast<char>('0' + value);
    out += ' ';
    return 1;
  }
  const int args = 2 + static_cast<int>(rng.below(static_cast<uint32_t>(rules.max_args - 1)));
  // LRA's script draws the arguments, then the operator, and writes nested pairs:
  // ( ( ( OP v0 ) v1 ) ... ] ). The operator's slot is written after the arguments are drawn.
  std::string body;
  std::vector<int> values;
  int64_t length = 2;
  for (int i = 0; i < args; i++) {
    int v = 0;
    length += grow(body, depth + 1, rules, rng, v, budget - length);
    if (length >= budget) return length;  // too long: the caller rejects it
    values.push_back(v);
    body += ") ";
  }
  const int op = static_cast<int>(rng.below(4));
  for (int i = 0; i <= args; i++) out += "( ";
  out += kOperators[op];
  out += ' ';
  out += body;
  out += "] ) ";
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  switch (op) {
    case 0:
      value = values.front();
      break;
    case 1:
      value = values.back();
      break;
    case 2:  // floor of the median, as int(np.median(...))
      value = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
      break;
    default: {
      int sum = 0;
      for (int v : values) sum += v;
      value = sum % 10;
    }
  }
  return length;
}

}  // namespace

std::vector<ListOpsExample> generate_listops(int64_t count, uint64_t seed,
                                             const ListOpsRules& rules,
                                             const std::vector<ListOpsExample>& exclude) {
  check(rules.max_args >= 2 && rules.max_depth >= 1, "ListOps: impossible rules");
  check(rules.min_length >= 0 && rules.min_length + 1 < rules.max_length, "ListOps: min_length ",
        rules.min_length, " and max_length ", rules.max_length, " leave no length between them");
  std::unordered_set<std::string> seen;
  for (const auto& e : exclude) seen.insert(e.source);
  std::vector<ListOpsExample> out;
  Rng rng(seed);
  int64_t tries = 0;
  while (static_cast<int64_t>(out.size()) < count) {
    check(++tries < 1000 * (count + 100), "ListOps: the rules give no expressions of length ",
          rules.min_length, "..", rules.max_length);
    std::string s;
    int value = 0;
    const int64_t length = grow(s, 1, rules, rng, value, rules.max_length);
    if (length <= rules.min_length || length >= rules.max_length) continue;
    s.pop_back();  // the trailing space
    if (!seen.insert(s).second) continue;
    out.push_back({std::move(s), value});
  }
  return out;
}

std::vector<int32_t> tokenize_listops(const std::string& source, const std::string& what) {
  std::vector<int32_t> ids;
  std::istringstream in(source);
  for (std::string tok; in >> tok;) {
    int id = -1;
    if (tok.size() == 1 && tok[0] >= '0' && tok[0] <= '9') id = 1 + (tok[0] - '0');
    for (int k = 0; k < 4; k++)
      if (tok == kOperators[k]) id = 11 + k;
    if (tok == "]") id = 15;
    if (tok == "(" || tok == ")") continue;  // LRA's pair notation; "[OP ... ]" holds the tree
    check(id >= 0, what, ": unknown ListOps token '", tok,
          "' (known: 0-9, [MIN, [MAX, [MED, [SM, ], (, ))");
    ids.push_back(id);
  }
  check(!ids.empty(), what, ": empty source");
  return ids;
}

int evaluate_listops(const std::string& source) {
  const std::vector<int32_t> ids = tokenize_listops(source, "expression");
  std::vector<std::pair<int, std::vector<int>>> stack;  // (operator, arguments)
  int result = -1;
  for (int32_t id : ids) {
    if (id >= 1 && id <= 10) {
      if (stack.empty()) return id - 1;
      stack.back().second.push_back(id - 1);
    } else if (id >= 11 && id <= 14) {
      stack.push_back({id - 11, {}});
    } else if (id == 15) {
      check(!stack.empty(), "ListOps: ']' without an operator");
      auto [op, v] = stack.back();
      stack.pop_back();
      check(!v.empty(), "ListOps: an operator without arguments");
      std::sort(v.begin(), v.end());
      int x = 0;
      if (op == 0) x = v.front();
      if (op == 1) x = v.back();
      if (op == 2) x = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
      if (op == 3) {
        for (int a : v) x += a;
        x %= 10;
      }
      if (stack.empty())
        result = x;
      else
        stack.back().second.push_back(x);
    }
  }
  check(stack.empty() && result >= 0, "ListOps: unbalanced expression");
  return result;
}

void write_listops_tsv(const std::string& path, const std::vector<ListOpsExample>& examples) {
  std::string text = "Source\tTarget\n";
  for (const auto& e : examples) text += e.source + "\t" + std::to_string(e.target) + "\n";
  write_file_atomic(path, text);
}

std::vector<ListOpsExample> read_listops_tsv(const std::string& path) {
  std::istringstream in(read_text_file(path));
  std::string line;
  check(static_cast<bool>(std::getline(in, line)), path, ": empty file");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  check(line == "Source\tTarget", path, ":1: expected the header 'Source<TAB>Target'");
  std::vector<ListOpsExample> out;
  for (int64_t n = 2; std::getline(in, line); n++) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(n);
    const size_t tab = line.find('\t');
    check(tab != std::string::npos && line.find('\t', tab + 1) == std::string::npos, where,
          ": expected two tab-separated fields, Source and Target");
    ListOpsExample e{line.substr(0, tab), 0};
    const std::string t = line.substr(tab + 1);
    check(t.size() == 1 && t[0] >= '0' && t[0] <= '9', where, ": target '", t,
          "' is not a label 0..9");
    e.target = t[0] - '0';
    tokenize_listops(e.source, where);  // every token known
    out.push_back(std::move(e));
  }
  check(!out.empty(), path, ": no examples");
  return out;
}

}  // namespace kat

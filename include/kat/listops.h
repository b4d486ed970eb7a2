// LRA ListOps (reference/lra.md): nested [MIN / [MAX / [MED / [SM expressions over the digits 0-9,
// written with LRA's extra "(" ")" tokens; the label is the expression's value. A generator that
// follows the rules of LRA's script, its TSV files (header "Source<TAB>Target") both ways, and the
// tokenizer, which keeps every operator and every "]" (the tree's structure; the vocabulary of 15
// in LRA's released pipeline drops "]") and leaves out the "(" ")" of LRA's nested-pair writing,
// which repeat what "[OP ... ]" already says. The model then sees LRA's lengths (500-2000) and the
// root operator first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kat {

struct ListOpsExample {
  std::string source;  // tokens separated by single spaces
  int target = 0;      // 0..9
};

// Token ids: 0 padding, 1-10 the digits 0-9, then [MIN [MAX [MED [SM ].
constexpr int kListOpsVocab = 16;
constexpr int kListOpsClasses = 10;

struct ListOpsRules {
  int max_depth = 10, max_args = 10;
  double value_p = 0.25;                    // a node is an operator when a uniform draw is <= this
  int min_length = 500, max_length = 2000;  // kept: min_length < length < max_length
};

// `count` distinct expressions (none of those in `exclude`), deterministic for a seed. Length is
// counted as LRA counts it: operators, digits and "]", not the "(" ")" tokens.
std::vector<ListOpsExample> generate_listops(int64_t count, uint64_t seed,
                                             const ListOpsRules& rules = {},
                                             const std::vector<ListOpsExample>& exclude = {});
// The value of a source string (the reference evaluator; MED is the floor of the median).
int evaluate_listops(const std::string& source);

void write_listops_tsv(const std::string& path, const std::vector<ListOpsExample>& examples);
// Reads a TSV with the header "Source\tTarget"; a malformed line, an unknown token or a target
// outside 0..9 is an error naming the file and the line.
std::vector<ListOpsExample> read_listops_tsv(const std::string& path);

// Token ids of a source, "(" and ")" left out; unknown tokens are errors (what names the file and
// line for messages).
std::vector<int32_t> tokenize_listops(const std::string& source, const std::string& what);

}  // namespace kat

// The ListOps generator, evaluator, TSV files and tokenizer (LRA, reference/lra.md).
#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "cli.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/listops.h"

namespace kat {
namespace {

int64_t lra_length(const std::string& source) {  // operators, digits and "]"
  std::istringstream in(source);
  int64_t n = 0;
  for (std::string t; in >> t;) n += t != "(" && t != ")";
  return n;
}

TEST(ListOps, EvaluatesByTheRules) {
  EXPECT_EQ(evaluate_listops("( ( ( [MAX 2 ) 9 ) ] )"), 9);
  EXPECT_EQ(evaluate_listops("[MIN 4 [MAX 1 7 ] 5 ]"), 4);
  EXPECT_EQ(evaluate_listops("[MED 1 2 3 4 ]"), 2);  // floor of 2.5
  EXPECT_EQ(evaluate_listops("[MED 9 1 5 ]"), 5);
  EXPECT_EQ(evaluate_listops("[SM 5 7 9 ]"), 1);
  EXPECT_THROW(evaluate_listops("[MAX 1 2"), Error);
  EXPECT_THROW(evaluate_listops("[MAX ]"), Error);
}

TEST(ListOps, GeneratorFollowsTheRulesAndTheSeed) {
  ListOpsRules rules;
  rules.min_length = 20, rules.max_length = 300;  // small, so the test is quick
  const auto a = generate_listops(40, 7, rules), b = generate_listops(40, 7, rules);
  ASSERT_EQ(a.size(), 40u);
  std::set<std::string> distinct;
  for (size_t i = 0; i < a.size(); i++) {
    EXPECT_EQ(a[i].source, b[i].source);
    EXPECT_EQ(evaluate_listops(a[i].source), a[i].target) << a[i].source;
    const int64_t len = lra_length(a[i].source);
    EXPECT_GT(len, rules.min_length);
    EXPECT_LT(len, rules.max_length);
    int64_t open = 0, close = 0;
    for (char c : a[i].source) open += c == '(', close += c == ')';
    EXPECT_EQ(open, close);
    distinct.insert(a[i].source);
  }
  EXPECT_EQ(distinct.size(), a.size());
  const auto c = generate_listops(40, 7, rules, a);  // the same seed, but none of a again
  for (const auto& e : c) EXPECT_EQ(distinct.count(e.source), 0u);
  std::set<int> labels;
  for (const auto& e : a) labels.insert(e.target);
  EXPECT_GT(labels.size(), 3u);
}

TEST(ListOps, DefaultRulesGiveLraLengths) {
  const auto e = generate_listops(3, 1);
  for (const auto& x : e) {
    EXPECT_GT(lra_length(x.source), 500);
    EXPECT_LT(lra_length(x.source), 2000);
    // The model sees exactly LRA's length, the root operator first.
    const auto ids = tokenize_listops(x.source, "generated");
    EXPECT_EQ(static_cast<int64_t>(ids.size()), lra_length(x.source));
    EXPECT_GE(ids[0], 11);
    EXPECT_LE(ids[0], 14);
  }
}

TEST(ListOps, TsvRoundTripsAndBadFilesNameTheLine) {
  testing::TempDir dir("listops");
  ListOpsRules rules;
  rules.min_length = 10, rules.max_length = 100;
  const auto e = generate_listops(5, 3, rules);
  write_listops_tsv(dir / "train.tsv", e);
  const auto back = read_listops_tsv(dir / "train.tsv");
  ASSERT_EQ(back.size(), e.size());
  for (size_t i = 0; i < e.size(); i++) {
    EXPECT_EQ(back[i].source, e[i].source);
    EXPECT_EQ(back[i].target, e[i].target);
  }
  const auto ids = tokenize_listops("( [SM 0 9 ] )", "x");
  EXPECT_EQ(ids, (std::vector<int32_t>{14, 1, 10, 15}));  // "(" ")" left out
  auto expect_error = [&](const std::string& text, const std::string& where) {
    write_file_atomic(dir / "bad.tsv", text);
    try {
      read_listops_tsv(dir / "bad.tsv");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find(where), std::string::npos) << err.what();
    }
  };
  expect_error("Input\tLabel\n[MAX 1 ]\t1\n", "bad.tsv:1");
  expect_error("Source\tTarget\n[MAX 1 ]\t1\n[MIN 2 ]\n", "bad.tsv:3");
  expect_error("Source\tTarget\n[MAX 1 ]\t12\n", "bad.tsv:2");
  expect_error("Source\tTarget\n[MAX 1 [FOO 2 ] ]\t1\n", "[FOO");
  expect_error("", "empty");
}

}  // namespace
}  // namespace kat

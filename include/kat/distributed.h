// Data-parallel training across processes with MPI (Open MPI's mpirun, or any launcher that sets
// PMIx/PMI variables). Every rank holds the whole model and the whole data set, runs forward and
// backward on its shard of each batch, and the gradients are averaged before every optimizer step,
// so all ranks keep identical weights. A kat started without a launcher, or built without MPI, is
// rank 0 of 1 and everything here costs nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kat/params.h"

namespace kat::dist {

// Starts MPI when a launcher started this process and kat was built with MPI; a launched kat
// built without MPI fails here with a message saying how to build it with MPI. Call once, first.
void init(int* argc, char*** argv);
void finalize();
bool built_with_mpi();
int rank();
int size();
inline bool root() { return rank() == 0; }
int local_size();  // ranks on this machine

// Seconds a rank waits for the others in any exchange before it stops the whole job with an
// error naming the exchange (environment KAT_MPI_TIMEOUT, read by init(); default 600).
double timeout();

// Sums x over the ranks in place; every rank gets the sums. `what` names the exchange in errors.
void sum(double* x, int64_t n, const std::string& what);
inline void sum(std::vector<double>& x, const std::string& what) {
  sum(x.data(), static_cast<int64_t>(x.size()), what);
}
// Returns once every rank has reached it (an exchange of nothing, named `what` in errors).
inline void barrier(const std::string& what) {
  double nothing = 0;
  sum(&nothing, 1, what);
}

// Prints "kat: error: <error>" for an error this rank has caught, once for the whole job. The
// ranks of a job mostly meet the same error (a missing file, a bad option): rank 0 prints it and
// then tells the other ranks, which stay silent when that word comes within `wait_s` seconds and
// otherwise print their own, as "kat: error: rank N: <error>". Call abort_job next.
void report_error(const std::string& error, double wait_s = 5);

// After an error this rank has printed: stops every rank of the job with exit status `code`.
// Without MPI it returns and the caller exits.
void abort_job(int code);

// The part [begin, begin + count) of `n` items that belongs to this rank: contiguous, in rank
// order, as even as n allows.
struct Shard {
  int64_t begin = 0, count = 0;
};
Shard shard(int64_t n);

// Averages the gradients of a Params over the ranks. The gradient array is cut into buckets from
// its end (the parameters a backward pass finishes first: heads, then the last block); during a
// backward armed with overlap_next_backward(), each bucket's all-reduce starts as soon as the
// model reports the gradients from its first float on final (Params::grads_final_from), so
// communication runs while earlier blocks still compute. finish() starts what is left and waits.
class GradientSync {
 public:
  explicit GradientSync(Params& params, int64_t bucket_floats = int64_t{1} << 18);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // The next backward reports finished gradients, which start their buckets' all-reduce.
  void overlap_next_backward();
  // Completes every bucket and divides the gradients by the ranks; `stats` (the step's loss,
  // counts, a stop request) are summed over the ranks alongside. `step` names it in errors.
  void finish(double* stats, int n, int64_t step);
  // Seconds this rank spent in the exchange (starting buckets and waiting) since construction.
  double seconds() const { return seconds_; }

 private:
  void ready_from(int64_t offset);
  void start(size_t bucket);
  Params& params_;
  std::vector<int64_t> bounds_;  // bucket b is [bounds_[b + 1], bounds_[b]): b = 0 is the last
  std::vector<bool> started_;
  struct Requests;  // the MPI requests of the started buckets
  std::unique_ptr<Requests> requests_;
  double seconds_ = 0;
};

}  // namespace kat::dist

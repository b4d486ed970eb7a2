#include "kat/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include "kat/error.h"

#ifdef KAT_WITH_MPI
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace kat::dist {

namespace {

int g_rank = 0, g_size = 1, g_local_size = 1;
double g_timeout = 600;               // seconds; KAT_MPI_TIMEOUT
[[maybe_unused]] bool g_mpi = false;  // MPI_Init ran

double clock_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// The launcher's word on the job's size: Open MPI's, PMIx's or PMI's variables; 0 when none.
int launched_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(name)) return std::max(1, std::atoi(v));
  return std::getenv("PMIX_RANK") ? 1 : 0;
}

#ifdef KAT_WITH_MPI
// Waits for `n` requests, testing them with a growing pause (a rank that waits for a slower one
// leaves it the CPU); past the timeout, prints what hung and stops the job.
void wait_all(MPI_Request* requests, int n, const std::string& what) {
  const double t0 = clock_seconds(), limit = timeout();
  for (;;) {
    int done = 0;
    if (MPI_Testall(n, requests, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
      std::cerr << "kat: error: rank " << g_rank << " of " << g_size << ": the " << what
                << " failed: a rank has died; stopping every rank" << std::endl;
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (done) return;
    if (clock_seconds() - t0 > limit) {
      std::cerr << "kat: error: rank " << g_rank << " of " << g_size << ": the other ranks did not "
                << "answer in " << limit << " s (" << what
                << "): a rank has died or hangs; stopping every rank (KAT_MPI_TIMEOUT sets the "
                << "limit)" << std::endl;
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    // Spin for 10 ms (an exchange moves on only while tested), then test every 50 us, and past
    // a second every millisecond.
    const double waited = clock_seconds() - t0;
    if (waited > 0.01)
      std::this_thread::sleep_for(std::chrono::microseconds(waited > 1 ? 1000 : 50));
  }
}
#endif

}  // namespace

bool built_with_mpi() {
#ifdef KAT_WITH_MPI
  return true;
#else
  return false;
#endif
}

void init(int* argc, char*** argv) {
  const int launched = launched_size();
  if (launched == 0) return;
#ifdef KAT_WITH_MPI
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  g_mpi = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &g_local_size);
  MPI_Comm_free(&local);
  // Errors in collectives come back as codes kat turns into messages, not as a silent abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
#else
  (void)argc, (void)argv;
  check(launched == 1, "this kat was built without MPI, so it cannot run as ", launched,
        " ranks: install Debian's libopenmpi-dev and openmpi-bin and build again "
        "(scripts/build finds MPI by itself)");
#endif
  if (const char* v = std::getenv("KAT_MPI_TIMEOUT")) {
    char* end = nullptr;
    g_timeout = std::strtod(v, &end);
    check(end != v && *end == '\0' && g_timeout > 0,
          "KAT_MPI_TIMEOUT must be a number of seconds > 0, not '", v, "'");
  }
}

void finalize() {
#ifdef KAT_WITH_MPI
  if (g_mpi) MPI_Finalize();
  g_mpi = false;
#endif
}

int rank() { return g_rank; }
int size() { return g_size; }
int local_size() { return g_local_size; }

double timeout() { return g_timeout; }

void sum(double* x, int64_t n, const std::string& what) {
  if (g_size == 1 || n == 0) return;
#ifdef KAT_WITH_MPI
  MPI_Request r;
  MPI_Iallreduce(MPI_IN_PLACE, x, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &r);
  wait_all(&r, 1, what);
#else
  (void)x, (void)what;
#endif
}

void report_error(const std::string& error, double wait_s) {
  // One write, so that no other output lands inside the line.
  auto print = [&](const std::string& who) {
    const std::string line = "kat: error: " + who + error + "\n";
    std::cerr.write(line.data(), static_cast<std::streamsize>(line.size()));
    std::cerr.flush();
  };
#ifdef KAT_WITH_MPI
  if (!g_mpi || g_size == 1) return print("");
  constexpr int kErrorTag = 7001;  // kat's exchanges are collectives: no other message has a tag
  int word = 1;
  const double t0 = clock_seconds();
  if (g_rank == 0) {
    print("");
    // Small messages go out eagerly; the sends are tested until they leave (or a second passes).
    std::vector<MPI_Request> sent(static_cast<size_t>(g_size - 1));
    for (int r = 1; r < g_size; r++)
      MPI_Isend(&word, 1, MPI_INT, r, kErrorTag, MPI_COMM_WORLD, &sent[static_cast<size_t>(r - 1)]);
    for (int done = 0; !done && clock_seconds() - t0 < 1;) {
      MPI_Testall(g_size - 1, sent.data(), &done, MPI_STATUSES_IGNORE);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return;
  }
  MPI_Request received;
  MPI_Irecv(&word, 1, MPI_INT, 0, kErrorTag, MPI_COMM_WORLD, &received);
  for (int done = 0; clock_seconds() - t0 < wait_s;) {
    MPI_Test(&received, &done, MPI_STATUS_IGNORE);
    if (done) {  // rank 0 has said it and is stopping the job: leave the stopping to it
      std::this_thread::sleep_for(std::chrono::seconds(3));
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  print("rank " + std::to_string(g_rank) + ": ");
#else
  (void)wait_s;
  print("");
#endif
}

void abort_job(int code) {
#ifdef KAT_WITH_MPI
  if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  (void)code;
}

Shard shard(int64_t n) {
  const int64_t per = n / g_size, extra = n % g_size;
  Shard s;
  s.begin = g_rank * per + std::min<int64_t>(g_rank, extra);
  s.count = per + (g_rank < extra ? 1 : 0);
  return s;
}

#ifdef KAT_WITH_MPI
struct GradientSync::Requests {
  std::vector<MPI_Request> r;
};
#else
struct GradientSync::Requests {};
#endif

GradientSync::GradientSync(Params& params, int64_t bucket_floats)
    : params_(params), requests_(std::make_unique<Requests>()) {
  check(bucket_floats > 0, "GradientSync: buckets must hold at least one value");
  const int64_t total = params.total();
  for (int64_t end = total; end > 0; end -= bucket_floats) bounds_.push_back(end);
  bounds_.push_back(0);
  started_.assign(bounds_.size() - 1, false);
}

GradientSync::~GradientSync() { params_.on_grads_final(nullptr); }

void GradientSync::overlap_next_backward() {
  if (g_size == 1) return;
  params_.on_grads_final([this](int64_t offset) { ready_from(offset); });
}

void GradientSync::start(size_t b) {
#ifdef KAT_WITH_MPI
  float* g = params_.grads().data() + bounds_[b + 1];
  MPI_Request r;
  MPI_Iallreduce(MPI_IN_PLACE, g, static_cast<int>(bounds_[b] - bounds_[b + 1]), MPI_FLOAT, MPI_SUM,
                 MPI_COMM_WORLD, &r);
  requests_->r.push_back(r);
#endif
  started_[b] = true;
}

void GradientSync::ready_from(int64_t offset) {
  const double t0 = clock_seconds();
  for (size_t b = 0; b < started_.size() && bounds_[b + 1] >= offset; b++)
    if (!started_[b]) start(b);
#ifdef KAT_WITH_MPI
  // Open MPI moves non-blocking collectives on inside MPI calls: one test per block does that.
  int done = 0;
  if (!requests_->r.empty())
    MPI_Testall(static_cast<int>(requests_->r.size()), requests_->r.data(), &done,
                MPI_STATUSES_IGNORE);
#endif
  seconds_ += clock_seconds() - t0;
}

void GradientSync::finish(double* stats, int n, int64_t step) {
  params_.on_grads_final(nullptr);
  if (g_size == 1) return;
  const double t0 = clock_seconds();
  for (size_t b = 0; b < started_.size(); b++)
    if (!started_[b]) start(b);
#ifdef KAT_WITH_MPI
  MPI_Request r;
  MPI_Iallreduce(MPI_IN_PLACE, stats, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &r);
  requests_->r.push_back(r);
  wait_all(requests_->r.data(), static_cast<int>(requests_->r.size()),
           "gradient all-reduce of step " + std::to_string(step + 1));
  requests_->r.clear();
#else
  (void)stats, (void)n, (void)step;
#endif
  std::fill(started_.begin(), started_.end(), false);
  const float inv = 1.0f / static_cast<float>(g_size);
  for (float& g : params_.grads()) g *= inv;
  seconds_ += clock_seconds() - t0;
}

}  // namespace kat::dist

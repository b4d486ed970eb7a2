// How a training run takes Ctrl-C and SIGTERM: the first asks the loop to stop, the same signal
// again ends the process, though never while a checkpoint is half written.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "train/run_support.h"

namespace kat {
namespace {

TEST(InterruptGuardDeathTest, TheSameSignalAgainEndsTheProcessOnceTheCheckpointIsWritten) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const int signal : {SIGINT, SIGTERM}) {
    EXPECT_EXIT(
        {
          const InterruptGuard guard;
          std::raise(signal);
          std::fprintf(stderr, "asked to stop: %d\n", InterruptGuard::interrupted() ? 1 : 0);
          {
            const SavingCheckpoint saving;
            std::raise(signal);
            std::fprintf(stderr, "checkpoint written\n");
          }
          std::fprintf(stderr, "still running\n");
          std::exit(0);
        },
        ::testing::KilledBySignal(signal), "asked to stop: 1\ncheckpoint written\n$");
  }
}

TEST(InterruptGuardDeathTest, TheOtherSignalOnlyAsksAgain) {
  // mpirun may send its ranks SIGTERM after the terminal's Ctrl-C has reached them.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const InterruptGuard guard;
        std::raise(SIGINT);
        std::raise(SIGTERM);
        std::fprintf(stderr, "asked to stop: %d\n", InterruptGuard::interrupted() ? 1 : 0);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "asked to stop: 1\n$");
}

TEST(InterruptGuardDeathTest, EachRunStartsUnasked) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        {
          const InterruptGuard first;
          std::raise(SIGINT);
        }
        const InterruptGuard second;
        std::fprintf(stderr, "asked to stop: %d\n", InterruptGuard::interrupted() ? 1 : 0);
        std::raise(SIGINT);  // the first signal of this run: asks, does not end
        std::fprintf(stderr, "asked to stop: %d\n", InterruptGuard::interrupted() ? 1 : 0);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "asked to stop: 0\nasked to stop: 1\n$");
}

}  // namespace
}  // namespace kat

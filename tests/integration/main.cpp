#include <gtest/gtest.h>
#include <signal.h>

int main(int argc, char** argv) {
    // Writes to a socket reset by halfpipe must fail with EPIPE, not kill the tests.
    ::signal(SIGPIPE, SIG_IGN);
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}

// Preloaded (LD_PRELOAD) into halfpipe by Limits.SpliceRefusedCopies: every splice(2)
// fails the way the kernel refuses a descriptor it cannot splice, so that the splice
// relay's fallback to copying runs on loopback, where every TCP socket splices.
#include <fcntl.h>
#include <sys/types.h>

#include <cerrno>

extern "C" ssize_t splice(int, loff_t*, int, loff_t*, size_t, unsigned int) {
    errno = EINVAL;
    return -1;
}

/*
 * faultio: the disk of a Balsa node failing, for jepsen's `disk` nemesis.
 *
 * Preloaded (LD_PRELOAD) into a node. While the file named by the
 * environment variable BALSA_FAULTIO_CONTROL exists, every write, pwrite,
 * writev, pwritev, fsync and fdatasync on a regular file or a directory
 * fails with EIO. Sockets, pipes, eventfds and the standard streams keep
 * working: the node stays on the network and must refuse to acknowledge
 * what it could not make durable.
 *
 * libfiu's POSIX failure points cannot be used for writes: they fail every
 * write(2), including the eventfd that wakes tokio's I/O driver, which
 * panics the runtime instead of exercising the storage error path.
 *
 * The control file is looked at most every 100 ms (one access(2)); the
 * file type only while armed (one fstat(2) per call).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static atomic_long next_check_ms;
static atomic_int armed_now;

static int armed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    long now = (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (now >= atomic_load_explicit(&next_check_ms, memory_order_relaxed)) {
        atomic_store_explicit(&next_check_ms, now + 100, memory_order_relaxed);
        const char *path = getenv("BALSA_FAULTIO_CONTROL");
        atomic_store_explicit(&armed_now, path != NULL && access(path, F_OK) == 0, memory_order_relaxed);
    }
    return atomic_load_explicit(&armed_now, memory_order_relaxed);
}

/* Whether an operation on fd must fail now (errno is set when it must). */
static int fails(int fd) {
    if (fd <= 2 || !armed()) {
        return 0;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
        return 0;
    }
    errno = EIO;
    return 1;
}

#define REAL(name) \
    static __typeof__(name) *real_##name; \
    if (real_##name == NULL) { \
        real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name); \
    }

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write);
    return fails(fd) ? -1 : real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite);
    return fails(fd) ? -1 : real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    REAL(pwrite64);
    return fails(fd) ? -1 : real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    REAL(writev);
    return fails(fd) ? -1 : real_writev(fd, iov, count);
}

ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t off) {
    REAL(pwritev);
    return fails(fd) ? -1 : real_pwritev(fd, iov, count, off);
}

int fsync(int fd) {
    REAL(fsync);
    return fails(fd) ? -1 : real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    return fails(fd) ? -1 : real_fdatasync(fd);
}

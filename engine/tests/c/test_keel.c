/*
 * test_keel.c: the C API from C. Every bad input the header documents is refused with its
 * errno and changes nothing (NULLs, stale and wrong-kind handles, zero and overlong
 * lengths, offsets past the object size limit, unknown enums, opts_size from older and
 * newer headers); every builder and call does what it says on the happy path; a store on
 * a file keeps its data across close and open; a byte flipped in the file is found by
 * keel_scrub (with and without reactors) and fails reads with -EBADMSG.
 *
 * Built by vendor-scripts/c-tests.sh with gcc -std=c11 -Wall -Wextra -Werror against
 * libkeel and run under valgrind. Prints one line per test and "N passed, N failed" last;
 * exits non-zero on any failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keel.h"

/* ---- a small harness ------------------------------------------------------------------ */

static int passed, failed;
static int current_ok;

#define EXPECT(cond)                                                                     \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "  %s:%d: expected %s\n", __FILE__, __LINE__, #cond);       \
            current_ok = 0;                                                              \
        }                                                                                \
    } while (0)

#define EXPECT_RC(call, want)                                                            \
    do {                                                                                 \
        long long got_ = (long long)(call);                                              \
        long long want_ = (long long)(want);                                             \
        if (got_ != want_) {                                                             \
            fprintf(stderr, "  %s:%d: %s returned %lld (%s), expected %lld (%s)\n",      \
                    __FILE__, __LINE__, #call, got_, keel_strerror((int)got_), want_,    \
                    keel_strerror((int)want_));                                          \
            current_ok = 0;                                                              \
        }                                                                                \
    } while (0)

/* For setup steps: a test cannot go on without them. */
#define REQUIRE(cond)                                                                    \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "  %s:%d: required %s\n", __FILE__, __LINE__, #cond);       \
            current_ok = 0;                                                              \
            return;                                                                      \
        }                                                                                \
    } while (0)

static void run(const char *name, void (*test)(void)) {
    current_ok = 1;
    test();
    if (current_ok) {
        passed++;
        printf("ok   %s\n", name);
    } else {
        failed++;
        printf("FAIL %s\n", name);
    }
    fflush(stdout);
}

#define RUN(test) run(#test, test)

/* ---- fixtures ------------------------------------------------------------------------- */

#define MIB (1024u * 1024u)
#define SIM_BYTES (64u * MIB)

static void sim_opts(struct keel_opts *o) {
    keel_opts_init(o, sizeof *o);
    o->dev_kind = KEEL_DEV_SIM;
    o->size_bytes = SIM_BYTES;
    o->create = true;
}

static struct keel_store *open_sim(uint32_t mode) {
    struct keel_opts o;
    sim_opts(&o);
    o.mode = mode;
    struct keel_store *s = NULL;
    int rc = keel_store_open(&o, &s);
    if (rc != 0) {
        fprintf(stderr, "  open sim: %s\n", keel_strerror(rc));
        return NULL;
    }
    return s;
}

/* A fresh temp file path (the file does not exist). */
static void temp_path(char *buf, size_t len) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, len, "%s/keel-c-test-XXXXXX", dir != NULL && *dir ? dir : "/tmp");
    int fd = mkstemp(buf);
    if (fd >= 0) {
        close(fd);
        unlink(buf);
    }
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static size_t txn_len(const struct keel_txn *t) {
    size_t n = (size_t)-1;
    if (keel_txn_len(t, &n) != 0) {
        return (size_t)-1;
    }
    return n;
}

/* Runs txn through keel_submit_sync and returns its status. */
static int commit(struct keel_store *s, struct keel_txn *t) { return keel_submit_sync(s, t); }

#define S(str) str, (sizeof str - 1) /* a string literal as (pointer, length) */

/* ---- options and opening -------------------------------------------------------------- */

static void test_opts_init(void) {
    keel_opts_init(NULL, sizeof(struct keel_opts)); /* no crash */

    struct keel_opts o;
    memset(&o, 0xab, sizeof o);
    keel_opts_init(&o, KEEL_OPTS_SIZE_V1 - 1); /* too small: untouched */
    EXPECT(o.dev_kind == 0xabababab);

    keel_opts_init(&o, sizeof o);
    EXPECT(o.opts_size == sizeof o);
    EXPECT(o.dev_kind == KEEL_DEV_SIM && o.mode == KEEL_MODE_FULL && o.path == NULL);
    EXPECT(!o.create && o.size_bytes == 0 && o.cores == NULL && o.ncores == 0);
    EXPECT(o.journal_bytes == 0 && o.max_inflight_txns == 0);
    EXPECT(o.overwrite_intents == KEEL_OPT_DEFAULT && o.parallel_commit == KEEL_OPT_DEFAULT);
    EXPECT(o.scrub_pages_per_sec == 0);

    /* A newer header's larger struct: all of it zeroed, the size recorded. */
    unsigned char big[sizeof o + 32];
    memset(big, 0xcd, sizeof big);
    keel_opts_init((struct keel_opts *)(void *)big, sizeof big);
    size_t size;
    memcpy(&size, big, sizeof size);
    EXPECT(size == sizeof big);
    int zero = 1;
    for (size_t i = sizeof size; i < sizeof big; i++) {
        zero &= big[i] == 0;
    }
    EXPECT(zero);
}

static void test_open_null_and_sizes(void) {
    struct keel_opts o;
    sim_opts(&o);
    struct keel_store *s = (struct keel_store *)0x1; /* must stay untouched on error */
    EXPECT_RC(keel_store_open(NULL, &s), -EINVAL);
    EXPECT_RC(keel_store_open(&o, NULL), -EINVAL);
    o.opts_size = 0;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    o.opts_size = KEEL_OPTS_SIZE_V1 - 1;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    o.opts_size = KEEL_STRUCT_MAX_BYTES + 1;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    EXPECT(s == (struct keel_store *)0x1);
}

static void test_open_bad_fields(void) {
    struct keel_store *s = NULL;
    struct keel_opts o;

    sim_opts(&o);
    o.dev_kind = 42;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    sim_opts(&o);
    o.mode = 7;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    sim_opts(&o);
    o.dev_kind = KEEL_DEV_NVME; /* no PCI address in path */
    o.size_bytes = 0;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    o.path = "0000:ff:1f.7"; /* no controller there */
    EXPECT_RC(keel_store_open(&o, &s), -ENOENT);

    sim_opts(&o);
    o.create = false; /* a simulated device is always new */
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    sim_opts(&o);
    o.size_bytes = 0;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    sim_opts(&o);
    o.size_bytes = KEEL_SIM_MAX_BYTES + 1;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    sim_opts(&o);
    o.size_bytes = 1 * MIB; /* too small to format */
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    sim_opts(&o);
    o.journal_bytes = KEEL_JOURNAL_MAX_BYTES + 1;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    sim_opts(&o);
    o.overwrite_intents = KEEL_OPT_OFF + 1;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    sim_opts(&o);
    o.parallel_commit = 0xffffffffu;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    sim_opts(&o);
    o.scrub_pages_per_sec = 100; /* no core list: no reactor to run it */
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);

    sim_opts(&o);
    o.dev_kind = KEEL_DEV_PSYNC; /* no path */
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    o.path = "";
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    o.dev_kind = KEEL_DEV_URING;
    o.path = NULL;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);

    /* Cores: NULL with a count, duplicates, a CPU that is not there, too many. */
    uint32_t dup[2] = {0, 0};
    uint32_t far[1] = {1u << 30};
    uint32_t many[100] = {0};
    sim_opts(&o);
    o.ncores = 2;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    o.cores = dup;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    o.cores = far;
    o.ncores = 1;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    o.cores = many;
    o.ncores = 100;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    EXPECT(s == NULL);

    /* A valid core list is accepted; a scrub rate needs one, up to the limit. */
    uint32_t core0[1] = {0};
    sim_opts(&o);
    o.cores = core0;
    o.ncores = 1;
    o.scrub_pages_per_sec = KEEL_SCRUB_MAX_PAGES_PER_SEC + 1;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    EXPECT(s == NULL);
    o.scrub_pages_per_sec = KEEL_SCRUB_MAX_PAGES_PER_SEC;
    o.reactor_sleep_us_max = 200;
    REQUIRE(keel_store_open(&o, &s) == 0);
    EXPECT_RC(keel_store_close(s), 0);

    /* Both switches off, explicitly: a store that works. */
    sim_opts(&o);
    o.mode = KEEL_MODE_METADATA_ONLY;
    o.overwrite_intents = KEEL_OPT_OFF;
    o.parallel_commit = KEEL_OPT_OFF;
    s = NULL;
    REQUIRE(keel_store_open(&o, &s) == 0);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    EXPECT_RC(keel_txn_mkcoll(t, 1), 0);
    EXPECT_RC(keel_txn_write(t, 1, S("x"), 0, S("twice")), 0);
    EXPECT_RC(keel_submit_sync(s, t), 0);
    EXPECT_RC(keel_txn_write(t, 1, S("x"), 0, S("TW")), 0); /* in place */
    EXPECT_RC(keel_submit_sync(s, t), 0);
    char back[8];
    size_t n = 0;
    EXPECT_RC(keel_read(s, 1, S("x"), 0, back, sizeof back, &n), 0);
    EXPECT(n == 5 && memcmp(back, "TWice", 5) == 0);
    keel_txn_free(t);
    EXPECT_RC(keel_store_close(s), 0);
}

static void test_open_files(void) {
    char path[256];
    temp_path(path, sizeof path);
    struct keel_opts o;
    keel_opts_init(&o, sizeof o);
    o.dev_kind = KEEL_DEV_PSYNC;
    o.path = path;
    struct keel_store *s = NULL;

    /* Missing file without create. */
    EXPECT_RC(keel_store_open(&o, &s), -ENOENT);
    EXPECT(!file_exists(path));

    /* Create, but too small to format: refused, and the file it made is gone again. */
    o.create = true;
    o.size_bytes = 1 * MIB;
    EXPECT_RC(keel_store_open(&o, &s), -EINVAL);
    EXPECT(!file_exists(path));

    /* A file of zeroes is not a Keel store. */
    int fd = open(path, O_CREAT | O_RDWR, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 16 * MIB) == 0);
    close(fd);
    o.create = false;
    EXPECT_RC(keel_store_open(&o, &s), -EUCLEAN);
    o.dev_kind = KEEL_DEV_URING;
    int rc = keel_store_open(&o, &s);
    EXPECT(rc == -EUCLEAN || rc == -EPERM || rc == -ENOSYS); /* io_uring may be barred */
    EXPECT(s == NULL);
    unlink(path);
}

static void test_opts_size_versions(void) {
    struct keel_store *s = NULL;

    /* An older header: only version 1 is read; garbage past it is not looked at. */
    struct keel_opts o;
    sim_opts(&o);
    o.opts_size = KEEL_OPTS_SIZE_V1;
    o.journal_bytes = UINT64_MAX;    /* -EINVAL if it were read */
    o.max_inflight_txns = 0xdeadbeef;
    REQUIRE(keel_store_open(&o, &s) == 0);
    EXPECT_RC(keel_store_close(s), 0);

    /* A newer header: a larger struct, accepted while the bytes past ours are zero. */
    union {
        struct keel_opts opts;
        unsigned char bytes[sizeof(struct keel_opts) + 64];
    } newer;
    keel_opts_init(&newer.opts, sizeof newer);
    newer.opts.dev_kind = KEEL_DEV_SIM;
    newer.opts.size_bytes = SIM_BYTES;
    newer.opts.create = true;
    s = NULL;
    REQUIRE(keel_store_open(&newer.opts, &s) == 0);
    EXPECT_RC(keel_store_close(s), 0);
    newer.bytes[sizeof(struct keel_opts) + 5] = 1; /* a field this library does not know */
    s = NULL;
    EXPECT_RC(keel_store_open(&newer.opts, &s), -EINVAL);
    EXPECT(s == NULL);
}

/* ---- handles -------------------------------------------------------------------------- */

static void test_stale_and_foreign_handles(void) {
    struct keel_store *s = open_sim(KEEL_MODE_FULL);
    REQUIRE(s != NULL);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);

    /* NULL handles. */
    EXPECT_RC(keel_poll(NULL), -EINVAL);
    EXPECT_RC(keel_store_close(NULL), -EINVAL);
    EXPECT_RC(keel_txn_mkcoll(NULL, 1), -EINVAL);
    EXPECT_RC(keel_submit(NULL, t, NULL, NULL), -EINVAL);
    EXPECT_RC(keel_submit(s, NULL, NULL, NULL), -EINVAL);
    EXPECT_RC(keel_submit_sync(NULL, t), -EINVAL);
    keel_txn_free(NULL);

    /* Pointers this library never returned, and handles of the other kind. */
    uint64_t junk[16] = {0};
    EXPECT_RC(keel_poll((struct keel_store *)(void *)junk), -EBADF);
    EXPECT_RC(keel_txn_mkcoll((struct keel_txn *)(void *)junk, 1), -EBADF);
    EXPECT_RC(keel_poll((struct keel_store *)(void *)t), -EBADF);
    EXPECT_RC(keel_txn_mkcoll((struct keel_txn *)(void *)s, 1), -EBADF);
    EXPECT_RC(keel_store_close((struct keel_store *)(void *)t), -EBADF);
    keel_txn_free((struct keel_txn *)(void *)s); /* ignored: the store lives on */
    keel_txn_free((struct keel_txn *)(void *)junk);
    EXPECT_RC(keel_poll(s), 0);

    /* Freed and closed handles. */
    keel_txn_free(t);
    keel_txn_free(t); /* double free: ignored */
    EXPECT_RC(keel_txn_mkcoll(t, 1), -EBADF);
    EXPECT_RC(keel_txn_len(t, &(size_t){0}), -EBADF);
    struct keel_txn *t2 = keel_txn_new();
    REQUIRE(t2 != NULL);
    EXPECT_RC(keel_txn_mkcoll(t2, 1), 0);
    EXPECT_RC(keel_store_close(s), 0);
    EXPECT_RC(keel_store_close(s), -EBADF);
    EXPECT_RC(keel_poll(s), -EBADF);
    EXPECT_RC(keel_submit(s, t2, NULL, NULL), -EBADF);
    EXPECT(txn_len(t2) == 1); /* not taken */
    size_t n = 0;
    char buf[8];
    EXPECT_RC(keel_read(s, 1, S("a"), 0, buf, sizeof buf, &n), -EBADF);
    struct keel_stats st;
    EXPECT_RC(keel_store_stats(s, &st, sizeof st), -EBADF);
    keel_txn_free(t2);
}

/* ---- builders: bad input -------------------------------------------------------------- */

static void test_builder_bad_input(void) {
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    char longname[KEEL_MAX_NAME_BYTES + 1];
    memset(longname, 'n', sizeof longname);
    static char longkey[KEEL_MAX_KEY_BYTES + 1];
    memset(longkey, 'k', sizeof longkey);
    static char bigvalue[KEEL_MAX_VALUE_BYTES + 1];
    char data[16] = {0};

    /* Names: NULL, empty, one byte too long (the longest allowed works). */
    EXPECT_RC(keel_txn_create(t, 1, NULL, 1), -EINVAL);
    EXPECT_RC(keel_txn_create(t, 1, "a", 0), -EINVAL);
    EXPECT_RC(keel_txn_create(t, 1, longname, sizeof longname), -ENAMETOOLONG);
    EXPECT_RC(keel_txn_remove(t, 1, longname, sizeof longname), -ENAMETOOLONG);
    EXPECT_RC(keel_txn_clone(t, 1, S("a"), longname, sizeof longname), -ENAMETOOLONG);
    EXPECT_RC(keel_txn_clone(t, 1, S("a"), NULL, 0), -EINVAL);
    EXPECT_RC(keel_txn_clone(t, 1, S("a"), S("a")), -EINVAL); /* onto itself */
    EXPECT(txn_len(t) == 0);
    EXPECT_RC(keel_txn_create(t, 1, longname, KEEL_MAX_NAME_BYTES), 0);
    EXPECT(txn_len(t) == 1);

    /* Data and ranges. */
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, NULL, 4), -EINVAL);
    EXPECT_RC(keel_txn_write(t, 1, S("a"), KEEL_MAX_OBJECT_BYTES, data, 1), -EFBIG);
    EXPECT_RC(keel_txn_write(t, 1, S("a"), UINT64_MAX, data, 1), -EFBIG);
    EXPECT_RC(keel_txn_zero(t, 1, S("a"), 1, KEEL_MAX_OBJECT_BYTES), -EFBIG);
    EXPECT_RC(keel_txn_zero(t, 1, S("a"), UINT64_MAX, 2), -EFBIG);
    EXPECT_RC(keel_txn_truncate(t, 1, S("a"), KEEL_MAX_OBJECT_BYTES + 1), -EFBIG);
    EXPECT_RC(keel_txn_clone_range(t, 1, S("a"), S("b"), KEEL_MAX_OBJECT_BYTES, 1, 0), -EFBIG);
    EXPECT_RC(keel_txn_clone_range(t, 1, S("a"), S("b"), 0, 1, KEEL_MAX_OBJECT_BYTES), -EFBIG);
    EXPECT_RC(keel_txn_acknowledge(t, 1, S("a"), 1, KEEL_MAX_OBJECT_BYTES), -EFBIG);
    EXPECT_RC(keel_txn_acknowledge(t, 1, NULL, 1, 0, 4096), -EINVAL);
    EXPECT_RC(keel_txn_acknowledge(t, 1, longname, sizeof longname, 0, 4096), -ENAMETOOLONG);
    EXPECT(txn_len(t) == 1);
    /* Zero lengths are allowed: an empty write creates, NULL data is fine with it. */
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, NULL, 0), 0);
    EXPECT_RC(keel_txn_zero(t, 1, S("a"), 0, 0), 0);
    EXPECT_RC(keel_txn_truncate(t, 1, S("a"), KEEL_MAX_OBJECT_BYTES), 0);
    EXPECT(txn_len(t) == 4);

    /* Keys and values. */
    EXPECT_RC(keel_txn_setattr(t, 1, S("a"), longkey, sizeof longkey, S("v")), -ENAMETOOLONG);
    EXPECT_RC(keel_txn_setattr(t, 1, S("a"), S("k"), bigvalue, sizeof bigvalue), -E2BIG);
    EXPECT_RC(keel_txn_setattr(t, 1, S("a"), NULL, 3, S("v")), -EINVAL);
    EXPECT_RC(keel_txn_setattr(t, 1, S("a"), S("k"), NULL, 3), -EINVAL);
    EXPECT_RC(keel_txn_rmattr(t, 1, S("a"), longkey, sizeof longkey), -ENAMETOOLONG);
    EXPECT_RC(keel_txn_omap_set(t, 1, S("a"), longkey, sizeof longkey, S("v")), -ENAMETOOLONG);
    EXPECT_RC(keel_txn_omap_set(t, 1, S("a"), S("k"), bigvalue, sizeof bigvalue), -E2BIG);
    EXPECT_RC(keel_txn_omap_rm(t, 1, S("a"), longkey, sizeof longkey), -ENAMETOOLONG);
    EXPECT_RC(keel_txn_omap_rm(t, 1, NULL, 1, S("k")), -EINVAL);
    EXPECT(txn_len(t) == 4);
    /* Empty keys and values, and the largest ones, are allowed. */
    EXPECT_RC(keel_txn_setattr(t, 1, S("a"), NULL, 0, NULL, 0), 0);
    EXPECT_RC(keel_txn_omap_set(t, 1, S("a"), longkey, KEEL_MAX_KEY_BYTES, bigvalue,
                                KEEL_MAX_VALUE_BYTES),
              0);
    EXPECT(txn_len(t) == 6);

    /* NULL out-parameter. */
    EXPECT_RC(keel_txn_len(t, NULL), -EINVAL);
    EXPECT_RC(keel_txn_len(NULL, &(size_t){0}), -EINVAL);
    keel_txn_free(t);
}

static void test_builder_limits(void) {
    /* Data: 16 MiB in all, then not one byte more. */
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    char *big = calloc(1, KEEL_MAX_TXN_DATA_BYTES);
    REQUIRE(big != NULL);
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, big, KEEL_MAX_TXN_DATA_BYTES - 1), 0);
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, big, 2), -E2BIG);
    EXPECT_RC(keel_txn_clone_range(t, 1, S("a"), S("b"), 0, 2, 0), -E2BIG);
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, big, 1), 0);
    EXPECT(txn_len(t) == 2);
    free(big);
    keel_txn_free(t);

    /* Ops: KEEL_MAX_TXN_OPS, then no more. */
    t = keel_txn_new();
    REQUIRE(t != NULL);
    int all_ok = 1;
    for (uint64_t i = 0; i < KEEL_MAX_TXN_OPS; i++) {
        all_ok &= keel_txn_mkcoll(t, i) == 0;
    }
    EXPECT(all_ok);
    EXPECT_RC(keel_txn_mkcoll(t, 99999), -E2BIG);
    EXPECT(txn_len(t) == KEEL_MAX_TXN_OPS);
    keel_txn_free(t);
}

/* ---- submit, poll, callbacks ---------------------------------------------------------- */

struct cb_log {
    int calls;
    int last_status;
    struct keel_store *store; /* for the re-entrant callbacks */
    struct keel_txn *txn;
    int inner_rc;
};

static void record(void *arg, int status) {
    struct cb_log *l = arg;
    l->calls++;
    l->last_status = status;
}

static int poll_until(struct keel_store *s, const int *calls, int want) {
    for (long i = 0; i < 10000000 && *calls < want; i++) {
        int rc = keel_poll(s);
        if (rc < 0) {
            return rc;
        }
    }
    return *calls >= want ? 0 : -ETIMEDOUT;
}

static void test_submit_async_and_poll(void) {
    struct keel_store *s = open_sim(KEEL_MODE_METADATA_ONLY);
    REQUIRE(s != NULL);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);

    /* An empty transaction is refused before queueing: the callback never runs. */
    struct cb_log log = {0};
    EXPECT_RC(keel_submit(s, t, record, &log), -EINVAL);

    EXPECT_RC(keel_txn_mkcoll(t, 5), 0);
    EXPECT_RC(keel_txn_write(t, 5, S("obj"), 0, S("async data")), 0);
    EXPECT_RC(keel_submit(s, t, record, &log), 0);
    EXPECT(txn_len(t) == 0); /* content taken, handle reusable */
    EXPECT(log.calls == 0);  /* nothing runs before a poll */
    EXPECT_RC(poll_until(s, &log.calls, 1), 0);
    EXPECT(log.calls == 1 && log.last_status == 0);

    /* A failing transaction reports through its callback and changes nothing. */
    EXPECT_RC(keel_txn_mkcoll(t, 5), 0); /* exists */
    EXPECT_RC(keel_submit(s, t, record, &log), 0);
    EXPECT_RC(poll_until(s, &log.calls, 2), 0);
    EXPECT(log.last_status == -EEXIST);

    /* Several in flight, a NULL callback among them. */
    struct cb_log many = {0};
    for (int i = 0; i < 10; i++) {
        char name[8];
        int n = snprintf(name, sizeof name, "m%d", i);
        EXPECT_RC(keel_txn_write(t, 5, name, (size_t)n, 0, name, (size_t)n), 0);
        EXPECT_RC(keel_submit(s, t, i == 3 ? NULL : record, &many), 0);
    }
    EXPECT_RC(poll_until(s, &many.calls, 9), 0);
    EXPECT(many.calls == 9 && many.last_status == 0);
    for (int i = 0; i < 1000; i++) {
        EXPECT(keel_poll(s) >= 0);
    }
    char buf[8];
    size_t n = 0;
    EXPECT_RC(keel_read(s, 5, S("m3"), 0, buf, sizeof buf, &n), 0);
    EXPECT(n == 2 && memcmp(buf, "m3", 2) == 0);

    keel_txn_free(t);
    EXPECT_RC(keel_store_close(s), 0);
}

static void test_eagain_keeps_the_txn(void) {
    struct keel_opts o;
    sim_opts(&o);
    o.max_inflight_txns = 2;
    struct keel_store *s = NULL;
    REQUIRE(keel_store_open(&o, &s) == 0);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    EXPECT_RC(keel_txn_mkcoll(t, 1), 0);
    EXPECT_RC(commit(s, t), 0);

    struct cb_log log = {0};
    for (int i = 0; i < 2; i++) {
        EXPECT_RC(keel_txn_create(t, 1, S("x")), 0);
        EXPECT_RC(keel_submit(s, t, record, &log), 0);
    }
    EXPECT_RC(keel_txn_create(t, 1, S("y")), 0);
    EXPECT_RC(keel_txn_create(t, 1, S("z")), 0);
    EXPECT_RC(keel_submit(s, t, record, &log), -EAGAIN);
    EXPECT(txn_len(t) == 2); /* still there */
    EXPECT_RC(poll_until(s, &log.calls, 2), 0);
    EXPECT_RC(keel_submit(s, t, record, &log), 0);
    EXPECT_RC(poll_until(s, &log.calls, 3), 0);
    struct keel_stat st;
    EXPECT_RC(keel_stat(s, 1, S("z"), &st), 0);
    keel_txn_free(t);
    EXPECT_RC(keel_store_close(s), 0);
}

/* A callback that submits (synchronously) on its own store, reads, and tries to close. */
static void reenter(void *arg, int status) {
    struct cb_log *l = arg;
    l->calls++;
    l->last_status = status;
    if (l->calls > 1) {
        return;
    }
    char buf[4];
    size_t n = 0;
    if (keel_txn_write(l->txn, 1, S("inner"), 0, S("in")) != 0 ||
        keel_submit_sync(l->store, l->txn) != 0 ||
        keel_read(l->store, 1, S("inner"), 0, buf, sizeof buf, &n) != 0 || n != 2) {
        l->inner_rc = -1;
        return;
    }
    l->inner_rc = keel_store_close(l->store); /* its own store, from its callback */
}

static void test_callbacks_reenter(void) {
    struct keel_store *s = open_sim(KEEL_MODE_FULL);
    REQUIRE(s != NULL);
    struct keel_txn *t = keel_txn_new();
    struct keel_txn *inner = keel_txn_new();
    REQUIRE(t != NULL && inner != NULL);
    EXPECT_RC(keel_txn_mkcoll(t, 1), 0);
    EXPECT_RC(commit(s, t), 0);

    struct cb_log log = {0};
    log.store = s;
    log.txn = inner;
    EXPECT_RC(keel_txn_create(t, 1, S("outer")), 0);
    EXPECT_RC(keel_submit(s, t, reenter, &log), 0);
    EXPECT_RC(poll_until(s, &log.calls, 1), 0);
    EXPECT(log.last_status == 0);
    EXPECT_RC(log.inner_rc, -EBUSY);
    struct keel_stat st;
    EXPECT_RC(keel_stat(s, 1, S("inner"), &st), 0);
    EXPECT(st.size == 2);

    keel_txn_free(t);
    keel_txn_free(inner);
    EXPECT_RC(keel_store_close(s), 0);
}

/* Transactions still in flight at close get their callbacks before close returns. */
static void test_close_runs_callbacks(void) {
    struct keel_store *s = open_sim(KEEL_MODE_FULL);
    REQUIRE(s != NULL);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    struct cb_log log = {0};
    EXPECT_RC(keel_txn_mkcoll(t, 1), 0);
    EXPECT_RC(keel_submit(s, t, record, &log), 0);
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, S("x")), 0);
    EXPECT_RC(keel_submit(s, t, record, &log), 0);
    EXPECT(log.calls == 0);
    EXPECT_RC(keel_store_close(s), 0);
    EXPECT(log.calls == 2 && log.last_status == 0);
    keel_txn_free(t);
}

/* ---- every builder, read, stat, getattr, omap_get, stats ------------------------------ */

static void test_every_builder(void) {
    struct keel_store *s = open_sim(KEEL_MODE_METADATA_ONLY);
    REQUIRE(s != NULL);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    char buf[64];
    size_t n = 0;
    struct keel_stat st;

    EXPECT_RC(keel_txn_mkcoll(t, 1), 0);
    EXPECT_RC(keel_txn_mkcoll(t, 2), 0);
    EXPECT_RC(keel_txn_create(t, 1, S("empty")), 0);
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, S("0123456789")), 0);
    EXPECT_RC(keel_txn_setattr(t, 1, S("a"), S("color"), S("blue")), 0);
    EXPECT_RC(keel_txn_setattr(t, 1, S("a"), S("gone"), S("soon")), 0);
    EXPECT_RC(keel_txn_omap_set(t, 1, S("a"), S("k1"), S("v1")), 0);
    EXPECT_RC(keel_txn_omap_set(t, 1, S("a"), S("k2"), S("v2")), 0);
    EXPECT(txn_len(t) == 8);
    EXPECT_RC(commit(s, t), 0);

    EXPECT_RC(keel_stat(s, 1, S("empty"), &st), 0);
    EXPECT(st.size == 0 && st.attrs == 0 && st.omap_keys == 0);
    EXPECT_RC(keel_stat(s, 1, S("a"), &st), 0);
    EXPECT(st.size == 10 && st.attrs == 2 && st.omap_keys == 2 && st.allocated_bytes == 4096);

    /* zero, truncate, rmattr, omap_rm, clone, clone_range, full journal. */
    EXPECT_RC(keel_txn_zero(t, 1, S("a"), 2, 3), 0);
    EXPECT_RC(keel_txn_rmattr(t, 1, S("a"), S("gone")), 0);
    EXPECT_RC(keel_txn_omap_rm(t, 1, S("a"), S("k1")), 0);
    EXPECT_RC(keel_txn_set_full_journal(t, true), 0);
    EXPECT_RC(commit(s, t), 0);
    EXPECT_RC(keel_read(s, 1, S("a"), 0, buf, sizeof buf, &n), 0);
    EXPECT(n == 10 && memcmp(buf, "01\0\0\0" "56789", 10) == 0);

    EXPECT_RC(keel_txn_clone(t, 1, S("a"), S("copy")), 0);
    EXPECT_RC(keel_txn_clone_range(t, 1, S("a"), S("part"), 5, 5, 100), 0);
    EXPECT_RC(keel_txn_truncate(t, 1, S("a"), 4), 0);
    EXPECT_RC(commit(s, t), 0);
    EXPECT_RC(keel_read(s, 1, S("copy"), 0, buf, sizeof buf, &n), 0);
    EXPECT(n == 10 && memcmp(buf, "01\0\0\0" "56789", 10) == 0);
    EXPECT_RC(keel_read(s, 1, S("part"), 100, buf, sizeof buf, &n), 0);
    EXPECT(n == 5 && memcmp(buf, "56789", 5) == 0);
    EXPECT_RC(keel_read(s, 1, S("part"), 0, buf, 4, &n), 0); /* a hole reads as zeroes */
    EXPECT(n == 4 && memcmp(buf, "\0\0\0\0", 4) == 0);
    EXPECT_RC(keel_stat(s, 1, S("a"), &st), 0);
    EXPECT(st.size == 4 && st.attrs == 1 && st.omap_keys == 1);
    EXPECT_RC(keel_stat(s, 1, S("copy"), &st), 0);
    EXPECT(st.size == 10 && st.attrs == 1 && st.omap_keys == 1);

    size_t vlen = 0;
    EXPECT_RC(keel_getattr(s, 1, S("copy"), S("color"), buf, sizeof buf, &vlen), 0);
    EXPECT(vlen == 4 && memcmp(buf, "blue", 4) == 0);
    EXPECT_RC(keel_omap_get(s, 1, S("copy"), S("k2"), buf, sizeof buf, &vlen), 0);
    EXPECT(vlen == 2 && memcmp(buf, "v2", 2) == 0);

    /* remove, rmcoll. */
    EXPECT_RC(keel_txn_remove(t, 1, S("part")), 0);
    EXPECT_RC(keel_txn_rmcoll(t, 2), 0);
    EXPECT_RC(commit(s, t), 0);
    EXPECT_RC(keel_stat(s, 1, S("part"), &st), -ENOENT);
    EXPECT_RC(keel_stat(s, 2, S("a"), &st), -ENOENT);

    /* Failures reported by submit_sync change nothing. */
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, S("XXXX")), 0);
    EXPECT_RC(keel_txn_rmcoll(t, 1), 0); /* not empty: the whole txn fails */
    EXPECT_RC(commit(s, t), -ENOTEMPTY);
    EXPECT_RC(keel_read(s, 1, S("a"), 0, buf, sizeof buf, &n), 0);
    EXPECT(n == 4 && memcmp(buf, "01\0\0", 4) == 0);
    EXPECT_RC(keel_txn_write(t, 9, S("a"), 0, S("x")), 0);
    EXPECT_RC(commit(s, t), -ENOENT); /* no collection 9 */

    keel_txn_free(t);
    EXPECT_RC(keel_store_close(s), 0);
}

static void test_reads_bad_input(void) {
    struct keel_store *s = open_sim(KEEL_MODE_FULL);
    REQUIRE(s != NULL);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    EXPECT_RC(keel_txn_mkcoll(t, 1), 0);
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, S("hello")), 0);
    EXPECT_RC(keel_txn_setattr(t, 1, S("a"), S("k"), S("value")), 0);
    EXPECT_RC(keel_txn_omap_set(t, 1, S("a"), S("o"), S("omapval")), 0);
    EXPECT_RC(commit(s, t), 0);
    keel_txn_free(t);

    char buf[16];
    memset(buf, '#', sizeof buf);
    size_t n = 77;
    char longname[KEEL_MAX_NAME_BYTES + 1];
    memset(longname, 'n', sizeof longname);

    EXPECT_RC(keel_read(s, 1, NULL, 1, 0, buf, sizeof buf, &n), -EINVAL);
    EXPECT_RC(keel_read(s, 1, "a", 0, 0, buf, sizeof buf, &n), -EINVAL);
    EXPECT_RC(keel_read(s, 1, longname, sizeof longname, 0, buf, sizeof buf, &n), -ENAMETOOLONG);
    EXPECT_RC(keel_read(s, 1, S("a"), 0, NULL, 4, &n), -EINVAL);
    EXPECT_RC(keel_read(s, 1, S("a"), 0, buf, sizeof buf, NULL), -EINVAL);
    EXPECT_RC(keel_read(s, 1, S("a"), KEEL_MAX_OBJECT_BYTES + 1, buf, sizeof buf, &n), -EFBIG);
    EXPECT_RC(keel_read(s, 1, S("a"), 6, buf, sizeof buf, &n), -ERANGE);
    EXPECT_RC(keel_read(s, 1, S("nope"), 0, buf, sizeof buf, &n), -ENOENT);
    EXPECT_RC(keel_read(s, 2, S("a"), 0, buf, sizeof buf, &n), -ENOENT);
    EXPECT(n == 77 && buf[0] == '#'); /* untouched */
    /* Zero lengths: nothing to read is not an error. */
    EXPECT_RC(keel_read(s, 1, S("a"), 0, NULL, 0, &n), 0);
    EXPECT(n == 0);
    EXPECT_RC(keel_read(s, 1, S("a"), 5, buf, sizeof buf, &n), 0); /* at the end */
    EXPECT(n == 0);
    EXPECT_RC(keel_read(s, 1, S("a"), 1, buf, 2, &n), 0);
    EXPECT(n == 2 && memcmp(buf, "el", 2) == 0);

    struct keel_stat st;
    EXPECT_RC(keel_stat(s, 1, S("a"), NULL), -EINVAL);
    EXPECT_RC(keel_stat(s, 1, NULL, 0, &st), -EINVAL);
    EXPECT_RC(keel_stat(s, 1, longname, sizeof longname, &st), -ENAMETOOLONG);
    EXPECT_RC(keel_stat(NULL, 1, S("a"), &st), -EINVAL);

    /* getattr / omap_get: sizing, too small, missing, NULLs. */
    size_t vlen = 0;
    EXPECT_RC(keel_getattr(s, 1, S("a"), S("k"), NULL, 0, &vlen), -ERANGE);
    EXPECT(vlen == 5);
    memset(buf, '#', sizeof buf);
    EXPECT_RC(keel_getattr(s, 1, S("a"), S("k"), buf, 4, &vlen), -ERANGE);
    EXPECT(vlen == 5 && buf[0] == '#');
    EXPECT_RC(keel_getattr(s, 1, S("a"), S("k"), buf, 5, &vlen), 0);
    EXPECT(vlen == 5 && memcmp(buf, "value", 5) == 0);
    EXPECT_RC(keel_getattr(s, 1, S("a"), S("missing"), buf, sizeof buf, &vlen), -ENOENT);
    EXPECT_RC(keel_getattr(s, 1, S("a"), S("k"), buf, sizeof buf, NULL), -EINVAL);
    EXPECT_RC(keel_getattr(s, 1, S("a"), S("k"), NULL, 8, &vlen), -EINVAL);
    EXPECT_RC(keel_getattr(s, 1, S("a"), NULL, 1, buf, sizeof buf, &vlen), -EINVAL);
    EXPECT_RC(keel_omap_get(s, 1, S("a"), S("o"), buf, 3, &vlen), -ERANGE);
    EXPECT(vlen == 7);
    EXPECT_RC(keel_omap_get(s, 1, S("a"), S("o"), buf, sizeof buf, &vlen), 0);
    EXPECT(vlen == 7 && memcmp(buf, "omapval", 7) == 0);
    EXPECT_RC(keel_omap_get(s, 1, S("a"), S("k"), buf, sizeof buf, &vlen), -ENOENT);
    EXPECT_RC(keel_omap_get(s, 1, S("zz"), S("o"), buf, sizeof buf, &vlen), -ENOENT);

    EXPECT_RC(keel_store_close(s), 0);
}

static void test_stats(void) {
    struct keel_store *s = open_sim(KEEL_MODE_METADATA_ONLY);
    REQUIRE(s != NULL);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    EXPECT_RC(keel_txn_mkcoll(t, 1), 0);
    EXPECT_RC(commit(s, t), 0);
    static char data[8192];
    EXPECT_RC(keel_txn_write(t, 1, S("a"), 0, data, sizeof data), 0);
    EXPECT_RC(commit(s, t), 0);

    struct keel_stats st;
    memset(&st, 0xff, sizeof st);
    EXPECT_RC(keel_store_stats(s, NULL, sizeof st), -EINVAL);
    EXPECT_RC(keel_store_stats(s, &st, 80), -EINVAL); /* below version 1 (88 bytes) */
    EXPECT_RC(keel_store_stats(s, &st, KEEL_STRUCT_MAX_BYTES + 1), -EINVAL);
    EXPECT(st.txns_committed == UINT64_MAX); /* untouched */
    EXPECT_RC(keel_store_stats(s, &st, sizeof st), 0);
    EXPECT(st.txns_committed == 2 && st.txns_failed == 0);
    EXPECT(st.client_bytes == sizeof data);
    EXPECT(st.device_write_bytes >= sizeof data && st.device_write_cmds >= 2);
    EXPECT(st.journal_batches >= 2 && st.journal_batch_entries == 2);
    EXPECT(st.scrub_pages == 0 && st.scrub_passes == 0 && st.scrub_errors == 0);

    /* An older header's version 1: 88 bytes written, the scrub counters past it not. */
    memset(&st, 0xff, sizeof st);
    EXPECT_RC(keel_store_stats(s, &st, 88), 0);
    EXPECT(st.device_read_cmds != UINT64_MAX && st.scrub_pages == UINT64_MAX);

    /* A newer header's larger struct: our counters, then zeroes. */
    union {
        struct keel_stats stats;
        unsigned char bytes[sizeof(struct keel_stats) + 24];
    } newer;
    memset(&newer, 0xff, sizeof newer);
    EXPECT_RC(keel_store_stats(s, &newer.stats, sizeof newer), 0);
    EXPECT(newer.stats.txns_committed == 2);
    int zero = 1;
    for (size_t i = sizeof(struct keel_stats); i < sizeof newer; i++) {
        zero &= newer.bytes[i] == 0;
    }
    EXPECT(zero);
    keel_txn_free(t);
    EXPECT_RC(keel_store_close(s), 0);
}

static void test_strerror(void) {
    EXPECT(strcmp(keel_strerror(0), "success") == 0);
    int codes[] = {EINVAL, EBADF,   EBUSY,     ENOENT, EEXIST,  ENOTEMPTY, ENAMETOOLONG,
                   E2BIG,  EFBIG,   ERANGE,    ENOSPC, EAGAIN,  EROFS,     EUCLEAN,
                   ENOTSUP, EXDEV,  ESHUTDOWN, EIO,    EDEADLK, EBADMSG,   EILSEQ};
    const char *unknown = keel_strerror(-123456);
    EXPECT(unknown != NULL && *unknown != '\0');
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *m = keel_strerror(-codes[i]);
        EXPECT(m != NULL && *m != '\0' && m != unknown);
        EXPECT(m == keel_strerror(codes[i]));
        for (size_t j = 0; j < i; j++) {
            EXPECT(strcmp(m, keel_strerror(-codes[j])) != 0);
        }
    }
    EXPECT(keel_strerror(INT32_MIN) == unknown);
}

/* ---- persistence ---------------------------------------------------------------------- */

static void reopen_keeps_data(uint32_t dev_kind, uint32_t mode) {
    char path[256];
    temp_path(path, sizeof path);
    struct keel_opts o;
    keel_opts_init(&o, sizeof o);
    o.dev_kind = dev_kind;
    o.mode = mode;
    o.path = path;
    o.size_bytes = 32 * MIB;
    o.create = true;
    struct keel_store *s = NULL;
    int rc = keel_store_open(&o, &s);
    if (dev_kind == KEEL_DEV_URING && (rc == -EPERM || rc == -ENOSYS)) {
        printf("     (skipped: io_uring refused here: %s)\n", keel_strerror(rc));
        unlink(path);
        return;
    }
    REQUIRE(rc == 0);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    static char data[10000];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (char)(i * 7 % 251);
    }
    EXPECT_RC(keel_txn_mkcoll(t, 3), 0);
    EXPECT_RC(keel_txn_write(t, 3, S("persist"), 0, data, sizeof data), 0);
    EXPECT_RC(keel_txn_setattr(t, 3, S("persist"), S("v"), S("1")), 0);
    EXPECT_RC(keel_txn_omap_set(t, 3, S("persist"), S("ok"), S("yes")), 0);
    EXPECT_RC(commit(s, t), 0);
    /* One more, left to close to finish (asynchronous, not polled). */
    struct cb_log log = {0};
    EXPECT_RC(keel_txn_write(t, 3, S("late"), 0, S("late")), 0);
    EXPECT_RC(keel_submit(s, t, record, &log), 0);
    EXPECT_RC(keel_store_close(s), 0);
    EXPECT(log.calls == 1 && log.last_status == 0);

    o.create = false;
    o.mode = KEEL_MODE_FULL; /* ignored on open: the store keeps its own */
    s = NULL;
    REQUIRE(keel_store_open(&o, &s) == 0);
    static char back[12000];
    size_t n = 0;
    EXPECT_RC(keel_read(s, 3, S("persist"), 0, back, sizeof back, &n), 0);
    EXPECT(n == sizeof data && memcmp(back, data, sizeof data) == 0);
    EXPECT_RC(keel_read(s, 3, S("late"), 0, back, sizeof back, &n), 0);
    EXPECT(n == 4 && memcmp(back, "late", 4) == 0);
    size_t vlen = 0;
    EXPECT_RC(keel_getattr(s, 3, S("persist"), S("v"), back, sizeof back, &vlen), 0);
    EXPECT(vlen == 1 && back[0] == '1');
    EXPECT_RC(keel_omap_get(s, 3, S("persist"), S("ok"), back, sizeof back, &vlen), 0);
    EXPECT(vlen == 3 && memcmp(back, "yes", 3) == 0);
    keel_txn_free(t);
    EXPECT_RC(keel_store_close(s), 0);
    unlink(path);
}

static void test_reopen_psync_full(void) { reopen_keeps_data(KEEL_DEV_PSYNC, KEEL_MODE_FULL); }

static void test_reopen_psync_metadata_only(void) {
    reopen_keeps_data(KEEL_DEV_PSYNC, KEEL_MODE_METADATA_ONLY);
}

static void test_reopen_uring(void) { reopen_keeps_data(KEEL_DEV_URING, KEEL_MODE_FULL); }

/* ---- scrub ---------------------------------------------------------------------------- */

#define SCRUB_COLL 9
#define PAGE 4096u

/* Pages of pseudo-random bytes (an xorshift stream): no page of them occurs twice, nor
 * anywhere else in a store. */
static void noise(unsigned char *buf, size_t len, uint64_t seed) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)(x >> 24);
    }
}

/* Flips a bit of byte `byte` of the one 4 KiB-aligned page of the file at `path` that
 * holds `page`. Returns how many pages matched (the flip is made only when exactly one
 * did). */
static int flip_in_file(const char *path, const unsigned char *page, size_t byte) {
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        return -1;
    }
    static unsigned char buf[PAGE];
    int found = 0;
    off_t at = -1;
    for (off_t off = 0; pread(fd, buf, PAGE, off) == (ssize_t)PAGE; off += PAGE) {
        if (memcmp(buf, page, PAGE) == 0) {
            found++;
            at = off;
        }
    }
    if (found == 1) {
        unsigned char b = page[byte] ^ 0x10;
        if (pwrite(fd, &b, 1, at + (off_t)byte) != 1 || fsync(fd) != 0) {
            found = -1;
        }
    }
    close(fd);
    return found;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A full pass over the store: one corrupt range, page 1 of "rot", and nothing else. */
static void expect_one_corrupt_page(struct keel_store *s, uint64_t pages) {
    struct keel_scrub_report r;
    struct keel_bad_range ranges[4];
    memset(&r, 0xff, sizeof r);
    memset(ranges, 0xff, sizeof ranges);
    r.report_size = sizeof r;
    EXPECT_RC(keel_scrub(s, &r, ranges, 4), 0);
    EXPECT(r.report_size == sizeof r);
    EXPECT(r.pages == pages && r.clean == pages - 1 && r.skipped == 0);
    EXPECT(r.corrupt_pages == 1 && r.corrupt_ranges == 1);
    EXPECT(r.torn_pages == 0 && r.torn_ranges == 0);
    EXPECT(ranges[0].coll == SCRUB_COLL && ranges[0].kind == KEEL_BAD_CORRUPT);
    EXPECT(ranges[0].offset == PAGE && ranges[0].len == PAGE);
    EXPECT(ranges[0].name_len == 3 && memcmp(ranges[0].name, "rot", 4) == 0);
    EXPECT(ranges[1].coll == UINT64_MAX); /* one entry written */
}

/* A store on a file; a bit of one page of an object flipped in the file while the store is
 * closed; keel_scrub names the range (polled, then on a reactor, which also finds it in
 * the background); reads of it fail with -EBADMSG; acknowledging does not hide
 * corruption; rewriting the page heals it. */
static void test_scrub_finds_a_flipped_byte(void) {
    char path[256];
    temp_path(path, sizeof path);
    struct keel_opts o;
    keel_opts_init(&o, sizeof o);
    o.dev_kind = KEEL_DEV_PSYNC;
    o.mode = KEEL_MODE_METADATA_ONLY; /* data is written once, in place */
    o.path = path;
    o.size_bytes = 32 * MIB;
    o.create = true;
    struct keel_store *s = NULL;
    REQUIRE(keel_store_open(&o, &s) == 0);
    static unsigned char rot[3 * PAGE], fine[2 * PAGE + 10], back[3 * PAGE];
    noise(rot, sizeof rot, 1);
    noise(fine, sizeof fine, 2);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    EXPECT_RC(keel_txn_mkcoll(t, SCRUB_COLL), 0);
    EXPECT_RC(keel_txn_write(t, SCRUB_COLL, S("rot"), 0, rot, sizeof rot), 0);
    EXPECT_RC(keel_txn_write(t, SCRUB_COLL, S("fine"), 0, fine, sizeof fine), 0);
    EXPECT_RC(commit(s, t), 0);
    const uint64_t pages = 3 + 3;

    /* Clean: nothing found, and counting without a range buffer works. */
    struct keel_scrub_report r;
    memset(&r, 0, sizeof r);
    r.report_size = sizeof r;
    EXPECT_RC(keel_scrub(s, &r, NULL, 0), 0);
    EXPECT(r.pages == pages && r.clean == pages && r.corrupt_ranges == 0);
    EXPECT_RC(keel_store_close(s), 0);

    REQUIRE(flip_in_file(path, rot + PAGE, 100) == 1);
    o.create = false;
    s = NULL;
    REQUIRE(keel_store_open(&o, &s) == 0);

    /* Bad arguments change nothing. */
    EXPECT_RC(keel_scrub(s, NULL, NULL, 0), -EINVAL);
    r.report_size = 8; /* below version 1 */
    EXPECT_RC(keel_scrub(s, &r, NULL, 0), -EINVAL);
    r.report_size = sizeof r;
    EXPECT_RC(keel_scrub(s, &r, NULL, 1), -EINVAL);
    EXPECT_RC(keel_scrub(NULL, &r, NULL, 0), -EINVAL);

    expect_one_corrupt_page(s, pages);
    size_t n = 0;
    EXPECT_RC(keel_read(s, SCRUB_COLL, S("rot"), 0, back, sizeof back, &n), -EBADMSG);
    EXPECT_RC(keel_read(s, SCRUB_COLL, S("rot"), 2 * PAGE - 1, back, 2, &n), -EBADMSG);
    EXPECT_RC(keel_read(s, SCRUB_COLL, S("rot"), 0, back, PAGE, &n), 0);
    EXPECT(n == PAGE && memcmp(back, rot, PAGE) == 0);
    EXPECT_RC(keel_read(s, SCRUB_COLL, S("fine"), 0, back, sizeof back, &n), 0);
    EXPECT(n == sizeof fine && memcmp(back, fine, sizeof fine) == 0);
    /* Acknowledging takes torn pages as they are, never corrupt ones. */
    EXPECT_RC(keel_txn_acknowledge(t, SCRUB_COLL, S("rot"), 0, sizeof rot), 0);
    EXPECT_RC(commit(s, t), 0);
    EXPECT_RC(keel_read(s, SCRUB_COLL, S("rot"), PAGE, back, PAGE, &n), -EBADMSG);
    EXPECT_RC(keel_txn_acknowledge(t, SCRUB_COLL, S("nope"), 0, PAGE), 0);
    EXPECT_RC(commit(s, t), -ENOENT);
    EXPECT_RC(keel_store_close(s), 0);

    /* On a reactor, with a background scrub: the same range, and the counters. */
    uint32_t core0[1] = {0};
    o.cores = core0;
    o.ncores = 1;
    o.reactor_sleep_us_max = 200;
    o.scrub_pages_per_sec = 1000;
    s = NULL;
    REQUIRE(keel_store_open(&o, &s) == 0);
    expect_one_corrupt_page(s, pages);
    struct keel_stats st;
    memset(&st, 0, sizeof st);
    for (int i = 0; i < 1000 && st.scrub_passes == 0; i++) { /* 10 s at most */
        sleep_ms(10);
        EXPECT_RC(keel_store_stats(s, &st, sizeof st), 0);
    }
    EXPECT(st.scrub_passes >= 1 && st.scrub_corrupt_pages >= 1 && st.scrub_torn_pages == 0);
    EXPECT(st.scrub_pages >= pages && st.scrub_errors == 0);
    EXPECT_RC(keel_read(s, SCRUB_COLL, S("rot"), 0, back, sizeof back, &n), -EBADMSG);

    /* Rewriting the page heals it. */
    EXPECT_RC(keel_txn_write(t, SCRUB_COLL, S("rot"), PAGE, rot + PAGE, PAGE), 0);
    EXPECT_RC(keel_submit_sync(s, t), 0);
    EXPECT_RC(keel_read(s, SCRUB_COLL, S("rot"), 0, back, sizeof back, &n), 0);
    EXPECT(n == sizeof rot && memcmp(back, rot, sizeof rot) == 0);
    memset(&r, 0, sizeof r);
    r.report_size = sizeof r;
    EXPECT_RC(keel_scrub(s, &r, NULL, 0), 0);
    EXPECT(r.pages == pages && r.clean == pages && r.corrupt_ranges == 0);
    keel_txn_free(t);
    EXPECT_RC(keel_store_close(s), 0);
    unlink(path);
}

/* Counts results on the reactor threads. */
struct reactor_log {
    atomic_int ok;
    atomic_int failed;
};

static void record_on_reactor(void *arg, int status) {
    struct reactor_log *l = arg;
    if (status == 0) {
        atomic_fetch_add(&l->ok, 1);
    } else {
        atomic_fetch_add(&l->failed, 1);
    }
}

/* A core list runs reactor threads: callbacks run there, keel_poll has nothing to do,
 * close runs every callback before it returns. */
static void test_reactors(void) {
    uint32_t core0[1] = {0};
    struct keel_opts o;
    sim_opts(&o);
    o.mode = KEEL_MODE_METADATA_ONLY;
    o.cores = core0;
    o.ncores = 1;
    o.reactor_sleep_us_max = 200; /* valgrind runs one thread at a time: do not spin */
    struct keel_store *s = NULL;
    REQUIRE(keel_store_open(&o, &s) == 0);
    struct keel_txn *t = keel_txn_new();
    REQUIRE(t != NULL);
    EXPECT_RC(keel_txn_mkcoll(t, 7), 0);
    EXPECT_RC(keel_submit_sync(s, t), 0);
    struct reactor_log log;
    atomic_init(&log.ok, 0);
    atomic_init(&log.failed, 0);
    for (int i = 0; i < 50; i++) {
        char name[8];
        int n = snprintf(name, sizeof name, "r%d", i);
        EXPECT_RC(keel_txn_write(t, 7, name, (size_t)n, 0, name, (size_t)n), 0);
        EXPECT_RC(keel_submit(s, t, record_on_reactor, &log), 0);
    }
    EXPECT_RC(keel_txn_mkcoll(t, 7), 0); /* exists: fails through its callback */
    EXPECT_RC(keel_submit(s, t, record_on_reactor, &log), 0);
    EXPECT(keel_poll(s) == 0);
    EXPECT_RC(keel_txn_write(t, 7, S("sync"), 0, S("after")), 0);
    EXPECT_RC(keel_submit_sync(s, t), 0);
    char buf[8];
    size_t n = 0;
    EXPECT_RC(keel_read(s, 7, S("sync"), 0, buf, sizeof buf, &n), 0);
    EXPECT(n == 5 && memcmp(buf, "after", 5) == 0);
    struct keel_stat st;
    EXPECT_RC(keel_stat(s, 7, S("sync"), &st), 0);
    EXPECT(st.size == 5);
    keel_txn_free(t);
    EXPECT_RC(keel_store_close(s), 0);
    EXPECT(atomic_load(&log.ok) == 50 && atomic_load(&log.failed) == 1);
}

/* Volumes on a store with reactors: create, open, write across objects, read back,
 * zeroes, trim, flush, the store refusing to close while a volume is open, remove. */
static void test_volumes(void) {
    uint32_t core0[1] = {0};
    struct keel_opts o;
    sim_opts(&o);
    o.mode = KEEL_MODE_METADATA_ONLY;
    o.cores = core0;
    o.ncores = 1;
    o.reactor_sleep_us_max = 200;
    struct keel_store *s = NULL;
    REQUIRE(keel_store_open(&o, &s) == 0);
    EXPECT_RC(keel_volume_create(s, S("disk"), MIB, 16384, KEEL_MODE_METADATA_ONLY), 0);
    EXPECT_RC(keel_volume_create(s, S("disk"), MIB, 0, KEEL_MODE_METADATA_ONLY), -EEXIST);
    EXPECT_RC(keel_volume_create(s, S("odd"), 1000, 0, KEEL_MODE_FULL), -EINVAL);
    struct keel_volume *v = NULL;
    uint64_t size = 0;
    EXPECT_RC(keel_volume_open(s, S("nope"), &v, &size), -ENOENT);
    REQUIRE(keel_volume_open(s, S("disk"), &v, &size) == 0);
    EXPECT(size == MIB);
    static unsigned char buf[40000], back[40000];
    for (size_t i = 0; i < sizeof buf; i++) {
        buf[i] = (unsigned char)(i % 251);
    }
    EXPECT_RC(keel_volume_write(v, 10000, buf, sizeof buf), 0);
    EXPECT_RC(keel_volume_read(v, 10000, back, sizeof back), 0);
    EXPECT(memcmp(buf, back, sizeof buf) == 0);
    EXPECT_RC(keel_volume_write_zeroes(v, 20000, 1000), 0);
    EXPECT_RC(keel_volume_trim(v, 32768, 16384), 0);
    EXPECT_RC(keel_volume_flush(v), 0);
    EXPECT_RC(keel_volume_read(v, 20000, back, 1000), 0);
    EXPECT(back[0] == 0 && back[999] == 0);
    EXPECT_RC(keel_volume_write(v, MIB - 1, buf, 2), -EINVAL);
    EXPECT_RC(keel_store_close(s), -EBUSY);
    EXPECT_RC(keel_volume_close(v), 0);
    EXPECT_RC(keel_volume_remove(s, S("disk")), 0);
    EXPECT_RC(keel_store_close(s), 0);
}

int main(void) {
    RUN(test_opts_init);
    RUN(test_open_null_and_sizes);
    RUN(test_open_bad_fields);
    RUN(test_open_files);
    RUN(test_opts_size_versions);
    RUN(test_stale_and_foreign_handles);
    RUN(test_builder_bad_input);
    RUN(test_builder_limits);
    RUN(test_submit_async_and_poll);
    RUN(test_eagain_keeps_the_txn);
    RUN(test_callbacks_reenter);
    RUN(test_close_runs_callbacks);
    RUN(test_every_builder);
    RUN(test_reads_bad_input);
    RUN(test_stats);
    RUN(test_strerror);
    RUN(test_reopen_psync_full);
    RUN(test_reopen_psync_metadata_only);
    RUN(test_reopen_uring);
    RUN(test_scrub_finds_a_flipped_byte);
    RUN(test_reactors);
    RUN(test_volumes);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

/*
 * async.c: many transactions in flight, completed through callbacks and keel_poll.
 *
 * Submits COUNT one-write transactions without waiting, each with a callback that counts
 * it; when max_inflight_txns transactions are waiting, keel_submit says -EAGAIN and the
 * program polls before submitting that transaction again (keel_submit left it intact).
 * Then polls until every callback has run, reads a few objects back, prints the store's
 * counters.
 *
 *   async [COUNT]    COUNT transactions (default 1000) on the simulated device
 *
 * Build: cc -std=c11 async.c $(pkg-config --cflags --libs keel)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel.h>

#define CHECK(call)                                                                      \
    do {                                                                                 \
        int rc_ = (call);                                                                \
        if (rc_ < 0) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s (%d)\n", __FILE__, __LINE__, #call,           \
                    keel_strerror(rc_), rc_);                                            \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

/* What the callbacks share with main: the caller owns it, the library only passes it. */
struct progress {
    unsigned done;
    unsigned failed;
};

static void on_done(void *arg, int status) {
    struct progress *p = arg;
    p->done++;
    if (status != 0) {
        p->failed++;
        fprintf(stderr, "transaction failed: %s\n", keel_strerror(status));
    }
}

int main(int argc, char **argv) {
    unsigned count = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 1000;

    struct keel_opts opts;
    keel_opts_init(&opts, sizeof opts);
    opts.dev_kind = KEEL_DEV_SIM;
    opts.size_bytes = 64u << 20;
    opts.create = true;
    opts.max_inflight_txns = 64;

    struct keel_store *store = NULL;
    CHECK(keel_store_open(&opts, &store));
    struct keel_txn *txn = keel_txn_new();
    if (txn == NULL) {
        return 1;
    }
    CHECK(keel_txn_mkcoll(txn, 7));
    CHECK(keel_submit_sync(store, txn));

    struct progress progress = {0, 0};
    unsigned again = 0;
    char name[32];
    char data[512];
    for (unsigned i = 0; i < count; i++) {
        int n = snprintf(name, sizeof name, "obj-%u", i);
        memset(data, 'a' + (int)(i % 26), sizeof data);
        CHECK(keel_txn_write(txn, 7, name, (size_t)n, 0, data, sizeof data));
        int rc;
        while ((rc = keel_submit(store, txn, on_done, &progress)) == -EAGAIN) {
            again++;
            CHECK(keel_poll(store)); /* runs callbacks, making room */
        }
        CHECK(rc);
    }
    while (progress.done < count) {
        CHECK(keel_poll(store));
    }
    printf("%u transactions done, %u failed, %u submits waited for room\n", progress.done,
           progress.failed, again);

    for (unsigned i = 0; i < count; i += count / 4 + 1) {
        int n = snprintf(name, sizeof name, "obj-%u", i);
        size_t got = 0;
        CHECK(keel_read(store, 7, name, (size_t)n, 0, data, sizeof data, &got));
        if (got != sizeof data || data[0] != 'a' + (int)(i % 26)) {
            fprintf(stderr, "%s reads back wrong\n", name);
            return 1;
        }
    }

    struct keel_stats stats;
    CHECK(keel_store_stats(store, &stats, sizeof stats));
    printf("committed %llu, client bytes %llu, device writes %llu (%llu bytes), "
           "batches %llu of %llu entries, flushes %llu, checkpoints %llu\n",
           (unsigned long long)stats.txns_committed, (unsigned long long)stats.client_bytes,
           (unsigned long long)stats.device_write_cmds,
           (unsigned long long)stats.device_write_bytes,
           (unsigned long long)stats.journal_batches,
           (unsigned long long)stats.journal_batch_entries,
           (unsigned long long)stats.device_flush_cmds, (unsigned long long)stats.checkpoints);

    keel_txn_free(txn);
    CHECK(keel_store_close(store));
    if (progress.failed != 0) {
        return 1;
    }
    printf("ok\n");
    return 0;
}

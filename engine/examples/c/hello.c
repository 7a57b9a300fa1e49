/*
 * hello.c: the smallest Keel program. Creates a store, writes an object with an attribute
 * in one transaction, reads both back, closes; on a file, opens the store again and reads
 * the object once more.
 *
 *   hello            a store on the simulated device (memory; gone at exit)
 *   hello FILE       a store on FILE through psync (created or extended to 64 MiB,
 *                    formatted: whatever FILE held is lost)
 *
 * Build: cc -std=c11 hello.c $(pkg-config --cflags --libs keel)
 */
#include <errno.h>
#include <stdio.h>
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

static const char NAME[] = "greeting";
static const char TEXT[] = "hello, keel";

/* Reads the object back and checks it. */
static int read_back(struct keel_store *store) {
    char buf[64] = {0};
    size_t n = 0;
    CHECK(keel_read(store, 1, NAME, strlen(NAME), 0, buf, sizeof buf, &n));
    printf("read %zu bytes: \"%.*s\"\n", n, (int)n, buf);
    if (n != strlen(TEXT) || memcmp(buf, TEXT, n) != 0) {
        fprintf(stderr, "read back something else\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    struct keel_opts opts;
    keel_opts_init(&opts, sizeof opts);
    opts.create = true;
    opts.size_bytes = 64u << 20;
    opts.mode = KEEL_MODE_METADATA_ONLY;
    if (argc > 1) {
        opts.dev_kind = KEEL_DEV_PSYNC;
        opts.path = argv[1];
    } else {
        opts.dev_kind = KEEL_DEV_SIM;
    }

    struct keel_store *store = NULL;
    CHECK(keel_store_open(&opts, &store));

    /* One transaction: a collection, an object in it, an attribute on the object. */
    struct keel_txn *txn = keel_txn_new();
    if (txn == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    CHECK(keel_txn_mkcoll(txn, 1));
    CHECK(keel_txn_write(txn, 1, NAME, strlen(NAME), 0, TEXT, strlen(TEXT)));
    CHECK(keel_txn_setattr(txn, 1, NAME, strlen(NAME), "lang", 4, "en", 2));
    CHECK(keel_submit_sync(store, txn)); /* durable when it returns 0 */
    keel_txn_free(txn);

    if (read_back(store) != 0) {
        return 1;
    }
    char lang[8];
    size_t lang_len = 0;
    CHECK(keel_getattr(store, 1, NAME, strlen(NAME), "lang", 4, lang, sizeof lang, &lang_len));
    struct keel_stat st;
    CHECK(keel_stat(store, 1, NAME, strlen(NAME), &st));
    printf("size %llu, %llu attribute(s), lang=%.*s\n", (unsigned long long)st.size,
           (unsigned long long)st.attrs, (int)lang_len, lang);
    CHECK(keel_store_close(store));

    if (argc > 1) {
        /* The same file again, without create: recovery finds what was committed. */
        opts.create = false;
        CHECK(keel_store_open(&opts, &store));
        printf("reopened %s\n", argv[1]);
        if (read_back(store) != 0) {
            return 1;
        }
        CHECK(keel_store_close(store));
    }
    printf("ok\n");
    return 0;
}

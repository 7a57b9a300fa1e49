// cxx_header.cpp: keel.h from C++. It must compile on its own (no other include first),
// with -Wall -Wextra -Werror -pedantic, and link: the extern "C" guards keep the names
// unmangled. Built and run by vendor-scripts/c-tests.sh.
#include "keel.h"

#include <cstdio>
#include <cstring>

int main() {
    keel_opts opts;
    keel_opts_init(&opts, sizeof opts);
    opts.dev_kind = KEEL_DEV_SIM;
    opts.size_bytes = 64u << 20;
    opts.create = true;
    keel_store *store = nullptr;
    int rc = keel_store_open(&opts, &store);
    if (rc != 0) {
        std::fprintf(stderr, "keel_store_open: %s\n", keel_strerror(rc));
        return 1;
    }
    keel_txn *txn = keel_txn_new();
    const char name[] = "from c++";
    rc = keel_txn_mkcoll(txn, 1);
    rc = rc != 0 ? rc : keel_txn_write(txn, 1, name, std::strlen(name), 0, name, sizeof name);
    rc = rc != 0 ? rc : keel_submit_sync(store, txn);
    keel_txn_free(txn);
    struct keel_stat st{}; // "struct": the function keel_stat hides the bare name
    rc = rc != 0 ? rc : keel_stat(store, 1, name, std::strlen(name), &st);
    int closed = keel_store_close(store);
    if (rc != 0 || closed != 0 || st.size != sizeof name) {
        std::fprintf(stderr, "c++: %s / %s\n", keel_strerror(rc), keel_strerror(closed));
        return 1;
    }
    std::printf("c++ ok\n");
    return 0;
}

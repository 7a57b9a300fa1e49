/*
 * keel_fio.c: a fio external ioengine over Keel's C API (keel.h).
 *
 *   fio --ioengine=external:/path/to/keel-fio.so --keel_dev=sim --size=64m ...
 *
 * Built by vendor-scripts/fio-engine.sh against the source of the very fio version that is
 * installed (fio's structs are not a stable ABI); see bench/fio/README.md.
 *
 * Each fio job (thread or process) opens one Keel store, created (mkfs) when the job opens
 * its first file, and closes it in ->cleanup. Each of the job's files is a collection
 * (fileno + 1), and the file's byte range is striped over objects of keel_object_size
 * bytes named by their index in decimal: fio offset OFF lives in object
 * OFF / keel_object_size, at OFF % keel_object_size. Objects come into existence on their
 * first write (keel_txn_write creates a missing object); a range no write has reached
 * reads as zeroes, like a fresh block device.
 *
 * Writes and trims are asynchronous: ->queue builds one transaction per io_u (several ops
 * when the io_u crosses an object boundary, so it stays all-or-nothing) and keel_submit()s
 * it with a callback that files the io_u as done; ->getevents runs keel_poll until enough
 * are done. Reads are synchronous (keel_read drives the device until the data is in) and
 * complete in ->queue. Syncs complete at once: Keel acknowledges a transaction only once it
 * is durable, so every write fio has seen complete is already on stable storage. A trim is
 * keel_txn_zero: the range reads as zeroes afterwards and its pages are freed.
 *
 * Threading: fio calls an engine's hooks from the job's own thread, one at a time, which
 * is exactly keel.h's rule for a store; callbacks run inside keel_poll on that thread.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * fio's headers define static inline functions with parameters they do not use (debug.h's
 * dprint stub, os-linux.h, arch-x86-common.h): that is fio's code, not ours, so
 * -Wunused-parameter is off for these includes only.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "fio.h"
#include "optgroup.h"
#pragma GCC diagnostic pop

#include <keel.h>

/* `fio --version` of the fio whose headers these are (fio-engine.sh passes it). */
#ifndef KEEL_FIO_BUILT_FOR
#error "define KEEL_FIO_BUILT_FOR as the fio version string, e.g. -DKEEL_FIO_BUILT_FOR='\"fio-3.33\"'"
#endif

/* Room the auto-sized store gets beyond the data: journal (a sixteenth of the device, at
 * least 4 MiB), two checkpoint slots, and slack for the allocator. */
#define KEEL_FIO_SLACK_BYTES (64ULL << 20)
#define KEEL_FIO_MIB (1ULL << 20)

/* Longest object name: an index in decimal (at most 20 digits) and a NUL. */
#define KEEL_FIO_NAME_BYTES 24

/* The engine's options, as fio parses them into td->eo. */
struct keel_fio_options {
    void *pad; /* fio reads an option whose offset is 0 as having no field */
    unsigned int dev;
    unsigned int mode;
    char *path;
    unsigned long long object_size;
    unsigned long long store_size;
    unsigned int mkfs;
    unsigned int stats;
};

static struct fio_option options[] = {
    {
        .name = "keel_dev",
        .lname = "Keel device",
        .type = FIO_OPT_STR,
        .off1 = offsetof(struct keel_fio_options, dev),
        .help = "Device under the Keel store",
        .def = "sim",
        .posval =
            {
                {.ival = "sim", .oval = KEEL_DEV_SIM, .help = "simulated device in memory"},
                {.ival = "psync", .oval = KEEL_DEV_PSYNC, .help = "file or block device, pread/pwrite"},
                {.ival = "uring", .oval = KEEL_DEV_URING, .help = "file or block device, io_uring"},
            },
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "keel_path",
        .lname = "Keel path",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct keel_fio_options, path),
        .help = "File or block device of the store (keel_dev=psync or uring)",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "keel_mode",
        .lname = "Keel journal mode",
        .type = FIO_OPT_STR,
        .off1 = offsetof(struct keel_fio_options, mode),
        .help = "Journal mode the store is created with",
        .def = "full",
        .posval =
            {
                {.ival = "full", .oval = KEEL_MODE_FULL, .help = "data through the journal"},
                {.ival = "metadata-only",
                 .oval = KEEL_MODE_METADATA_ONLY,
                 .help = "data in place, metadata through the journal"},
            },
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "keel_object_size",
        .lname = "Keel object size",
        .type = FIO_OPT_STR_VAL,
        .off1 = offsetof(struct keel_fio_options, object_size),
        .help = "Bytes of fio's file per Keel object",
        .def = "4m",
        .minval = 1,
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "keel_store_size",
        .lname = "Keel store size",
        .type = FIO_OPT_STR_VAL,
        .off1 = offsetof(struct keel_fio_options, store_size),
        .help = "Bytes of the device at mkfs (0: the files' size and room for metadata)",
        .def = "0",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "keel_mkfs",
        .lname = "Keel mkfs",
        .type = FIO_OPT_BOOL,
        .off1 = offsetof(struct keel_fio_options, mkfs),
        .help = "Create the store (1) or open the one at keel_path (0; not for sim)",
        .def = "1",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "keel_stats",
        .lname = "Keel stats",
        .type = FIO_OPT_BOOL,
        .off1 = offsetof(struct keel_fio_options, stats),
        .help = "Print the store's counters when the job ends",
        .def = "0",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = NULL,
    },
};

struct keel_fio;

/* What a transaction's callback gets: one per io_u, at the io_u's index (fio numbers its
 * iodepth io_us 0..iodepth-1). The engine owns it, so a callback that runs while the store
 * closes, after fio has freed its io_us, touches only engine memory. */
struct keel_fio_slot {
    struct keel_fio *kf;
    struct io_u *io_u;
};

/* One job's state (td->io_ops_data). */
struct keel_fio {
    const struct keel_fio_options *o;
    struct keel_store *store;
    struct keel_txn *txn;        /* reused for every submission */
    struct keel_fio_slot *slots; /* cap of them */
    struct io_u **done;          /* finished io_us, in order; done[0..reaped) went to fio */
    unsigned int cap;            /* iodepth: fio has no more io_us */
    unsigned int ndone;
    unsigned int reaped;         /* handed out by the last ->getevents */
    unsigned int inflight;       /* submitted, callback not yet run */
    bool closing;                /* in ->cleanup: the io_us may be gone */
};

static const char *keel_fio_dev_name(unsigned int dev) {
    switch (dev) {
    case KEEL_DEV_SIM:
        return "sim";
    case KEEL_DEV_PSYNC:
        return "psync";
    case KEEL_DEV_URING:
        return "uring";
    default:
        return "?";
    }
}

/* Records a failed call as the job's error: fio prints it and stops the job. */
static void keel_fio_fail(struct thread_data *td, int rc, const char *what) {
    log_err("keel-fio: %s: %s (%d)\n", what, keel_strerror(rc), rc);
    td_verror(td, rc < 0 ? -rc : rc, what);
}

/* Writes object `index`'s name into `name` and returns its length. */
static size_t keel_fio_name(uint64_t index, char name[KEEL_FIO_NAME_BYTES]) {
    int n = snprintf(name, KEEL_FIO_NAME_BYTES, "%" PRIu64, index);
    assert(n > 0 && n < KEEL_FIO_NAME_BYTES);
    return (size_t)n;
}

static uint64_t keel_fio_coll(const struct fio_file *f) {
    return (uint64_t)f->fileno + 1;
}

/* Forgets the io_us the last ->getevents handed to fio: fio has completed them by now
 * (it calls ->event for each before anything else), and may queue them again. */
static void keel_fio_forget_reaped(struct keel_fio *kf) {
    if (kf->reaped == 0) {
        return;
    }
    memmove(kf->done, kf->done + kf->reaped, (kf->ndone - kf->reaped) * sizeof kf->done[0]);
    kf->ndone -= kf->reaped;
    kf->reaped = 0;
}

/* keel_done_cb: a write or trim transaction is durable (status 0) or failed. */
static void keel_fio_txn_done(void *arg, int status) {
    struct keel_fio_slot *slot = arg;
    struct keel_fio *kf = slot->kf;
    struct io_u *io_u = slot->io_u;

    assert(kf->inflight > 0);
    kf->inflight--;
    if (kf->closing) {
        if (status != 0) {
            log_err("keel-fio: a transaction in flight at close failed: %s (%d)\n",
                    keel_strerror(status), status);
        }
        return;
    }
    if (status != 0) {
        log_err("keel-fio: %s of %llu bytes at %llu: %s (%d)\n",
                io_u->ddir == DDIR_TRIM ? "trim" : "write", io_u->xfer_buflen, io_u->offset,
                keel_strerror(status), status);
        io_u->error = (unsigned int)-status;
    }
    /* Every io_u in the array is a distinct one of the job's iodepth io_us. */
    assert(kf->ndone < kf->cap);
    kf->done[kf->ndone++] = io_u;
}

/* Bytes of data the store must hold: every file's range fio may touch. */
static uint64_t keel_fio_data_bytes(struct thread_data *td) {
    struct fio_file *f;
    unsigned int i;
    uint64_t total = 0;

    for_each_file(td, f, i) {
        uint64_t end = f->file_offset + f->io_size;
        if (f->real_file_size != -1ULL && f->real_file_size > end) {
            end = f->real_file_size;
        }
        total += end;
    }
    return total;
}

/* Opens (creates) the store and one collection per file. */
static int keel_fio_open_store(struct thread_data *td, struct keel_fio *kf) {
    const struct keel_fio_options *o = kf->o;
    struct keel_opts opts;
    keel_opts_init(&opts, sizeof opts);
    opts.dev_kind = o->dev;
    opts.mode = o->mode;
    opts.path = o->path;
    opts.create = o->mkfs != 0;
    opts.max_inflight_txns = td->o.iodepth;
    if (opts.create) {
        uint64_t size = o->store_size;
        if (size == 0) {
            uint64_t data = keel_fio_data_bytes(td);
            size = data + data / 4 + KEEL_FIO_SLACK_BYTES;
            size = (size + KEEL_FIO_MIB - 1) / KEEL_FIO_MIB * KEEL_FIO_MIB;
        }
        opts.size_bytes = size;
    }

    int rc = keel_store_open(&opts, &kf->store);
    if (rc < 0) {
        log_err("keel-fio: opening a store (keel_dev=%s%s%s, %s, %" PRIu64 " bytes)\n",
                keel_fio_dev_name(o->dev), o->path ? " keel_path=" : "", o->path ? o->path : "",
                opts.create ? "mkfs" : "existing", opts.size_bytes);
        kf->store = NULL;
        keel_fio_fail(td, rc, "keel_store_open");
        return rc;
    }

    struct fio_file *f;
    unsigned int i;
    for_each_file(td, f, i) {
        rc = keel_txn_mkcoll(kf->txn, keel_fio_coll(f));
        if (rc == 0) {
            rc = keel_submit_sync(kf->store, kf->txn);
        }
        /* An existing store (keel_mkfs=0) has its collections already. */
        if (rc < 0 && !(rc == -EEXIST && !opts.create)) {
            keel_fio_fail(td, rc, "keel_txn_mkcoll");
            keel_store_close(kf->store);
            kf->store = NULL;
            return rc;
        }
    }
    return 0;
}

static int keel_fio_init(struct thread_data *td) {
    const struct keel_fio_options *o = td->eo;

    /* The engine reads fio's structs as the headers it was built with lay them out. */
    if (strcmp(fio_version_string, KEEL_FIO_BUILT_FOR) != 0) {
        log_err("keel-fio: built against %s's headers, loaded by %s: rebuild it "
                "(vendor-scripts/fio-engine.sh build)\n",
                KEEL_FIO_BUILT_FOR, fio_version_string);
        return 1;
    }

    if (o->dev != KEEL_DEV_SIM && (o->path == NULL || o->path[0] == '\0')) {
        log_err("keel-fio: keel_dev=%s needs keel_path= (a file or block device)\n",
                keel_fio_dev_name(o->dev));
        return 1;
    }
    if (o->dev == KEEL_DEV_SIM && !o->mkfs) {
        log_err("keel-fio: keel_dev=sim lives in memory: keel_mkfs=0 has nothing to open\n");
        return 1;
    }
    if (o->dev != KEEL_DEV_SIM && td->o.numjobs > 1) {
        log_err("keel-fio: numjobs=%u would open the store at %s %u times; use one job per "
                "keel_path\n",
                td->o.numjobs, o->path, td->o.numjobs);
        return 1;
    }
    if (o->object_size == 0 || o->object_size > KEEL_MAX_OBJECT_BYTES) {
        log_err("keel-fio: keel_object_size must be 1 to %llu bytes\n",
                (unsigned long long)KEEL_MAX_OBJECT_BYTES);
        return 1;
    }
    unsigned long long max_bs = td->o.max_bs[DDIR_WRITE];
    if (td->o.max_bs[DDIR_TRIM] > max_bs) {
        max_bs = td->o.max_bs[DDIR_TRIM];
    }
    if (td->o.max_bs[DDIR_WRITE] > KEEL_MAX_TXN_DATA_BYTES ||
        max_bs / o->object_size + 2 > KEEL_MAX_TXN_OPS) {
        log_err("keel-fio: a write of bs=%llu does not fit one Keel transaction (at most %llu "
                "bytes and %u objects of keel_object_size)\n",
                max_bs, (unsigned long long)KEEL_MAX_TXN_DATA_BYTES, KEEL_MAX_TXN_OPS);
        return 1;
    }

    struct keel_fio *kf = calloc(1, sizeof *kf);
    if (kf == NULL) {
        return 1;
    }
    kf->o = o;
    kf->cap = td->o.iodepth > 0 ? td->o.iodepth : 1;
    kf->slots = calloc(kf->cap, sizeof kf->slots[0]);
    kf->done = calloc(kf->cap, sizeof kf->done[0]);
    kf->txn = keel_txn_new();
    if (kf->slots == NULL || kf->done == NULL || kf->txn == NULL) {
        keel_txn_free(kf->txn);
        free(kf->done);
        free(kf->slots);
        free(kf);
        return 1;
    }
    for (unsigned int i = 0; i < kf->cap; i++) {
        kf->slots[i].kf = kf;
    }
    td->io_ops_data = kf;
    return 0;
}

/* keel_stats=1: what the store did for the job, on one line. */
static void keel_fio_print_stats(struct thread_data *td, struct keel_fio *kf) {
    struct keel_stats st;
    int rc = keel_store_stats(kf->store, &st, sizeof st);
    if (rc < 0) {
        log_err("keel-fio: keel_store_stats: %s (%d)\n", keel_strerror(rc), rc);
        return;
    }
    log_info("keel-fio: %s: %" PRIu64 " txns committed, %" PRIu64 " failed; %" PRIu64
             " journal batches (%.1f txns each); device: %" PRIu64 " writes (%" PRIu64
             " MiB), %" PRIu64 " flushes, %" PRIu64 " reads (%" PRIu64
             " MiB); %" PRIu64 " checkpoints\n",
             td->o.name, st.txns_committed, st.txns_failed, st.journal_batches,
             st.journal_batches ? (double)st.journal_batch_entries / (double)st.journal_batches
                                : 0.0,
             st.device_write_cmds, st.device_write_bytes >> 20, st.device_flush_cmds,
             st.device_read_cmds, st.device_read_bytes >> 20, st.checkpoints);
}

/* Closes the store (running the callbacks of anything still in flight) and frees it all. */
static void keel_fio_cleanup(struct thread_data *td) {
    struct keel_fio *kf = td->io_ops_data;
    if (kf == NULL) {
        return;
    }
    if (kf->store != NULL) {
        if (kf->o->stats) {
            keel_fio_print_stats(td, kf);
        }
        kf->closing = true;
        int rc = keel_store_close(kf->store);
        if (rc < 0) {
            log_err("keel-fio: keel_store_close: %s (%d)\n", keel_strerror(rc), rc);
        }
        kf->store = NULL;
    }
    keel_txn_free(kf->txn);
    free(kf->done);
    free(kf->slots);
    free(kf);
    td->io_ops_data = NULL;
}

/* Opening a file opens the job's store the first time (every file is set up by then, so
 * its size is known); the store stays open until ->cleanup, whatever fio closes. */
static int keel_fio_open_file(struct thread_data *td, struct fio_file *f) {
    struct keel_fio *kf = td->io_ops_data;
    (void)f;
    if (kf->store != NULL) {
        return 0;
    }
    return keel_fio_open_store(td, kf) < 0 ? 1 : 0;
}

static int keel_fio_close_file(struct thread_data *td, struct fio_file *f) {
    (void)td;
    (void)f;
    return 0;
}

/* Reads [off, off + len) of the file, object by object; what was never written is zeroes. */
static int keel_fio_read(struct keel_fio *kf, uint64_t coll, uint64_t off, char *buf,
                         uint64_t len) {
    const uint64_t osz = kf->o->object_size;
    char name[KEEL_FIO_NAME_BYTES];
    while (len > 0) {
        uint64_t in = off % osz;
        uint64_t chunk = osz - in < len ? osz - in : len;
        size_t name_len = keel_fio_name(off / osz, name);
        size_t got = 0;
        int rc = keel_read(kf->store, coll, name, name_len, in, buf, chunk, &got);
        /* -ENOENT: no write reached this object; -ERANGE: none reached this far into it. */
        if (rc == -ENOENT || rc == -ERANGE) {
            got = 0;
        } else if (rc < 0) {
            return rc;
        }
        memset(buf + got, 0, chunk - got);
        off += chunk;
        buf += chunk;
        len -= chunk;
    }
    return 0;
}

/* Appends the io_u's write or trim to kf->txn, one op per object it touches. */
static int keel_fio_build(struct keel_fio *kf, struct io_u *io_u) {
    const uint64_t osz = kf->o->object_size;
    const uint64_t coll = keel_fio_coll(io_u->file);
    char name[KEEL_FIO_NAME_BYTES];
    uint64_t off = io_u->offset;
    uint64_t len = io_u->xfer_buflen;
    const char *data = io_u->xfer_buf;
    while (len > 0) {
        uint64_t in = off % osz;
        uint64_t chunk = osz - in < len ? osz - in : len;
        size_t name_len = keel_fio_name(off / osz, name);
        int rc = io_u->ddir == DDIR_TRIM
                     ? keel_txn_zero(kf->txn, coll, name, name_len, in, chunk)
                     : keel_txn_write(kf->txn, coll, name, name_len, in, data, chunk);
        if (rc < 0) {
            return rc;
        }
        off += chunk;
        data += chunk;
        len -= chunk;
    }
    return 0;
}

/* Submits kf->txn for io_u; when the store is full of transactions (-EAGAIN), polls to let
 * some finish and tries again (keel_submit left the transaction as it was). */
static int keel_fio_submit(struct keel_fio *kf, struct io_u *io_u) {
    if (io_u->index >= kf->cap) {
        return -EINVAL; /* fio numbers its io_us below iodepth: not this fio */
    }
    struct keel_fio_slot *slot = &kf->slots[io_u->index];
    slot->io_u = io_u;
    for (;;) {
        int rc = keel_submit(kf->store, kf->txn, keel_fio_txn_done, slot);
        if (rc != -EAGAIN) {
            return rc;
        }
        rc = keel_poll(kf->store);
        if (rc < 0) {
            return rc;
        }
    }
}

static enum fio_q_status keel_fio_queue(struct thread_data *td, struct io_u *io_u) {
    struct keel_fio *kf = td->io_ops_data;
    int rc;

    fio_ro_check(td, io_u);
    keel_fio_forget_reaped(kf);
    io_u->resid = 0;
    io_u->error = 0;

    switch (io_u->ddir) {
    case DDIR_READ:
        rc = keel_fio_read(kf, keel_fio_coll(io_u->file), io_u->offset, io_u->xfer_buf,
                           io_u->xfer_buflen);
        if (rc < 0) {
            log_err("keel-fio: read of %llu bytes at %llu: %s (%d)\n", io_u->xfer_buflen,
                    io_u->offset, keel_strerror(rc), rc);
            io_u->error = (unsigned int)-rc;
        }
        return FIO_Q_COMPLETED;

    case DDIR_WRITE:
    case DDIR_TRIM:
        rc = keel_fio_build(kf, io_u);
        if (rc == 0) {
            rc = keel_fio_submit(kf, io_u);
        }
        if (rc == 0) {
            kf->inflight++;
            return FIO_Q_QUEUED;
        }
        log_err("keel-fio: %s of %llu bytes at %llu not submitted: %s (%d)\n",
                io_u->ddir == DDIR_TRIM ? "trim" : "write", io_u->xfer_buflen, io_u->offset,
                keel_strerror(rc), rc);
        io_u->error = (unsigned int)-rc;
        /* A refused transaction may hold some ops (keel.h has no way to empty one): start
         * from a fresh handle. -EROFS: keel_submit dropped the content anyway. */
        keel_txn_free(kf->txn);
        kf->txn = keel_txn_new();
        if (kf->txn == NULL) {
            td_verror(td, ENOMEM, "keel_txn_new");
        }
        return FIO_Q_COMPLETED;

    case DDIR_SYNC:
    case DDIR_DATASYNC:
    case DDIR_SYNC_FILE_RANGE:
        /* Nothing to do: Keel acknowledges a transaction only once it is durable, so every
         * write that fio has seen complete is on stable storage already. Writes still in
         * flight are not covered, as with fsync(2) and writes that have not returned. */
        return FIO_Q_COMPLETED;

    default:
        io_u->error = EINVAL;
        return FIO_Q_COMPLETED;
    }
}

/* Gives the device what ->queue submitted (Keel sends nothing until it is polled). */
static int keel_fio_commit(struct thread_data *td) {
    struct keel_fio *kf = td->io_ops_data;
    keel_fio_forget_reaped(kf);
    int rc = keel_poll(kf->store);
    if (rc < 0) {
        keel_fio_fail(td, rc, "keel_poll");
        return rc;
    }
    return 0;
}

static bool keel_fio_past(const struct timespec *deadline) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* Polls the store until at least `min` io_us are done, or `t` has passed. */
static int keel_fio_getevents(struct thread_data *td, unsigned int min, unsigned int max,
                              const struct timespec *t) {
    struct keel_fio *kf = td->io_ops_data;
    struct timespec deadline = {0, 0};

    keel_fio_forget_reaped(kf);
    if (t != NULL) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += t->tv_sec;
        deadline.tv_nsec += t->tv_nsec;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    do {
        int rc = keel_poll(kf->store);
        if (rc < 0) {
            keel_fio_fail(td, rc, "keel_poll");
            return rc;
        }
        /* Waiting for more than is in flight would never end. */
        if (kf->inflight == 0) {
            break;
        }
    } while (kf->ndone < min && (t == NULL || !keel_fio_past(&deadline)));

    kf->reaped = kf->ndone < max ? kf->ndone : max;
    return (int)kf->reaped;
}

static struct io_u *keel_fio_event(struct thread_data *td, int event) {
    struct keel_fio *kf = td->io_ops_data;
    assert(event >= 0 && (unsigned int)event < kf->reaped);
    return kf->done[event];
}

/* fio frees the string. */
static char *keel_fio_errdetails(struct io_u *io_u) {
    return strdup(keel_strerror((int)io_u->error));
}

/* Found by fio through dlsym(handle, "ioengine"). */
struct ioengine_ops ioengine = {
    .name = "keel",
    .version = FIO_IOOPS_VERSION,
    .flags = FIO_DISKLESSIO | FIO_NOEXTEND,
    .init = keel_fio_init,
    .cleanup = keel_fio_cleanup,
    .open_file = keel_fio_open_file,
    .close_file = keel_fio_close_file,
    .queue = keel_fio_queue,
    .commit = keel_fio_commit,
    .getevents = keel_fio_getevents,
    .event = keel_fio_event,
    .errdetails = keel_fio_errdetails,
    .options = options,
    .option_struct_size = sizeof(struct keel_fio_options),
};

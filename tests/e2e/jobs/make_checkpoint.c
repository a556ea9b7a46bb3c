/*
 * make_checkpoint - writes checkpoints through the checkpoint storage API, for the e2e
 * tests of `sluice checkpoint inspect` (no job writes checkpoints by itself yet).
 *
 *   make_checkpoint DIR JOB_ID [COUNT [NUM_RETAINED]]
 *
 * Completes checkpoints 1..COUNT (default 1) of job JOB_ID under DIR with num_retained
 * NUM_RETAINED (default 1) and prints the last one's directory. Each holds three operators
 * at parallelism 2, max parallelism 128:
 *   "source"  ("Source: Sequence")  operator state only (an offset per subtask)
 *   "counts"  ("Keyed Sum")         keyed state in every key group
 *   "print"   ("Sink: Print")       stateless: no state file
 * Exit status 1 with a message on any error.
 */
#include "checkpoint/storage.h"
#include "core/hash.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PARALLELISM 2
#define MAX_PARALLELISM 128

typedef struct op_def {
    const char *uid, *name;
    bool keyed, op_state;
} op_def;

static const op_def OPS[] = {
    {"source", "Source: Sequence", false, true},
    {"counts", "Keyed Sum", true, false},
    {"print", "Sink: Print", false, false},
};
#define NOPS ((int)(sizeof OPS / sizeof OPS[0]))

static int write_checkpoint(sl__storage *st, const char *job_id, int64_t id)
{
    char err[1024];
    sl__operator_state_meta ops[NOPS];
    sl__subtask_state subs[NOPS][PARALLELISM];
    memset(subs, 0, sizeof subs);
    int rc = 0;
    for (int o = 0; o < NOPS && rc == 0; o++) {
        for (int s = 0; s < PARALLELISM && rc == 0; s++) {
            int start = OPS[o].keyed ? sl__key_group_start(s, PARALLELISM, MAX_PARALLELISM) : 0;
            int end = OPS[o].keyed ? sl__key_group_start(s + 1, PARALLELISM, MAX_PARALLELISM) : 0;
            sl__state_writer *w =
                sl__state_writer_open(st, id, OPS[o].uid, s, start, end, err, sizeof err);
            if (!w) {
                fprintf(stderr, "make_checkpoint: %s\n", err);
                return 1;
            }
            for (int kg = start; kg < end && rc == 0; kg++) {
                char text[64];
                int n = snprintf(text, sizeof text, "kg=%d count=%" PRId64, kg, id * kg);
                rc = sl__state_writer_add_kg(w, kg, (const uint8_t *)text, (size_t)n);
            }
            if (rc == 0 && OPS[o].op_state) {
                char text[64];
                int n = snprintf(text, sizeof text, "offset=%" PRId64, id * 1000 + s);
                rc = sl__state_writer_set_operator(w, (const uint8_t *)text, (size_t)n);
            }
            if (rc < 0) {
                sl__state_writer_abort(w);
                fprintf(stderr, "make_checkpoint: writing %s failed: %s\n", OPS[o].uid,
                        sl_strerror(rc));
                return 1;
            }
            rc = sl__state_writer_close(w, &subs[o][s], err, sizeof err);
            if (rc < 0) {
                fprintf(stderr, "make_checkpoint: %s\n", err);
                return 1;
            }
        }
        ops[o] = (sl__operator_state_meta){.uid = (char *)OPS[o].uid,
                                           .name = (char *)OPS[o].name,
                                           .parallelism = PARALLELISM,
                                           .max_parallelism = MAX_PARALLELISM,
                                           .subtasks = subs[o]};
    }
    sl__checkpoint_meta m = {.id = id,
                             .job_id = (char *)job_id,
                             .job_name = "make_checkpoint \"test\" job",
                             .timestamp_ms = (int64_t)time(NULL) * 1000,
                             .duration_ms = 42,
                             .noperators = NOPS,
                             .operators = ops};
    rc = sl__storage_complete(st, &m, err, sizeof err);
    for (int o = 0; o < NOPS; o++)
        for (int s = 0; s < PARALLELISM; s++)
            sl__subtask_state_free(&subs[o][s]);
    if (rc < 0) {
        fprintf(stderr, "make_checkpoint: %s\n", err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: make_checkpoint DIR JOB_ID [COUNT [NUM_RETAINED]]\n");
        return 2;
    }
    int count = argc > 3 ? atoi(argv[3]) : 1;
    int retained = argc > 4 ? atoi(argv[4]) : 1;
    char err[1024];
    sl__storage *st = sl__storage_create(argv[1], argv[2], retained, err, sizeof err);
    if (!st) {
        fprintf(stderr, "make_checkpoint: %s\n", err);
        return 1;
    }
    int64_t ids[1];
    int64_t first = sl__storage_retained(st, ids, 1) > 0 ? ids[0] + 1 : 1;
    int rc = 0;
    for (int64_t id = first; id < first + count && rc == 0; id++)
        rc = write_checkpoint(st, argv[2], id);
    if (rc == 0)
        printf("%s/chk-%" PRId64 "\n", sl__storage_job_dir(st), first + count - 1);
    sl__storage_destroy(st);
    return rc;
}

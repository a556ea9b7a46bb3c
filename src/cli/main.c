/*
 * main.c - the `sluice` command: a thin front end over the library. Today it has one
 * command, `sluice checkpoint inspect PATH`, which validates a checkpoint's _metadata (and
 * with --verify every state file it lists) and prints the metadata as JSON; `run`, `list`,
 * `cancel`, `savepoint` and `stop` come with cluster mode.
 *
 * Exit codes: 0 success, 1 the command failed (the message on stderr names the file and
 * what is wrong), 2 usage error (unknown command or option, missing argument).
 * Only the JSON goes to stdout, so `sluice checkpoint inspect X | jq` works.
 */
#include "checkpoint/storage.h"
#include "sluice.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: sluice COMMAND [ARGS]\n"
          "\n"
          "Commands:\n"
          "  checkpoint inspect [--verify] PATH\n"
          "      Print a checkpoint's metadata as JSON: job, checkpoint id, time, and per\n"
          "      operator uid the parallelism, max parallelism and each subtask's state file,\n"
          "      size, checksum and key-group range. PATH is a checkpoint directory\n"
          "      <checkpoint-dir>/<job-id>/chk-<N> (a plain path or a file:// URI) or its\n"
          "      _metadata file. --verify also reads every state file and checks its size\n"
          "      and checksum. Exits 1 when PATH is not a checkpoint or is corrupt.\n"
          "  help\n"
          "      Print this text.\n"
          "\n"
          "Options:\n"
          "  -h, --help     print this text\n"
          "  --version      print the version\n",
          f);
}

/* Reads every state file and database file the metadata lists; prints the first problem. */
static int verify_files(const sl__checkpoint_meta *m, const char *path)
{
    for (int i = 0; i < m->noperators; i++) {
        const sl__operator_state_meta *o = &m->operators[i];
        for (int s = 0; s < o->parallelism; s++) {
            sl__state_reader *r = NULL;
            char err[1024];
            int rc = sl__state_reader_open(NULL, path, m->id, &o->subtasks[s], &r, err, sizeof err);
            if (rc < 0) {
                fprintf(stderr, "sluice: %s\n", err);
                return rc;
            }
            sl__state_reader_free(r);
            if (o->subtasks[s].nfiles &&
                (rc = sl__storage_check_db_files(path, &o->subtasks[s], err, sizeof err)) < 0) {
                fprintf(stderr, "sluice: %s\n", err);
                return rc;
            }
        }
    }
    return 0;
}

static int cmd_checkpoint_inspect(int argc, char **argv)
{
    bool verify = false;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--verify")) {
            verify = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "sluice: unknown option '%s' for checkpoint inspect\n\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "sluice: checkpoint inspect takes one PATH (got '%s' and '%s')\n\n",
                    path, argv[i]);
            usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fputs("sluice: checkpoint inspect needs a PATH\n\n", stderr);
        usage(stderr);
        return 2;
    }
    sl__checkpoint_meta *m = NULL;
    char err[1024];
    int rc = sl__checkpoint_load(NULL, path, -1, &m, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "sluice: %s\n", err);
        return 1;
    }
    if (verify && verify_files(m, path) < 0) {
        sl__checkpoint_meta_free(m);
        return 1;
    }
    /* the directory the checkpoint is in, absolute, for the "path" field */
    const char *p = !strncmp(path, "file://", 7) ? path + 7 : path;
    char real[PATH_MAX];
    const char *shown = realpath(p, real) ? real : p;
    size_t n = strlen(shown);
    if (shown == real && n > 10 && !strcmp(real + n - 10, "/_metadata"))
        real[n - 10] = 0;
    rc = sl__checkpoint_meta_json(m, shown, stdout);
    sl__checkpoint_meta_free(m);
    if (rc < 0 || fflush(stdout) != 0) {
        perror("sluice: writing to stdout");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("sluice %s\n", SL_VERSION_STRING);
        return 0;
    }
    if (!strcmp(cmd, "checkpoint")) {
        if (argc >= 3 && !strcmp(argv[2], "inspect"))
            return cmd_checkpoint_inspect(argc - 3, argv + 3);
        if (argc >= 3 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help"))) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "sluice: unknown checkpoint command%s%s%s; accepted: inspect\n\n",
                argc >= 3 ? " '" : "", argc >= 3 ? argv[2] : "", argc >= 3 ? "'" : "");
        usage(stderr);
        return 2;
    }
    fprintf(stderr, "sluice: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}

/*
 * storage.c - checkpoint storage: state files and _metadata on a local file system or in
 * memory, their binary formats (docs/checkpoint-format.md), validation on load, retention,
 * and the JSON view of the metadata that `sluice checkpoint inspect` prints.
 *
 * Durability: a state file is written through a 64 KiB buffer, checksummed as it goes
 * (XXH3-64 streaming), its writeback started every SYNC_CHUNK, synced (writer_sync: the
 * writeback waited for a range at a time, then fsync) and closed; _metadata is written last, to
 * _metadata.tmp, fsynced, renamed, and the chk-<N> and job directories are fsynced. A checkpoint is
 * complete exactly when its _metadata exists: anything without one is debris of an aborted
 * or interrupted checkpoint. A checkpoint's files are created, completed and removed through
 * descriptors of its chk-<N> and job directories, opened when chk-<N> is made, so a job
 * directory moved or replaced mid-checkpoint never leaves a complete checkpoint the job
 * believes failed, or debris it cannot reach. Every write goes through sl__file_ops_current
 * so tests can fail, shorten or tear it; reads and deletions use POSIX directly.
 *
 * Validation: every file has a fixed 8-byte head (magic, version, kind) and a 16-byte
 * trailer (total length, checksum) whose layout never changes across versions, so a reader
 * can always tell a truncated or corrupt file from a newer format. After the checksum, every
 * field is checked (counts, ranges, offsets, names), so a file with a valid checksum but
 * inconsistent content (a bug, or a crafted file) is refused with a message and never
 * crashes the reader.
 *
 * Concurrency: st->mu guards the retained list, the open-checkpoint table and the memory
 * files, and is held while a state file is created, so an abort never races a new file into
 * an aborted directory. st->complete_mu serializes completion and discard; completion's
 * slow I/O (fsync) runs outside st->mu so writers are not held up. Checkpoints that are
 * subsumed, aborted or failed lose their _metadata at once and are deleted by a thread of
 * the storage (st->del_mu guards its queue, taken after st->mu, never before), as are the
 * discarded state files' blocks, so that neither a completion nor an abort waits for the
 * file system to free a large state; discard_all (at the end of a job) and destroy wait for
 * that thread. Files in shared/ are still deleted at once: a file deleted for one checkpoint
 * may be stored again under its name by the next. A state writer whose checkpoint was
 * aborted or subsumed stops before its next 64 KiB reach the file, or its sync at the next
 * SYNC_CHUNK.
 */
#include "checkpoint/storage.h"
#include "core/alloc.h"
#include "core/hash.h"
#include "core/log.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- format constants (docs/checkpoint-format.md) ------------------------------------- */

#define FORMAT_VERSION 1 /* of state files */
/* of _metadata: 2 added the database files of incremental snapshots; 1 is still read */
#define META_VERSION 3
#define KIND_STATE 1 /* "SLST": one operator subtask's state */
#define KIND_META 2  /* "SLMD": a checkpoint's _metadata */
#define HEAD_SIZE 8  /* magic, version, kind: the same in every version */
#define TRAILER_SIZE 16
#define META_FLAG_SAVEPOINT 1u
#define SUBTASK_FLAG_FINISHED 1u /* version 3: the subtask had finished */
/* state file header before the uid: head, id, subtask, kg_start, kg_end, uid length */
#define STATE_HEADER_FIXED 32
/* smallest metadata: head, flags, id, timestamp, duration, two string lengths, operator
 * count, trailer */
#define META_MIN_SIZE (HEAD_SIZE + 4 + 24 + 4 + 4 + 4 + TRAILER_SIZE)

#define MAX_KEY_GROUPS 32768       /* pipeline.max-parallelism's upper bound */
#define MAX_NAME_LEN (1u << 16)    /* uids and operator names */
#define MAX_FILE_LEN 1024          /* a state file name in the metadata */
#define MAX_DB_FILES (1 << 20)     /* database files of one subtask's incremental snapshot */
#define MAX_JOB_ID_LEN 128         /* job ids are directory names */
#define MAX_META_SIZE (1ull << 30) /* far above any real _metadata; bounds a bogus read */
#define WRITE_BUF_SIZE (64 * 1024)
#define FILE_NAME_MAX_UID 100 /* uid characters kept in a state file's name */

static const char META_MAGIC[4] = {'S', 'L', 'M', 'D'};
static const char STATE_MAGIC[4] = {'S', 'L', 'S', 'T'};

/* ---- file operations ------------------------------------------------------------------ */

static int posix_openat(int dirfd, const char *name, int flags, mode_t mode)
{
    return openat(dirfd, name, flags, mode);
}

static ssize_t posix_write(int fd, const void *p, size_t n)
{
    return write(fd, p, n);
}

static int posix_fsync(int fd)
{
    return fsync(fd);
}

static int posix_sync_range(int fd, off_t off, off_t n, unsigned flags)
{
    return sync_file_range(fd, off, n, flags);
}

static int posix_close(int fd)
{
    return close(fd);
}

static int posix_renameat(int dirfd, const char *from, const char *to)
{
    return renameat(dirfd, from, dirfd, to);
}

static int posix_mkdirat(int dirfd, const char *name, mode_t mode)
{
    return mkdirat(dirfd, name, mode);
}

const sl__file_ops sl__file_ops_posix = {
    .openat = posix_openat,
    .write = posix_write,
    .fsync = posix_fsync,
    .sync_range = posix_sync_range,
    .close = posix_close,
    .renameat = posix_renameat,
    .mkdirat = posix_mkdirat,
};
const sl__file_ops *sl__file_ops_current = &sl__file_ops_posix;

/* ---- small helpers -------------------------------------------------------------------- */

static void seterr(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* The OS error text in lower case ("no space left on device"), as the rest of Sluice's
 * messages read. */
static const char *oserr(int e, char *buf, size_t cap)
{
    const char *s = strerror_r(e, buf, cap);
    if (s != buf) {
        snprintf(buf, cap, "%s", s);
        s = buf;
    }
    if (buf[0] && isupper((unsigned char)buf[0]) && !(buf[1] && isupper((unsigned char)buf[1])))
        buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}
#define OSERR(e) oserr((e), ebuf_, sizeof ebuf_)
#define DECL_OSERR char ebuf_[128]

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A name usable as one path component: [A-Za-z0-9._-]+, neither "." nor "..". */
static bool valid_component(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

/* A state file reference in the metadata: "" (no state), a name in chk-<N>, or a name in
 * the job's shared/ or taskowned/ directory. */
static bool valid_state_file(const char *f)
{
    if (!*f)
        return true;
    if (!strncmp(f, "../shared/", 10))
        return valid_component(f + 10);
    if (!strncmp(f, "../taskowned/", 13))
        return valid_component(f + 13);
    return valid_component(f);
}

/* Strips a file:// (or file:) scheme. Returns NULL for another host ("file://h/x"). */
static const char *strip_uri(const char *p)
{
    if (!strncmp(p, "file://", 7))
        return p[7] == '/' ? p + 7 : NULL;
    if (!strncmp(p, "file:", 5))
        return p[5] == '/' ? p + 5 : NULL;
    return p;
}

static char *path_join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = sl__malloc(na + nb + 2);
    if (!p)
        return NULL;
    memcpy(p, a, na);
    p[na] = '/';
    memcpy(p + na + 1, b, nb + 1);
    return p;
}

static char *path_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *path_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    /* move into the allocation wrapper's ownership, so sl__free is the one way to free */
    char *d = sl__strdup(s);
    free(s);
    return d;
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* "chk-<digits>" -> id, else -1. */
static int64_t parse_chk_name(const char *name)
{
    if (strncmp(name, "chk-", 4) || !name[4] || strlen(name + 4) > 18)
        return -1;
    int64_t v = 0;
    for (const char *p = name + 4; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* Creates one directory (through the file ops); an existing directory is fine. Returns 0
 * or -errno. */
static int make_dir(const char *path)
{
    if (is_dir(path))
        return 0;
    if (sl__file_ops_current->mkdirat(AT_FDCWD, path, 0777) == 0)
        return 0;
    int e = errno;
    if (e == EEXIST)
        return is_dir(path) ? 0 : -ENOTDIR;
    return -e;
}

/* mkdir -p; on failure *failed receives the component that could not be made (owned). */
static int make_dirs(const char *path, char **failed)
{
    char *p = sl__strdup(path);
    if (!p)
        return -ENOMEM;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            rc = make_dir(p);
            if (rc < 0) {
                *failed = p;
                return rc;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    sl__free(p);
    return 0;
}

/* rm -rf of name in the directory dirfd (AT_FDCWD: name is a path), for checkpoint
 * directories: no symbolic link is followed. Returns 0 or -errno of the first failure; a
 * missing name is not a failure. */
static int remove_tree_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno == ENOTDIR || errno == ELOOP)
            return unlinkat(dirfd, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
        return -errno;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return -e;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        struct stat sb;
        if (fstatat(fd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        int r = S_ISDIR(sb.st_mode) ? remove_tree_at(fd, e->d_name)
                                    : (unlinkat(fd, e->d_name, 0) == 0 ? 0 : -errno);
        if (r < 0 && r != -ENOENT && !rc)
            rc = r;
    }
    closedir(d);
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && !rc)
        rc = -errno;
    return rc;
}

static int remove_tree(const char *path)
{
    return remove_tree_at(AT_FDCWD, path);
}

/* Another descriptor of the directory fd, through the file operations (so that fault
 * injection sees the directory's own path). The descriptor, or -1 with errno. */
static int reopen_dir(int fd)
{
    return sl__file_ops_current->openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
}

/* Opens the directory name in dirfd through the file operations (never through a symbolic
 * link). The descriptor, or -1 with errno. */
static int open_dir_at(int dirfd, const char *name)
{
    return sl__file_ops_current->openat(dirfd, name,
                                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
}

/* write(2) until done; a short write continues, EINTR retries. 0 or -errno. */
static int write_all(int fd, const uint8_t *p, size_t n)
{
    const sl__file_ops *ops = sl__file_ops_current;
    while (n) {
        ssize_t r = ops->write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO; /* no progress and no error: never loop forever */
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads a whole file. Returns 0, -errno, or -EFBIG when it has more than max bytes. */
static int read_file(const char *path, uint64_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return -EISDIR;
    }
    if ((uint64_t)sb.st_size > max || (uint64_t)sb.st_size > SIZE_MAX - 1) {
        close(fd);
        return -EFBIG;
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *p = sl__malloc(n ? n : 1);
    if (!p) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            sl__free(p);
            close(fd);
            return -e;
        }
        if (r == 0)
            break; /* shrank while reading: the length check reports it */
        got += (size_t)r;
    }
    close(fd);
    *out = p;
    *len = got;
    return 0;
}

/* ---- the storage object --------------------------------------------------------------- */

typedef struct mem_file {
    char *name; /* "chk-<N>/<file>" */
    uint8_t *data;
    size_t len;
} mem_file;

typedef struct retained_ckpt {
    int64_t id;
    bool savepoint; /* never deleted by the storage */
} retained_ckpt;

/* A file in shared/ and the checkpoints that reference it (completed and retained, or in
 * progress): deleted when the last reference goes. */
typedef struct shared_ref {
    char *name;
    uint64_t size, checksum;
    int64_t *ids;
    int nids, cap_ids;
} shared_ref;

/* A checkpoint that writers have touched or that was aborted, until a checkpoint with an
 * id at least as high completes. Once this storage has made chk-<N> (disk), it holds
 * descriptors of the job directory it was made in and of chk-<N> itself: every file of the
 * checkpoint is created, completed or removed through them, so a checkpoint never ends up
 * half in one directory and half in another when the job directory is moved or replaced
 * while it is written. */
typedef struct open_ckpt {
    int64_t id;
    bool aborted;
    int jfd, dfd; /* the job directory and chk-<N>, or -1 before chk-<N> is made */
} open_ckpt;

/* What the deleting thread deletes: chk-<id> (>= 0; subsumed, or aborted) in the job
 * directory jfd (owned; -1: at the configured path), a failure logged as event; or fd
 * (>= 0, owned), the last descriptor of a discarded state file, whose closing frees its
 * blocks. */
typedef struct doomed {
    int jfd;
    int64_t id;
    int fd;
    const char *event;
} doomed;

struct sl__storage {
    bool memory;
    char *job_dir; /* <dir>/<job-id>, or "memory" */
    char *job_id;
    int num_retained;
    pthread_mutex_t complete_mu; /* serializes complete and discard_all */
    pthread_mutex_t mu;          /* guards everything below; any thread */
    retained_ckpt *retained;     /* newest first */
    int nretained, cap_retained;
    int64_t newest; /* highest completed id, -1 when none */
    open_ckpt *open;
    int nopen, cap_open;
    mem_file *files;
    int nfiles, cap_files;
    shared_ref *shared; /* shared/ files and their references */
    int nshared, cap_shared;

    /* Checkpoint directories to delete (subsumed, aborted, failed) and the descriptors of
     * discarded state files go to a thread of the storage, started with the first, so that
     * completing a checkpoint, aborting one or discarding a file does not wait for the file
     * system to free a large state (about 0.3 ms per MB here, for a file that was synced). */
    pthread_mutex_t del_mu; /* guards the queue and the thread's state */
    pthread_cond_t del_cv;
    doomed *doomed; /* FIFO, at most DOOMED_MAX */
    int ndoomed, cap_doomed;
    bool deleting; /* the thread is deleting one it took off the queue */
    bool del_stop, del_started;
    bool del_held; /* sl__storage_hold_deletions */
    pthread_t del_thread;
};

static void lock(const sl__storage *st)
{
    pthread_mutex_lock((pthread_mutex_t *)&st->mu);
}

static void unlock(const sl__storage *st)
{
    pthread_mutex_unlock((pthread_mutex_t *)&st->mu);
}

/* Room for one more element in arr (n used of *cap, each size bytes; first capacity first,
 * then doubling): arr itself, or the reallocated array (*cap updated), or NULL on out of
 * memory with arr unchanged. */
static void *grow(void *arr, int *cap, int n, size_t size, int first)
{
    if (n < *cap)
        return arr;
    int ncap = *cap ? *cap * 2 : first;
    void *p = sl__realloc(arr, size * (size_t)ncap);
    if (p)
        *cap = ncap;
    return p;
}

/* Under st->mu. Finds (or, with create, adds) the open entry of id; NULL on out of memory
 * or when absent. */
static open_ckpt *open_entry(sl__storage *st, int64_t id, bool create)
{
    for (int i = 0; i < st->nopen; i++)
        if (st->open[i].id == id)
            return &st->open[i];
    if (!create)
        return NULL;
    open_ckpt *grown = grow(st->open, &st->cap_open, st->nopen, sizeof *st->open, 8);
    if (!grown)
        return NULL;
    st->open = grown;
    open_ckpt *o = &st->open[st->nopen++];
    *o = (open_ckpt){.id = id, .jfd = -1, .dfd = -1};
    return o;
}

/* Closes the entry's directory descriptors (they stay -1). */
static void open_close_dirs(open_ckpt *o)
{
    if (o->dfd >= 0)
        sl__file_ops_current->close(o->dfd);
    if (o->jfd >= 0)
        sl__file_ops_current->close(o->jfd);
    o->jfd = o->dfd = -1;
}

/* Removes chk-<id>: through jfd, the job directory it was made in, when that is known
 * (>= 0), else at the configured path. A failure is logged as event. 0 or -errno. */
static int remove_chk(const sl__storage *st, int jfd, int64_t id, const char *event)
{
    char name[32];
    snprintf(name, sizeof name, "chk-%" PRId64, id);
    int r;
    if (jfd >= 0) {
        r = remove_tree_at(jfd, name);
    } else {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", st->job_dir, name);
        r = remove_tree(dir);
    }
    if (r < 0)
        SL_WARN("event=%s dir=%s/%s error=\"%s\"", event, st->job_dir, name, strerror(-r));
    return r;
}

/* Items queued for the deleting thread at most: beyond, the caller waits for room, so that
 * a job whose checkpoints outrun the file system does not pile up deleted states on the
 * disk. */
enum { DOOMED_MAX = 8 };

/* Deletes what d names; closes d.jfd when owned. */
static void delete_doomed(const sl__storage *st, const doomed d, bool owned)
{
    if (d.fd >= 0)
        close(d.fd); /* the last descriptor of an unlinked file: its blocks are freed now */
    if (d.id >= 0 && remove_chk(st, d.jfd, d.id, d.event) == 0)
        SL_DEBUG("event=checkpoint_deleted id=%" PRId64 " dir=%s/chk-%" PRId64, d.id, st->job_dir,
                 d.id);
    if (owned && d.jfd >= 0)
        close(d.jfd);
}

static void *deleter_main(void *arg)
{
    sl__storage *st = arg;
    pthread_setname_np(pthread_self(), "sluice-delete");
    pthread_mutex_lock(&st->del_mu);
    for (;;) {
        while ((!st->ndoomed || st->del_held) && !st->del_stop)
            pthread_cond_wait(&st->del_cv, &st->del_mu);
        if (!st->ndoomed)
            break;
        doomed d = st->doomed[0];
        memmove(st->doomed, st->doomed + 1, sizeof *st->doomed * (size_t)--st->ndoomed);
        st->deleting = true;
        pthread_mutex_unlock(&st->del_mu);
        delete_doomed(st, d, true);
        pthread_mutex_lock(&st->del_mu);
        st->deleting = false;
        pthread_cond_broadcast(&st->del_cv);
    }
    pthread_mutex_unlock(&st->del_mu);
    return NULL;
}

/* Hands d to the deleting thread, started with the first (waiting while DOOMED_MAX are
 * queued); deletes it here and now where that thread or the memory for the queue is
 * missing. */
static void delete_later(sl__storage *st, doomed d)
{
    pthread_mutex_lock(&st->del_mu);
    while (st->del_started && st->ndoomed >= DOOMED_MAX && !st->del_held)
        pthread_cond_wait(&st->del_cv, &st->del_mu);
    doomed *q = grow(st->doomed, &st->cap_doomed, st->ndoomed, sizeof *st->doomed, 4);
    if (q) {
        st->doomed = q;
        if (!st->del_started && !st->del_stop) {
            /* no signal for it: they are the thread's that runs the job */
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            st->del_started = pthread_create(&st->del_thread, NULL, deleter_main, st) == 0;
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
    }
    bool queued = q && st->del_started;
    if (queued) {
        st->doomed[st->ndoomed++] = d;
        pthread_cond_signal(&st->del_cv);
    }
    pthread_mutex_unlock(&st->del_mu);
    if (!queued)
        delete_doomed(st, d, true);
}

/* Deletes checkpoint id, made in job directory jfd (-1: at the configured path): its
 * _metadata now, so that it is debris from here on and never again a complete checkpoint,
 * the rest in the background (delete_later). */
static void delete_chk_later(sl__storage *st, int jfd, int64_t id, const char *event)
{
    char name[32];
    snprintf(name, sizeof name, "chk-%" PRId64, id);
    int cfd;
    if (jfd >= 0) {
        cfd = openat(jfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    } else {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", st->job_dir, name);
        cfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (cfd >= 0) {
        unlinkat(cfd, "_metadata", 0);
        close(cfd);
    }
    /* a descriptor of its own, as the caller closes jfd */
    int own = jfd >= 0 ? openat(jfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (jfd >= 0 && own < 0)
        delete_doomed(st, (doomed){.jfd = jfd, .id = id, .fd = -1, .event = event}, false);
    else
        delete_later(st, (doomed){.jfd = own, .id = id, .fd = -1, .event = event});
}

void sl__storage_settle(sl__storage *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->del_mu);
    while ((st->ndoomed && !st->del_held) || st->deleting)
        pthread_cond_wait(&st->del_cv, &st->del_mu);
    pthread_mutex_unlock(&st->del_mu);
}

void sl__storage_hold_deletions(sl__storage *st, bool hold)
{
    pthread_mutex_lock(&st->del_mu);
    st->del_held = hold;
    pthread_cond_broadcast(&st->del_cv);
    pthread_mutex_unlock(&st->del_mu);
}

/* Under st->mu. Has the entry's chk-<id> removed (where this storage made it: through its
 * job directory's descriptor) and closes its descriptors. */
static void open_remove_dir(sl__storage *st, open_ckpt *o)
{
    delete_chk_later(st, o->jfd, o->id, "checkpoint_cleanup_failed");
    open_close_dirs(o);
}

static bool is_retained(const sl__storage *st, int64_t id)
{
    for (int i = 0; i < st->nretained; i++)
        if (st->retained[i].id == id)
            return true;
    return false;
}

/* Memory files, under st->mu. */
static mem_file *mem_find(sl__storage *st, const char *name)
{
    for (int i = 0; i < st->nfiles; i++)
        if (!strcmp(st->files[i].name, name))
            return &st->files[i];
    return NULL;
}

/* Takes ownership of data on success. 0 or SL_ENOMEM. */
static int mem_put(sl__storage *st, const char *name, uint8_t *data, size_t len)
{
    mem_file *f = mem_find(st, name);
    if (f) {
        sl__free(f->data);
        f->data = data;
        f->len = len;
        return 0;
    }
    void *grown = grow(st->files, &st->cap_files, st->nfiles, sizeof *st->files, 16);
    if (!grown)
        return SL_ENOMEM;
    st->files = grown;
    char *nm = sl__strdup(name);
    if (!nm)
        return SL_ENOMEM;
    st->files[st->nfiles++] = (mem_file){.name = nm, .data = data, .len = len};
    return 0;
}

/* Removes every memory file of checkpoint id. */
static void mem_remove_checkpoint(sl__storage *st, int64_t id)
{
    char prefix[40];
    int n = snprintf(prefix, sizeof prefix, "chk-%" PRId64 "/", id);
    for (int i = 0; i < st->nfiles;) {
        if (!strncmp(st->files[i].name, prefix, (size_t)n)) {
            sl__free(st->files[i].name);
            sl__free(st->files[i].data);
            st->files[i] = st->files[--st->nfiles];
        } else {
            i++;
        }
    }
}

/* ---- shared files and their references (incremental checkpoints), under st->mu ------- */

static shared_ref *shared_find(sl__storage *st, const char *name)
{
    for (int i = 0; i < st->nshared; i++)
        if (!strcmp(st->shared[i].name, name))
            return &st->shared[i];
    return NULL;
}

/* Adds a reference of checkpoint id to shared file name (a new entry when unknown).
 * 0 or SL_ENOMEM. */
static int shared_ref_add(sl__storage *st, const char *name, uint64_t size, uint64_t checksum,
                          int64_t id)
{
    shared_ref *r = shared_find(st, name);
    if (!r) {
        void *grown = grow(st->shared, &st->cap_shared, st->nshared, sizeof *st->shared, 64);
        if (!grown)
            return SL_ENOMEM;
        st->shared = grown;
        char *nm = sl__strdup(name);
        if (!nm)
            return SL_ENOMEM;
        r = &st->shared[st->nshared++];
        *r = (shared_ref){.name = nm, .size = size, .checksum = checksum};
    }
    for (int i = 0; i < r->nids; i++)
        if (r->ids[i] == id)
            return 0;
    void *grown = grow(r->ids, &r->cap_ids, r->nids, sizeof *r->ids, 4);
    if (!grown)
        return SL_ENOMEM;
    r->ids = grown;
    r->ids[r->nids++] = id;
    return 0;
}

/* Deletes the stored file rel ("shared/<name>", relative to the job directory). Under
 * st->mu. */
static void stored_file_delete(sl__storage *st, const char *rel)
{
    if (st->memory) {
        mem_file *f = mem_find(st, rel);
        if (f) {
            sl__free(f->name);
            sl__free(f->data);
            *f = st->files[--st->nfiles];
        }
        return;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", st->job_dir, rel);
    if (unlink(path) < 0 && errno != ENOENT)
        SL_WARN("event=shared_file_delete_failed path=%s error=\"%s\"", path, strerror(errno));
    else
        SL_DEBUG("event=shared_file_deleted path=%s", path);
}

/* Drops every reference of checkpoint id (all ids when id is -1) and deletes the shared
 * files left without one. */
static void shared_drop(sl__storage *st, int64_t id)
{
    for (int i = 0; i < st->nshared;) {
        shared_ref *r = &st->shared[i];
        for (int k = 0; k < r->nids;)
            if (id < 0 || r->ids[k] == id)
                r->ids[k] = r->ids[--r->nids];
            else
                k++;
        if (r->nids) {
            i++;
            continue;
        }
        char rel[MAX_FILE_LEN + 16];
        snprintf(rel, sizeof rel, "shared/%s", r->name);
        stored_file_delete(st, rel);
        sl__free(r->name);
        sl__free(r->ids);
        *r = st->shared[--st->nshared];
    }
}

/* Registers the shared files that checkpoint m (retained, found at creation) references. */
static void shared_register(sl__storage *st, const sl__checkpoint_meta *m)
{
    for (int i = 0; i < m->noperators; i++)
        for (int s = 0; s < m->operators[i].parallelism; s++) {
            const sl__subtask_state *ss = &m->operators[i].subtasks[s];
            for (int f = 0; f < ss->nfiles; f++)
                if (!strncmp(ss->files[f].path, "../shared/", 10) &&
                    shared_ref_add(st, ss->files[f].path + 10, ss->files[f].size,
                                   ss->files[f].checksum, m->id) < 0)
                    SL_WARN("event=shared_file_unregistered file=%s reason=\"out of memory\"",
                            ss->files[f].path);
        }
}

static char *chk_dir(const sl__storage *st, int64_t id)
{
    return path_fmt("%s/chk-%" PRId64, st->job_dir, id);
}

/* Reads the savepoint flag from the head of a _metadata file (false when unreadable). */
static bool metadata_is_savepoint(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    uint8_t h[12];
    ssize_t r = read(fd, h, sizeof h);
    close(fd);
    return r == (ssize_t)sizeof h && !memcmp(h, META_MAGIC, 4) &&
           (get_u32(h + 8) & META_FLAG_SAVEPOINT);
}

static int cmp_retained_desc(const void *a, const void *b)
{
    const retained_ckpt *x = a, *y = b;
    return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

static int retained_push(sl__storage *st, int64_t id, bool savepoint)
{
    void *grown = grow(st->retained, &st->cap_retained, st->nretained, sizeof *st->retained, 8);
    if (!grown)
        return SL_ENOMEM;
    st->retained = grown;
    st->retained[st->nretained++] = (retained_ckpt){.id = id, .savepoint = savepoint};
    return 0;
}

/* Lists the completed checkpoints (chk-<N> with a _metadata) already in the job directory:
 * a restarted process with the same job id continues from them. */
static int scan_job_dir(sl__storage *st, char *err, size_t cap)
{
    DECL_OSERR;
    DIR *d = opendir(st->job_dir);
    if (!d) {
        int e = errno;
        seterr(err, cap, "cannot list checkpoint directory %s: %s", st->job_dir, OSERR(e));
        return SL_EIO;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        int64_t id = parse_chk_name(e->d_name);
        if (id < 0)
            continue;
        char *md = path_fmt("%s/%s/_metadata", st->job_dir, e->d_name);
        if (!md) {
            rc = SL_ENOMEM;
            break;
        }
        if (is_file(md)) {
            rc = retained_push(st, id, metadata_is_savepoint(md));
            if (id > st->newest)
                st->newest = id;
        }
        sl__free(md);
    }
    closedir(d);
    if (rc < 0) {
        seterr(err, cap, "out of memory listing checkpoint directory %s", st->job_dir);
        return rc;
    }
    if (st->nretained > 1)
        qsort(st->retained, (size_t)st->nretained, sizeof *st->retained, cmp_retained_desc);
    return 0;
}

sl__storage *sl__storage_create(const char *dir, const char *job_id, int num_retained, char *err,
                                size_t cap)
{
    DECL_OSERR;
    if (!job_id || !valid_component(job_id) || strlen(job_id) > MAX_JOB_ID_LEN) {
        seterr(err, cap, "invalid job id \"%s\": expected 1 to %d characters of A-Z a-z 0-9 . _ -",
               job_id ? job_id : "(null)", MAX_JOB_ID_LEN);
        return NULL;
    }
    if (num_retained < 1) {
        seterr(err, cap,
               "invalid number of retained checkpoints %d (state.checkpoints.num-retained): "
               "expected at least 1",
               num_retained);
        return NULL;
    }
    sl__storage *st = sl__calloc(1, sizeof *st);
    if (!st) {
        seterr(err, cap, "out of memory creating checkpoint storage");
        return NULL;
    }
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->complete_mu, NULL);
    pthread_mutex_init(&st->del_mu, NULL);
    pthread_cond_init(&st->del_cv, NULL);
    st->num_retained = num_retained;
    st->newest = -1;
    st->memory = dir == NULL;
    st->job_id = sl__strdup(job_id);
    if (!st->job_id)
        goto nomem;
    if (st->memory) {
        st->job_dir = sl__strdup("memory");
        if (!st->job_dir)
            goto nomem;
        return st;
    }

    const char *base = strip_uri(dir);
    if (!base || !*base) {
        seterr(err, cap,
               "invalid checkpoint directory \"%s\": expected a local path or a file:///path URI",
               dir);
        sl__storage_destroy(st);
        return NULL;
    }
    size_t blen = strlen(base);
    while (blen > 1 && base[blen - 1] == '/')
        blen--;
    char *b = sl__strndup(base, blen);
    if (!b)
        goto nomem;
    st->job_dir = path_join(b, job_id);
    sl__free(b);
    if (!st->job_dir)
        goto nomem;

    char *failed = NULL;
    int r = make_dirs(st->job_dir, &failed);
    for (int i = 0; r == 0 && i < 2; i++) {
        char *sub = path_join(st->job_dir, i == 0 ? "shared" : "taskowned");
        if (!sub)
            goto nomem;
        r = make_dir(sub);
        if (r < 0)
            failed = sub;
        else
            sl__free(sub);
    }
    if (r == -ENOMEM && !failed)
        goto nomem;
    if (r < 0) {
        seterr(err, cap, "cannot create checkpoint directory %s: %s", failed ? failed : st->job_dir,
               OSERR(-r));
        sl__free(failed);
        sl__storage_destroy(st);
        return NULL;
    }
    if (access(st->job_dir, W_OK | X_OK) < 0) {
        int e = errno;
        seterr(err, cap, "checkpoint directory %s is not writable: %s", st->job_dir, OSERR(e));
        sl__storage_destroy(st);
        return NULL;
    }
    if (scan_job_dir(st, err, cap) < 0) {
        sl__storage_destroy(st);
        return NULL;
    }
    for (int i = 0; i < st->nretained; i++) {
        char cerr[512];
        sl__checkpoint_meta *m = NULL;
        char *dir = chk_dir(st, st->retained[i].id);
        if (dir && sl__checkpoint_load(st, dir, -1, &m, cerr, sizeof cerr) == 0)
            shared_register(st, m);
        else
            SL_WARN("event=checkpoint_unreadable dir=%s error=\"%s\"", dir ? dir : "?",
                    dir ? cerr : "out of memory");
        sl__checkpoint_meta_free(m);
        sl__free(dir);
    }
    if (st->nretained)
        SL_INFO("event=checkpoints_found dir=%s count=%d latest=%" PRId64 " shared_files=%d",
                st->job_dir, st->nretained, st->newest, st->nshared);
    return st;

nomem:
    seterr(err, cap, "out of memory creating checkpoint storage");
    sl__storage_destroy(st);
    return NULL;
}

void sl__storage_destroy(sl__storage *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->del_mu);
    st->del_stop = true;
    pthread_cond_broadcast(&st->del_cv);
    pthread_mutex_unlock(&st->del_mu);
    if (st->del_started)
        pthread_join(st->del_thread, NULL); /* after it deleted what is queued */
    SL_ASSERT(!st->ndoomed);
    sl__free(st->doomed);
    for (int i = 0; i < st->nfiles; i++) {
        sl__free(st->files[i].name);
        sl__free(st->files[i].data);
    }
    sl__free(st->files);
    for (int i = 0; i < st->nshared; i++) {
        sl__free(st->shared[i].name);
        sl__free(st->shared[i].ids);
    }
    sl__free(st->shared);
    for (int i = 0; i < st->nopen; i++)
        open_close_dirs(&st->open[i]);
    sl__free(st->open);
    sl__free(st->retained);
    sl__free(st->job_dir);
    sl__free(st->job_id);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->complete_mu);
    pthread_mutex_destroy(&st->del_mu);
    pthread_cond_destroy(&st->del_cv);
    sl__free(st);
}

const char *sl__storage_job_dir(const sl__storage *st)
{
    return st->job_dir;
}

const char *sl__storage_job_id(const sl__storage *st)
{
    return st->job_id;
}

/* ---- state writer --------------------------------------------------------------------- */

struct sl__state_writer {
    sl__storage *st;
    int64_t id;
    int subtask, kg_start, kg_end;
    size_t uid_len;
    char *name; /* relative to chk-<N>; handed to the caller's sl__subtask_state */
    char *path; /* for messages and unlink: the full path, or "memory:chk-<N>/<name>" */
    char *dir;  /* chk-<N> (disk) */
    int fd;     /* -1 until the file is created (lazily: an empty state makes no file) */
    int dfd;    /* a copy of chk-<N>'s descriptor once the file is created, to discard it */
    bool created;
    uint8_t *buf; /* disk: WRITE_BUF_SIZE bytes pending; memory: the whole file */
    size_t blen, bcap;
    uint64_t pos;     /* bytes emitted so far */
    uint64_t wrote;   /* bytes written to the file so far (disk) */
    uint64_t started; /* bytes whose writeback was started (writer_started) */
    XXH3_state_t *xx;
    uint64_t *off; /* nkg + 1 section offsets; handed to the caller */
    int next;      /* first relative key group whose offset is not yet set */
    uint64_t op_off, op_len;
    bool op_done;
    int rc; /* first error, with its message in msg */
    char msg[1024];
};

static void wfail(sl__state_writer *w, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void wfail(sl__state_writer *w, int rc, const char *fmt, ...)
{
    if (w->rc)
        return;
    w->rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
}

/* "<uid>-<subtask>.state" with the uid limited to [A-Za-z0-9._-] and FILE_NAME_MAX_UID
 * characters; when anything was replaced or cut, a hash of the real uid keeps names of
 * different uids apart ("my_op_1a2b3c4d-0.state" for "my op"). */
static char *state_file_name(const char *uid, int subtask)
{
    size_t n = strlen(uid), k = 0;
    char san[FILE_NAME_MAX_UID + 1];
    bool changed = n > FILE_NAME_MAX_UID;
    for (size_t i = 0; i < n && k < FILE_NAME_MAX_UID; i++) {
        unsigned char c = (unsigned char)uid[i];
        bool ok = isalnum(c) || c == '.' || c == '_' || c == '-';
        san[k++] = ok ? (char)c : '_';
        changed |= !ok;
    }
    san[k] = 0;
    if (changed)
        return path_fmt("%s_%08" PRIx32 "-%d.state", san, (uint32_t)sl__hash(uid, n), subtask);
    return path_fmt("%s-%d.state", san, subtask);
}

/* Makes chk-<id> (disk) the first time this storage writes into it, under st->mu, and
 * opens it and the job directory (o->jfd, o->dfd): a directory left by an earlier process
 * that died mid-checkpoint is removed first. 0, or -errno. */
static int chk_dir_ready(sl__storage *st, open_ckpt *o)
{
    const sl__file_ops *ops = sl__file_ops_current;
    if (o->dfd >= 0)
        return 0;
    char name[32];
    snprintf(name, sizeof name, "chk-%" PRId64, o->id);
    int jfd = ops->openat(AT_FDCWD, st->job_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (jfd < 0)
        return -errno;
    struct stat sb;
    if (fstatat(jfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && remove_tree_at(jfd, name) < 0)
        SL_WARN("event=stale_checkpoint_dir dir=%s/%s action=\"could not remove\"", st->job_dir,
                name);
    int r = ops->mkdirat(jfd, name, 0777) == 0 || errno == EEXIST ? 0 : -errno;
    if (r == 0 && (o->dfd = open_dir_at(jfd, name)) < 0) {
        r = -errno;
        unlinkat(jfd, name, AT_REMOVEDIR);
    }
    if (r < 0) {
        ops->close(jfd);
        return r;
    }
    o->jfd = jfd;
    return 0;
}

/* Creates the file (disk), under st->mu: refused when the checkpoint was aborted or
 * subsumed meanwhile, so nothing is ever created in a directory an abort removed. */
static int writer_create(sl__state_writer *w)
{
    DECL_OSERR;
    sl__storage *st = w->st;
    int rc = 0;
    lock(st);
    open_ckpt *o = open_entry(st, w->id, true);
    if (!o) {
        rc = SL_ENOMEM;
        wfail(w, rc, "out of memory creating %s", w->path);
    } else if (o->aborted || w->id <= st->newest) {
        rc = SL_ECANCELED;
        wfail(w, rc, "checkpoint %" PRId64 " was aborted or subsumed; %s not written", w->id,
              w->path);
    } else {
        int r = chk_dir_ready(st, o);
        if (r < 0) {
            rc = SL_EIO;
            wfail(w, rc, "cannot create checkpoint directory %s: %s", w->dir, OSERR(-r));
        }
        if (rc == 0) {
            w->dfd = reopen_dir(o->dfd);
            w->fd = w->dfd < 0
                        ? -1
                        : sl__file_ops_current->openat(
                              o->dfd, w->name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (w->fd < 0) {
                int e = errno;
                rc = SL_EIO;
                wfail(w, rc, "cannot create %s: %s", w->path, OSERR(e));
            } else {
                w->created = true;
            }
        }
    }
    unlock(st);
    return rc;
}

static bool accepting(sl__storage *st, int64_t id);

/* Fails w when its checkpoint was aborted or subsumed meanwhile: checked before each 64 KiB
 * reaches the file and before the fsync, so that a checkpoint the coordinator gave up (at
 * the job's end, say, where the final checkpoint replaces it) stops writing instead of
 * writing and syncing the whole state for nothing. */
static int writer_check_live(sl__state_writer *w)
{
    lock(w->st);
    bool live = accepting(w->st, w->id);
    unlock(w->st);
    if (!live)
        wfail(w, SL_ECANCELED,
              "checkpoint %" PRId64 " was aborted or subsumed while %s was written", w->id,
              w->path);
    return w->rc;
}

/* A state file's writeback is started every SYNC_CHUNK bytes while it is written, and its
 * sync waits for it SYNC_CHUNK bytes at a time (writer_sync). */
#define SYNC_CHUNK ((uint64_t)8 << 20)

/* Counts n bytes written to the file, and starts the writeback of the last SYNC_CHUNK or
 * more once they are there (without waiting for it: the sync at the end then has less to
 * wait for, as RocksDB's bytes_per_sync). */
static void writer_wrote(sl__state_writer *w, size_t n)
{
    w->wrote += n;
    if (w->wrote - w->started >= SYNC_CHUNK) {
        (void)sl__file_ops_current->sync_range(
            w->fd, (off_t)w->started, (off_t)(w->wrote - w->started), SYNC_FILE_RANGE_WRITE);
        w->started = w->wrote;
    }
}

/* Makes the file durable: waits for its writeback SYNC_CHUNK bytes at a time, checking
 * between ranges that the checkpoint is still live, so that an abort (the end of a job
 * aborts a checkpoint it replaces with the final one) stops the wait within a range instead
 * of after the whole file; then fsync, for the rest and the file's metadata. */
static void writer_sync(sl__state_writer *w)
{
    DECL_OSERR;
    const sl__file_ops *ops = sl__file_ops_current;
    if (w->wrote > SYNC_CHUNK) {
        for (uint64_t off = 0; off < w->wrote && !w->rc; off += SYNC_CHUNK) {
            if (writer_check_live(w) < 0)
                return;
            if (ops->sync_range(w->fd, (off_t)off, (off_t)SYNC_CHUNK,
                                SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                    SYNC_FILE_RANGE_WAIT_AFTER) < 0) {
                int e = errno;
                if (e == ENOSYS || e == EINVAL || e == ESPIPE)
                    break; /* not for this file: fsync waits for all */
                /* the error is reported here once, not again to the fsync */
                wfail(w, SL_EIO, "cannot sync %s: %s", w->path, OSERR(e));
            }
        }
    }
    if (!w->rc && !writer_check_live(w) && ops->fsync(w->fd) < 0) {
        int e = errno;
        wfail(w, SL_EIO, "cannot fsync %s: %s", w->path, OSERR(e));
    }
}

/* Writes the pending buffer (disk), hashing it first. */
static void writer_flush(sl__state_writer *w)
{
    DECL_OSERR;
    if (w->rc || !w->blen)
        return;
    if (w->created ? writer_check_live(w) < 0 : writer_create(w) < 0)
        return;
    XXH3_64bits_update(w->xx, w->buf, w->blen);
    int r = write_all(w->fd, w->buf, w->blen);
    if (r < 0)
        wfail(w, SL_EIO, "cannot write %s: %s", w->path, OSERR(-r));
    else
        writer_wrote(w, w->blen);
    w->blen = 0;
}

/* Appends n bytes to the file. Errors are sticky in w->rc. */
static void emit(sl__state_writer *w, const void *p, size_t n)
{
    DECL_OSERR;
    if (w->rc || !n)
        return;
    if (w->st->memory) {
        if (n > w->bcap - w->blen) {
            size_t ncap = w->bcap ? w->bcap : 4096;
            while (ncap - w->blen < n) {
                if (ncap > SIZE_MAX / 2) {
                    wfail(w, SL_ENOMEM, "out of memory writing %s", w->path);
                    return;
                }
                ncap *= 2;
            }
            uint8_t *b = sl__realloc(w->buf, ncap);
            if (!b) {
                wfail(w, SL_ENOMEM, "out of memory writing %s (%zu bytes)", w->path, ncap);
                return;
            }
            w->buf = b;
            w->bcap = ncap;
        }
        memcpy(w->buf + w->blen, p, n);
        w->blen += n;
        w->pos += n;
        return;
    }
    if (n <= w->bcap - w->blen) {
        memcpy(w->buf + w->blen, p, n);
        w->blen += n;
    } else {
        writer_flush(w);
        if (w->rc)
            return;
        if (n >= w->bcap) { /* large section: straight from the caller's memory */
            if (w->created ? writer_check_live(w) < 0 : writer_create(w) < 0)
                return;
            XXH3_64bits_update(w->xx, p, n);
            int r = write_all(w->fd, p, n);
            if (r < 0) {
                wfail(w, SL_EIO, "cannot write %s: %s", w->path, OSERR(-r));
                return;
            }
            writer_wrote(w, n);
        } else {
            memcpy(w->buf, p, n);
            w->blen = n;
        }
    }
    w->pos += n;
}

static void emit_u32(sl__state_writer *w, uint32_t v)
{
    uint8_t b[4];
    put_u32(b, v);
    emit(w, b, 4);
}

static void emit_u64(sl__state_writer *w, uint64_t v)
{
    uint8_t b[8];
    put_u64(b, v);
    emit(w, b, 8);
}

static void writer_free(sl__state_writer *w)
{
    if (!w)
        return;
    if (w->xx)
        XXH3_freeState(w->xx);
    sl__free(w->buf);
    sl__free(w->off);
    sl__free(w->name);
    sl__free(w->path);
    sl__free(w->dir);
    if (w->dfd >= 0)
        sl__file_ops_current->close(w->dfd);
    sl__free(w);
}

sl__state_writer *sl__state_writer_open(sl__storage *st, int64_t id, const char *uid, int subtask,
                                        int kg_start, int kg_end, char *err, size_t cap)
{
    if (!st || id < 0 || !uid || !*uid || strlen(uid) > MAX_NAME_LEN || subtask < 0 ||
        kg_start < 0 || kg_start > kg_end || kg_end > MAX_KEY_GROUPS) {
        seterr(err, cap,
               "invalid state writer arguments: checkpoint %" PRId64 ", uid \"%s\", subtask %d, "
               "key groups [%d, %d)",
               id, uid ? uid : "(null)", subtask, kg_start, kg_end);
        return NULL;
    }
    sl__state_writer *w = sl__calloc(1, sizeof *w);
    if (!w) {
        seterr(err, cap, "out of memory opening a state file for %s", uid);
        return NULL;
    }
    w->st = st;
    w->id = id;
    w->subtask = subtask;
    w->kg_start = kg_start;
    w->kg_end = kg_end;
    w->uid_len = strlen(uid);
    w->fd = w->dfd = -1;
    w->name = state_file_name(uid, subtask);
    w->off = sl__calloc((size_t)(kg_end - kg_start + 1), sizeof *w->off);
    w->xx = XXH3_createState();
    if (w->name) {
        if (st->memory) {
            w->path = path_fmt("memory:chk-%" PRId64 "/%s", id, w->name);
        } else {
            w->dir = chk_dir(st, id);
            w->path = w->dir ? path_join(w->dir, w->name) : NULL;
            w->bcap = WRITE_BUF_SIZE;
            w->buf = sl__malloc(w->bcap);
        }
    }
    if (!w->name || !w->off || !w->xx || !w->path || (!st->memory && !w->buf)) {
        seterr(err, cap, "out of memory opening a state file for %s", uid);
        writer_free(w);
        return NULL;
    }
    XXH3_64bits_reset(w->xx);

    /* refuse early what writer_create would refuse later */
    lock(st);
    open_ckpt *o = open_entry(st, id, false);
    bool refused = (o && o->aborted) || id <= st->newest;
    int64_t newest = st->newest;
    unlock(st);
    if (refused) {
        if (id <= newest)
            seterr(err, cap,
                   "cannot write %s: checkpoint %" PRId64
                   " is not newer than the latest completed checkpoint %" PRId64,
                   w->path, id, newest);
        else
            seterr(err, cap, "cannot write %s: checkpoint %" PRId64 " was aborted", w->path, id);
        writer_free(w);
        return NULL;
    }

    uint8_t h[STATE_HEADER_FIXED];
    memcpy(h, STATE_MAGIC, 4);
    put_u16(h + 4, FORMAT_VERSION);
    put_u16(h + 6, KIND_STATE);
    put_u64(h + 8, (uint64_t)id);
    put_u32(h + 16, (uint32_t)subtask);
    put_u32(h + 20, (uint32_t)kg_start);
    put_u32(h + 24, (uint32_t)kg_end);
    put_u32(h + 28, (uint32_t)w->uid_len);
    emit(w, h, sizeof h);
    emit(w, uid, w->uid_len);
    if (w->rc) {
        seterr(err, cap, "%s", w->msg);
        writer_free(w);
        return NULL;
    }
    return w;
}

/* Sets the start offsets of every key group up to and including relative index upto. */
static void set_offsets(sl__state_writer *w, int upto)
{
    for (; w->next <= upto; w->next++)
        w->off[w->next] = w->pos;
}

int sl__state_writer_add_kg(sl__state_writer *w, int kg, const uint8_t *p, size_t n)
{
    if (w->rc)
        return w->rc;
    int rel = kg - w->kg_start;
    if (kg < w->kg_start || kg >= w->kg_end || rel < w->next || w->op_done) {
        wfail(w, SL_EINVAL, "key group %d added to %s out of order or outside its range [%d, %d)",
              kg, w->path, w->kg_start, w->kg_end);
        return w->rc;
    }
    set_offsets(w, rel);
    emit(w, p, n);
    return w->rc;
}

int sl__state_writer_set_operator(sl__state_writer *w, const uint8_t *p, size_t n)
{
    if (w->rc)
        return w->rc;
    if (w->op_done) {
        wfail(w, SL_EINVAL, "operator state set twice in %s", w->path);
        return w->rc;
    }
    set_offsets(w, w->kg_end - w->kg_start);
    w->op_off = w->pos;
    emit(w, p, n);
    w->op_len = n;
    w->op_done = true;
    return w->rc;
}

/* Removes what the writer created (the file, or nothing in memory), in the directory it
 * was created in. The name goes now; the file's blocks are freed when its last descriptor
 * is closed, and the last one is a reference the deleting thread closes: a large state cut
 * short by an abort, or refused at the end, costs the writer's thread nothing more. */
static void writer_discard(sl__state_writer *w)
{
    int ref = -1;
    if (w->created && w->dfd >= 0) {
        ref = openat(w->dfd, w->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        unlinkat(w->dfd, w->name, 0);
        if (ref < 0 && w->fd >= 0) {
            /* the name is gone already (an abort had the directory removed while this
             * wrote): the writer's own descriptor is the last reference (closed by the
             * deleting thread with close(2): deletions bypass sl__file_ops) */
            ref = w->fd;
            w->fd = -1;
        }
    }
    if (w->fd >= 0) {
        sl__file_ops_current->close(w->fd);
        w->fd = -1;
    }
    if (ref >= 0)
        delete_later(w->st, (doomed){.jfd = -1, .id = -1, .fd = ref});
}

int sl__state_writer_close(sl__state_writer *w, sl__subtask_state *out, char *err, size_t cap)
{
    DECL_OSERR;
    memset(out, 0, sizeof *out);
    int nkg = w->kg_end - w->kg_start;
    if (!w->op_done) {
        set_offsets(w, nkg);
        w->op_off = w->pos;
        w->op_len = 0;
    }
    sl__storage *st = w->st;
    bool empty = nkg == 0 && w->op_len == 0;
    uint64_t checksum = 0, size = 0;

    if (empty && !w->rc) {
        /* no keyed range, no operator state: no file ("" in the metadata); a header long
         * enough to have been flushed already is removed */
        writer_discard(w);
        memset(w->off, 0, sizeof *w->off);
        w->op_off = 0;
        w->name[0] = 0;
    } else {
        /* index, then the trailer's length, both checksummed; then the checksum */
        emit_u32(w, (uint32_t)(nkg + 1));
        for (int i = 0; i <= nkg; i++)
            emit_u64(w, w->off[i]);
        emit_u64(w, w->op_off);
        emit_u64(w, w->op_len);
        size = w->pos + TRAILER_SIZE;
        emit_u64(w, size);
        uint8_t cs[8];
        if (st->memory) {
            if (!w->rc) {
                checksum = XXH3_64bits(w->buf, w->blen);
                put_u64(cs, checksum);
                emit(w, cs, 8);
            }
        } else {
            writer_flush(w);
            if (!w->rc && !writer_check_live(w)) {
                checksum = XXH3_64bits_digest(w->xx);
                put_u64(cs, checksum);
                int r = write_all(w->fd, cs, 8);
                if (r < 0)
                    wfail(w, SL_EIO, "cannot write %s: %s", w->path, OSERR(-r));
                else
                    writer_wrote(w, 8);
            }
            if (!w->rc)
                writer_sync(w);
            if (w->fd >= 0 && !w->rc) { /* else writer_discard hands it to the deleter */
                int r = sl__file_ops_current->close(w->fd);
                int e = errno;
                w->fd = -1;
                if (r < 0)
                    wfail(w, SL_EIO, "cannot close %s: %s", w->path, OSERR(e));
            }
        }
    }

    /* publish: refused when the checkpoint was aborted or subsumed while writing */
    if (!w->rc) {
        lock(st);
        open_ckpt *o = open_entry(st, w->id, false);
        if ((o && o->aborted) || w->id <= st->newest) {
            wfail(w, SL_ECANCELED, "checkpoint %" PRId64 " was aborted while %s was written", w->id,
                  w->path);
        } else if (st->memory && !empty) {
            char *key = path_fmt("chk-%" PRId64 "/%s", w->id, w->name);
            if (!key || mem_put(st, key, w->buf, w->blen) < 0)
                wfail(w, SL_ENOMEM, "out of memory storing %s", w->path);
            else
                w->buf = NULL; /* owned by the storage now */
            sl__free(key);
        }
        unlock(st);
    }
    if (w->rc) {
        writer_discard(w);
        seterr(err, cap, "%s", w->msg);
        int rc = w->rc;
        writer_free(w);
        return rc;
    }
    out->subtask = w->subtask;
    out->file = w->name;
    out->file_size = size;
    out->checksum = checksum;
    out->kg_start = w->kg_start;
    out->kg_end = w->kg_end;
    out->kg_offset = w->off;
    out->op_offset = w->op_off;
    out->op_length = w->op_len;
    w->name = NULL;
    w->off = NULL;
    writer_free(w);
    return 0;
}

void sl__state_writer_abort(sl__state_writer *w)
{
    if (!w)
        return;
    writer_discard(w);
    writer_free(w);
}

void sl__subtask_state_free(sl__subtask_state *s)
{
    if (!s)
        return;
    sl__free(s->file);
    sl__free(s->kg_offset);
    for (int i = 0; i < s->nfiles; i++) {
        sl__free(s->files[i].name);
        sl__free(s->files[i].path);
    }
    sl__free(s->files);
    s->file = NULL;
    s->kg_offset = NULL;
    s->files = NULL;
    s->nfiles = 0;
}

/* The directory of checkpoint chk: itself when a directory, else the file's directory. */
static char *resolve_chk_dir(const char *chk)
{
    const char *p = strip_uri(chk);
    if (!p)
        return NULL;
    if (is_dir(p))
        return sl__strdup(p);
    const char *slash = strrchr(p, '/');
    if (!slash)
        return sl__strdup(".");
    return sl__strndup(p, slash == p ? 1 : (size_t)(slash - p));
}

/* ---- database files of incremental snapshots ------------------------------------------- */

/* May files still be stored for checkpoint id? Under st->mu. */
static bool accepting(sl__storage *st, int64_t id)
{
    open_ckpt *o = open_entry(st, id, false);
    return !(o && o->aborted) && id > st->newest;
}

/* Reads fd in to its end, hashing what it reads (XXH3-64) and writing it to out unless out
 * is -1. 0 or -errno; *read_failed tells which side failed. */
static int pump(int in, int out, uint64_t *size, uint64_t *sum, bool *read_failed)
{
    *read_failed = false;
    uint8_t *buf = sl__malloc(1 << 20);
    XXH3_state_t *xx = XXH3_createState();
    int rc = buf && xx ? 0 : -ENOMEM;
    if (xx)
        XXH3_64bits_reset(xx);
    uint64_t n = 0;
    while (rc == 0) {
        ssize_t r = read(in, buf, 1 << 20);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            *read_failed = true;
        }
        if (r <= 0)
            break;
        XXH3_64bits_update(xx, buf, (size_t)r);
        n += (uint64_t)r;
        if (out >= 0)
            rc = write_all(out, buf, (size_t)r);
    }
    if (rc == 0) {
        *size = n;
        *sum = XXH3_64bits_digest(xx);
    }
    XXH3_freeState(xx);
    sl__free(buf);
    return rc;
}

/* Copies src into the new file dst in the directory dirfd (AT_FDCWD: dst is a path),
 * through the file operations, hashing what it copies, then fsyncs. 0 or -errno; *src_side
 * tells whether reading src failed. */
static int copy_file(const char *src, int dirfd, const char *dst, uint64_t *size, uint64_t *sum,
                     bool *src_side)
{
    const sl__file_ops *ops = sl__file_ops_current;
    *src_side = true;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    *src_side = false;
    int out = ops->openat(dirfd, dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return -e;
    }
    int rc = pump(in, out, size, sum, src_side);
    if (rc == 0 && ops->fsync(out) < 0)
        rc = -errno;
    if (ops->close(out) < 0 && rc == 0)
        rc = -errno;
    close(in);
    if (rc < 0)
        unlinkat(dirfd, dst, 0);
    return rc;
}

/* Reads the file at path whole (memory storage: its bytes are kept). */
static int slurp(const char *path, uint8_t **data, size_t *len)
{
    return read_file(path, UINT64_MAX / 2, data, len);
}

/* Stores one file of the snapshot (directory dir) as rel ("shared/<x>" or
 * "chk-<id>/<x>"), filling size and checksum. Refused once id was aborted or subsumed. */
static int store_file(sl__storage *st, int64_t id, const char *dir, const char *name,
                      const char *rel, bool shared, uint64_t *size, uint64_t *sum, char *err,
                      size_t cap)
{
    DECL_OSERR;
    char src[PATH_MAX];
    snprintf(src, sizeof src, "%s/%s", dir, name);
    if (st->memory) {
        uint8_t *data;
        size_t len;
        int r = slurp(src, &data, &len);
        if (r < 0) {
            seterr(err, cap, "cannot read %s: %s", src, OSERR(-r));
            return r == -ENOMEM ? SL_ENOMEM : SL_EIO;
        }
        *size = len;
        *sum = XXH3_64bits(data, len);
        lock(st);
        int rc = accepting(st, id) ? mem_put(st, rel, data, len) : SL_ECANCELED;
        unlock(st);
        if (rc < 0) {
            sl__free(data);
            if (rc == SL_ECANCELED)
                seterr(err, cap, "checkpoint %" PRId64 " was aborted; memory:%s not stored", id,
                       rel);
            else
                seterr(err, cap, "out of memory storing memory:%s", rel);
        }
        return rc;
    }
    char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/%s", st->job_dir, rel);
    /* the checkpoint's directory is made (or the copy refused) under the lock, as for state
     * files, so nothing is created in a directory an abort removed; the file is created
     * through the checkpoint's descriptors: a file of chk-<id> in it, a shared/ file in the
     * job directory it was made in */
    int rc = 0, dfd = -1;
    const char *dname = shared ? rel : strchr(rel, '/') + 1;
    lock(st);
    open_ckpt *o = open_entry(st, id, true);
    if (!o) {
        rc = SL_ENOMEM;
        seterr(err, cap, "out of memory storing %s", dst);
    } else if (!accepting(st, id)) {
        rc = SL_ECANCELED;
        seterr(err, cap, "checkpoint %" PRId64 " was aborted or subsumed; %s not written", id, dst);
    } else {
        int r = chk_dir_ready(st, o);
        /* another descriptor: an abort may close the entry's while the copy runs outside
         * the lock */
        if (r == 0 && (dfd = reopen_dir(shared ? o->jfd : o->dfd)) < 0)
            r = -errno;
        if (r < 0) {
            rc = SL_EIO;
            seterr(err, cap, "cannot create checkpoint directory %s/chk-%" PRId64 ": %s",
                   st->job_dir, id, OSERR(-r));
        }
    }
    unlock(st);
    if (rc < 0)
        return rc;
    bool src_side;
    int r = copy_file(src, dfd, dname, size, sum, &src_side);
    sl__file_ops_current->close(dfd);
    if (r < 0) {
        seterr(err, cap, "cannot %s %s: %s", src_side ? "read" : "write", src_side ? src : dst,
               OSERR(-r));
        return r == -ENOMEM ? SL_ENOMEM : SL_EIO;
    }
    return 0;
}

int sl__storage_put_db_files(sl__storage *st, int64_t id, const char *uid, int subtask,
                             sl__keyed_snapshot *snap, sl__subtask_state *out, char *err,
                             size_t cap)
{
    const char *dir;
    const sl__snapshot_file *files;
    size_t n;
    if (!st || id < 0 || !uid || !sl__keyed_snapshot_files(snap, &dir, &files, &n) ||
        n > MAX_DB_FILES) {
        seterr(err, cap, "invalid arguments storing database files for checkpoint %" PRId64, id);
        return SL_EINVAL;
    }
    /* names: "<uid>-<subtask>-<id>-<file>" in shared/ (unique: a database file's name is
     * unique within one database, and a subtask's database lives within one checkpoint
     * id range), "<uid>-<subtask>.<file>" in chk-<id>/ */
    char *prefix = state_file_name(uid, subtask); /* "<uid>-<subtask>.state" */
    sl__db_file *df = sl__calloc(n ? n : 1, sizeof *df);
    if (!prefix || !df) {
        sl__free(prefix);
        sl__free(df);
        seterr(err, cap, "out of memory storing database files for checkpoint %" PRId64, id);
        return SL_ENOMEM;
    }
    prefix[strlen(prefix) - 6] = 0; /* drop ".state" */
    int rc = 0;
    size_t nf = 0;
    uint64_t stored = 0, reused = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const sl__snapshot_file *f = &files[i];
        sl__db_file *d = &df[nf];
        if (!valid_component(f->name)) {
            seterr(err, cap, "database file \"%s\" in %s has a name Sluice cannot store", f->name,
                   dir);
            rc = SL_EINVAL;
            break;
        }
        d->name = sl__strdup(f->name);
        if (!d->name) {
            rc = SL_ENOMEM;
            seterr(err, cap, "out of memory storing database files");
            break;
        }
        nf++;
        if (f->immutable && f->uploaded) {
            /* stored before: reference it again if storage still holds it */
            lock(st);
            shared_ref *r = shared_find(st, f->uploaded);
            if (r && !accepting(st, id)) {
                rc = SL_ECANCELED;
            } else if (r && r->size == f->size) {
                rc = shared_ref_add(st, f->uploaded, r->size, r->checksum, id);
                d->size = r->size;
                d->checksum = r->checksum;
                d->path = rc == 0 ? path_fmt("../shared/%s", f->uploaded) : NULL;
                if (rc == 0 && !d->path)
                    rc = SL_ENOMEM;
            }
            unlock(st);
            if (rc == SL_ECANCELED)
                seterr(err, cap, "checkpoint %" PRId64 " was aborted or subsumed", id);
            else if (rc < 0)
                seterr(err, cap, "out of memory storing database files");
            if (d->path) {
                reused += d->size;
                continue;
            }
            if (rc < 0)
                break;
        }
        char *stored_as = f->immutable ? path_fmt("%s-%" PRId64 "-%s", prefix, id, f->name)
                                       : path_fmt("%s.%s", prefix, f->name);
        char *rel = !stored_as     ? NULL
                    : f->immutable ? path_fmt("shared/%s", stored_as)
                                   : path_fmt("chk-%" PRId64 "/%s", id, stored_as);
        if (!rel || strlen(stored_as) > MAX_FILE_LEN - 16) {
            rc = rel ? SL_EINVAL : SL_ENOMEM;
            seterr(err, cap, "cannot name database file %s for storage", f->name);
        } else {
            rc = store_file(st, id, dir, f->name, rel, f->immutable, &d->size, &d->checksum, err,
                            cap);
        }
        if (rc == 0 && f->immutable) {
            lock(st);
            rc = accepting(st, id) ? shared_ref_add(st, stored_as, d->size, d->checksum, id)
                                   : SL_ECANCELED;
            if (rc < 0) {
                stored_file_delete(st, rel); /* not registered: no abort would delete it */
                seterr(err, cap,
                       rc == SL_ECANCELED ? "checkpoint %" PRId64 " was aborted"
                                          : "out of memory (checkpoint %" PRId64 ")",
                       id);
            }
            unlock(st);
            if (rc == 0)
                sl__keyed_snapshot_set_uploaded(snap, f->name, stored_as);
        }
        if (rc == 0) {
            d->path = f->immutable ? path_fmt("../shared/%s", stored_as) : sl__strdup(stored_as);
            if (!d->path) {
                rc = SL_ENOMEM;
                seterr(err, cap, "out of memory storing database files");
            }
            stored += d->size;
            d->stored = true;
        }
        sl__free(stored_as);
        sl__free(rel);
    }
    sl__free(prefix);
    if (rc < 0) {
        for (size_t i = 0; i < nf; i++) {
            sl__free(df[i].name);
            sl__free(df[i].path);
        }
        sl__free(df);
        return rc;
    }
    out->files = df;
    out->nfiles = (int)nf;
    SL_INFO("event=db_files_stored id=%" PRId64 " uid=%s subtask=%d files=%zu stored_bytes=%" PRIu64
            " reused_bytes=%" PRIu64,
            id, uid, subtask, nf, stored, reused);
    return 0;
}

/* Checks the bytes of one fetched file against its metadata entry. */
static int check_fetched(const sl__db_file *f, const char *label, uint64_t size, uint64_t sum,
                         char *err, size_t cap)
{
    if (size != f->size) {
        seterr(err, cap,
               "%s has %" PRIu64 " bytes but the checkpoint metadata records %" PRIu64
               ": the file was truncated or replaced",
               label, size, f->size);
        return SL_EFORMAT;
    }
    if (sum != f->checksum) {
        seterr(err, cap, "checksum mismatch in %s: the file is corrupt", label);
        return SL_EFORMAT;
    }
    return 0;
}

/* XXH3 and size of a whole file. 0 or -errno. */
static int hash_file(const char *path, uint64_t *size, uint64_t *sum)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    bool read_failed;
    int rc = pump(fd, -1, size, sum, &read_failed);
    close(fd);
    return rc;
}

int sl__storage_fetch_db_files(sl__storage *st, const char *chk, int64_t id,
                               const sl__subtask_state *s, const char *dir, char *err, size_t cap)
{
    DECL_OSERR;
    bool memory = !chk && st && st->memory;
    char *cdir = NULL;
    if (!memory) {
        if (chk && !strip_uri(chk)) {
            seterr(err, cap, "%s is not a checkpoint: expected a local path or file:///path URI",
                   chk);
            return SL_ENOTFOUND;
        }
        cdir = chk ? resolve_chk_dir(chk) : (st && id >= 0 ? chk_dir(st, id) : NULL);
        if (!cdir) {
            seterr(err, cap, "no checkpoint given for database files");
            return SL_EINVAL;
        }
    }
    int rc = 0;
    for (int i = 0; i < s->nfiles && rc == 0; i++) {
        const sl__db_file *f = &s->files[i];
        char dst[PATH_MAX], src[PATH_MAX];
        snprintf(dst, sizeof dst, "%s/%s", dir, f->name);
        uint64_t size = 0, sum = 0;
        if (memory) {
            char key[2 * MAX_FILE_LEN];
            if (!strncmp(f->path, "../", 3))
                snprintf(key, sizeof key, "%s", f->path + 3);
            else
                snprintf(key, sizeof key, "chk-%" PRId64 "/%s", id, f->path);
            snprintf(src, sizeof src, "memory:%s", key);
            lock(st);
            mem_file *mf = mem_find(st, key);
            int r = -ENOENT;
            if (mf) {
                int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                r = fd < 0 ? -errno : write_all(fd, mf->data, mf->len);
                if (fd >= 0)
                    close(fd);
                size = mf->len;
                sum = XXH3_64bits(mf->data, mf->len);
            }
            unlock(st);
            if (r == -ENOENT && !mf) {
                seterr(err, cap, "database file %s is missing: the checkpoint is incomplete", src);
                rc = SL_EFORMAT;
            } else if (r < 0) {
                seterr(err, cap, "cannot write %s: %s", dst, OSERR(-r));
                rc = SL_EIO;
            }
        } else {
            snprintf(src, sizeof src, "%s/%s", cdir, f->path);
            /* immutable shared files are linked (RocksDB only reads them), the rest copied */
            bool linked = !strncmp(f->path, "../shared/", 10) && link(src, dst) == 0;
            int r;
            bool src_side = true;
            if (linked)
                r = hash_file(dst, &size, &sum);
            else
                r = copy_file(src, AT_FDCWD, dst, &size, &sum, &src_side);
            if (r == -ENOENT && src_side) {
                seterr(err, cap, "database file %s is missing: the checkpoint is incomplete", src);
                rc = SL_EFORMAT;
            } else if (r < 0) {
                seterr(err, cap, "cannot %s %s: %s", src_side ? "read" : "write",
                       src_side ? src : dst, OSERR(-r));
                rc = r == -ENOMEM ? SL_ENOMEM : SL_EIO;
            }
        }
        if (rc == 0)
            rc = check_fetched(f, src, size, sum, err, cap);
    }
    sl__free(cdir);
    return rc;
}

int sl__storage_check_db_files(const char *chk, const sl__subtask_state *s, char *err, size_t cap)
{
    DECL_OSERR;
    char *cdir = chk && strip_uri(chk) ? resolve_chk_dir(chk) : NULL;
    if (!cdir) {
        seterr(err, cap, "%s is not a checkpoint: expected a local path or file:///path URI",
               chk ? chk : "(null)");
        return SL_ENOTFOUND;
    }
    int rc = 0;
    for (int i = 0; i < s->nfiles && rc == 0; i++) {
        char src[PATH_MAX];
        snprintf(src, sizeof src, "%s/%s", cdir, s->files[i].path);
        uint64_t size = 0, sum = 0;
        int r = hash_file(src, &size, &sum);
        if (r == -ENOENT) {
            seterr(err, cap, "database file %s is missing: the checkpoint is incomplete", src);
            rc = SL_EFORMAT;
        } else if (r < 0) {
            seterr(err, cap, "cannot read %s: %s", src, OSERR(-r));
            rc = r == -ENOMEM ? SL_ENOMEM : SL_EIO;
        } else {
            rc = check_fetched(&s->files[i], src, size, sum, err, cap);
        }
    }
    sl__free(cdir);
    return rc;
}

int sl__storage_shared_refs(sl__storage *st, const char *name)
{
    lock(st);
    shared_ref *r = shared_find(st, name);
    int n = r ? r->nids : 0;
    unlock(st);
    return n;
}

/* ---- metadata: checks, encoding, decoding --------------------------------------------- */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Checks every field of m; on a problem writes what is wrong into why and returns -1
 * (SL_ENOMEM when the check itself runs out of memory). */
static int meta_check(const sl__checkpoint_meta *m, char *why, size_t cap)
{
    if (m->id < 0)
        return seterr(why, cap, "checkpoint id %" PRId64 " is negative", m->id), -1;
    if (!m->job_id || !valid_component(m->job_id) || strlen(m->job_id) > MAX_JOB_ID_LEN)
        return seterr(why, cap, "job id \"%s\" is not a valid job id",
                      m->job_id ? m->job_id : "(null)"),
               -1;
    if (!m->job_name)
        return seterr(why, cap, "the job name is missing"), -1;
    if (m->timestamp_ms < 0 || m->duration_ms < 0)
        return seterr(why, cap, "negative timestamp %" PRId64 " or duration %" PRId64,
                      m->timestamp_ms, m->duration_ms),
               -1;
    if (m->noperators < 0 || (m->noperators > 0 && !m->operators))
        return seterr(why, cap, "operator count %d without operators", m->noperators), -1;

    /* uids unique, state file names unique */
    size_t nfiles = 0;
    for (int i = 0; i < m->noperators; i++)
        if (m->operators[i].parallelism > 0 && m->operators[i].parallelism <= MAX_KEY_GROUPS)
            nfiles += (size_t)m->operators[i].parallelism;
    char **uids = sl__calloc((size_t)m->noperators + 1, sizeof *uids);
    char **files = sl__calloc(nfiles + 1, sizeof *files);
    if (!uids || !files) {
        sl__free(uids);
        sl__free(files);
        return SL_ENOMEM;
    }
    size_t nf = 0;
    int rc = 0;
    for (int i = 0; i < m->noperators && rc == 0; i++) {
        const sl__operator_state_meta *o = &m->operators[i];
        if (!o->uid || !*o->uid || strlen(o->uid) > MAX_NAME_LEN) {
            rc = -1, seterr(why, cap, "operator %d has no uid", i);
            break;
        }
        uids[i] = o->uid;
        if (!o->name) {
            rc = -1, seterr(why, cap, "operator \"%s\" has no name", o->uid);
            break;
        }
        if (o->max_parallelism < 1 || o->max_parallelism > MAX_KEY_GROUPS) {
            rc = -1, seterr(why, cap, "operator \"%s\" has max parallelism %d, outside 1..%d",
                            o->uid, o->max_parallelism, MAX_KEY_GROUPS);
            break;
        }
        if (o->parallelism < 1 || o->parallelism > o->max_parallelism) {
            rc = -1, seterr(why, cap,
                            "operator \"%s\" has parallelism %d, outside 1..%d (its max "
                            "parallelism)",
                            o->uid, o->parallelism, o->max_parallelism);
            break;
        }
        if (!o->subtasks) {
            rc = -1, seterr(why, cap, "operator \"%s\" has no subtasks", o->uid);
            break;
        }
        bool keyed = false;
        for (int s = 0; s < o->parallelism; s++)
            keyed |= o->subtasks[s].kg_start != o->subtasks[s].kg_end;
        int expect = 0;
        for (int s = 0; s < o->parallelism && rc == 0; s++) {
            const sl__subtask_state *ss = &o->subtasks[s];
            int n = ss->kg_end - ss->kg_start;
            if (ss->subtask != s) {
                rc = -1, seterr(why, cap, "operator \"%s\": subtask entry %d says subtask %d",
                                o->uid, s, ss->subtask);
            } else if (!ss->file || strlen(ss->file) > MAX_FILE_LEN ||
                       !valid_state_file(ss->file)) {
                rc = -1, seterr(why, cap, "operator \"%s\" subtask %d: invalid file name \"%s\"",
                                o->uid, s, ss->file ? ss->file : "(null)");
            } else if (ss->kg_start < 0 || ss->kg_start > ss->kg_end ||
                       ss->kg_end > o->max_parallelism) {
                rc = -1, seterr(why, cap,
                                "operator \"%s\" subtask %d: key groups [%d, %d) are not a range "
                                "within [0, %d)",
                                o->uid, s, ss->kg_start, ss->kg_end, o->max_parallelism);
            } else if (keyed && ss->kg_start != expect) {
                rc = -1, seterr(why, cap,
                                "operator \"%s\" subtask %d: key groups [%d, %d) do not start "
                                "where the previous subtask's end (%d): every key group must "
                                "belong to exactly one subtask",
                                o->uid, s, ss->kg_start, ss->kg_end, expect);
            } else if (!*ss->file) {
                bool zero = ss->file_size == 0 && ss->checksum == 0 && ss->op_offset == 0 &&
                            ss->op_length == 0;
                for (int k = 0; zero && ss->kg_offset && k <= n; k++)
                    zero = ss->kg_offset[k] == 0;
                if (!zero)
                    rc = -1, seterr(why, cap,
                                    "operator \"%s\" subtask %d has no state file but records "
                                    "state sizes or offsets",
                                    o->uid, s);
            } else if (!ss->kg_offset) {
                rc = -1,
                seterr(why, cap, "operator \"%s\" subtask %d has no key-group offsets", o->uid, s);
            } else {
                /* the layout of a state file, exactly: header with the uid, key-group
                 * sections, operator section, index, trailer */
                uint64_t first = STATE_HEADER_FIXED + strlen(o->uid);
                uint64_t index = 4 + 8 * ((uint64_t)n + 1) + 16;
                for (int k = 0; k < n && rc == 0; k++)
                    if (ss->kg_offset[k + 1] < ss->kg_offset[k])
                        rc = -1, seterr(why, cap,
                                        "operator \"%s\" subtask %d: the offset of key group %d "
                                        "(%" PRIu64 ") is below the previous one (%" PRIu64 ")",
                                        o->uid, s, ss->kg_start + k + 1, ss->kg_offset[k + 1],
                                        ss->kg_offset[k]);
                if (rc == 0 && ss->kg_offset[0] != first)
                    rc = -1, seterr(why, cap,
                                    "operator \"%s\" subtask %d: the first section starts at "
                                    "%" PRIu64 ", not after the %" PRIu64 "-byte header",
                                    o->uid, s, ss->kg_offset[0], first);
                if (rc == 0 && ss->op_offset != ss->kg_offset[n])
                    rc = -1, seterr(why, cap,
                                    "operator \"%s\" subtask %d: the operator state starts at "
                                    "%" PRIu64 ", not after the keyed state (%" PRIu64 ")",
                                    o->uid, s, ss->op_offset, ss->kg_offset[n]);
                if (rc == 0 &&
                    (ss->op_length > UINT64_MAX / 4 || ss->op_offset > UINT64_MAX / 4 ||
                     ss->op_offset + ss->op_length + index + TRAILER_SIZE != ss->file_size))
                    rc = -1, seterr(why, cap,
                                    "operator \"%s\" subtask %d: sections end at %" PRIu64
                                    " but the file size %" PRIu64 " needs them to end at %" PRIu64,
                                    o->uid, s, ss->op_offset + ss->op_length, ss->file_size,
                                    ss->file_size - index - TRAILER_SIZE);
                if (rc == 0 && strncmp(ss->file, "../", 3))
                    files[nf++] = ss->file;
            }
            if (rc == 0 && ss->nfiles && (n == 0 || !*ss->file || !ss->files))
                rc = -1, seterr(why, cap,
                                "operator \"%s\" subtask %d lists database files without a "
                                "state file and key groups",
                                o->uid, s);
            for (int f = 0; f < ss->nfiles && rc == 0; f++) {
                const sl__db_file *df = &ss->files[f];
                if (!df->name || !df->path || !valid_component(df->name) || !*df->path ||
                    !valid_state_file(df->path) || !strncmp(df->path, "../taskowned/", 13))
                    rc = -1, seterr(why, cap,
                                    "operator \"%s\" subtask %d: invalid database file \"%s\" "
                                    "stored as \"%s\"",
                                    o->uid, s, df->name ? df->name : "(null)",
                                    df->path ? df->path : "(null)");
                for (int g = 0; g < f && rc == 0; g++)
                    if (!strcmp(ss->files[g].name, df->name))
                        rc = -1, seterr(why, cap,
                                        "operator \"%s\" subtask %d lists database file \"%s\" "
                                        "twice",
                                        o->uid, s, df->name);
            }
            if (keyed)
                expect = ss->kg_end;
        }
        if (rc == 0 && keyed && expect != o->max_parallelism)
            rc = -1, seterr(why, cap,
                            "operator \"%s\": key groups [%d, %d) belong to no subtask; every key "
                            "group must belong to exactly one subtask",
                            o->uid, expect, o->max_parallelism);
    }
    if (rc == 0 && m->noperators > 1) {
        qsort(uids, (size_t)m->noperators, sizeof *uids, cmp_str_ptr);
        for (int i = 1; i < m->noperators && rc == 0; i++)
            if (!strcmp(uids[i - 1], uids[i]))
                rc = -1, seterr(why, cap, "operator uid \"%s\" appears twice", uids[i]);
    }
    if (rc == 0 && nf > 1) {
        qsort(files, nf, sizeof *files, cmp_str_ptr);
        for (size_t i = 1; i < nf && rc == 0; i++)
            if (!strcmp(files[i - 1], files[i]))
                rc = -1, seterr(why, cap, "state file \"%s\" is used by two subtasks", files[i]);
    }
    sl__free(uids);
    sl__free(files);
    return rc;
}

typedef struct enc {
    sl__buf b;
    int rc;
} enc;

static void enc_bytes(enc *e, const void *p, size_t n)
{
    if (!e->rc)
        e->rc = sl__buf_append(&e->b, p, n);
}

static void enc_u32(enc *e, uint32_t v)
{
    uint8_t b[4];
    put_u32(b, v);
    enc_bytes(e, b, 4);
}

static void enc_u64(enc *e, uint64_t v)
{
    uint8_t b[8];
    put_u64(b, v);
    enc_bytes(e, b, 8);
}

static void enc_str(enc *e, const char *s)
{
    size_t n = strlen(s);
    enc_u32(e, (uint32_t)n);
    enc_bytes(e, s, n);
}

/* Encodes checked metadata into e (format in docs/checkpoint-format.md). */
static void meta_encode(const sl__checkpoint_meta *m, enc *e)
{
    uint8_t h[HEAD_SIZE];
    memcpy(h, META_MAGIC, 4);
    put_u16(h + 4, META_VERSION);
    put_u16(h + 6, KIND_META);
    enc_bytes(e, h, sizeof h);
    enc_u32(e, m->savepoint ? META_FLAG_SAVEPOINT : 0);
    enc_u64(e, (uint64_t)m->id);
    enc_u64(e, (uint64_t)m->timestamp_ms);
    enc_u64(e, (uint64_t)m->duration_ms);
    enc_str(e, m->job_id);
    enc_str(e, m->job_name);
    enc_u32(e, (uint32_t)m->noperators);
    for (int i = 0; i < m->noperators; i++) {
        const sl__operator_state_meta *o = &m->operators[i];
        enc_str(e, o->uid);
        enc_str(e, o->name);
        enc_u32(e, (uint32_t)o->parallelism);
        enc_u32(e, (uint32_t)o->max_parallelism);
        for (int s = 0; s < o->parallelism; s++) {
            const sl__subtask_state *ss = &o->subtasks[s];
            enc_u32(e, (uint32_t)ss->subtask);
            enc_u32(e, ss->finished ? SUBTASK_FLAG_FINISHED : 0);
            enc_str(e, ss->file);
            enc_u64(e, ss->file_size);
            enc_u64(e, ss->checksum);
            enc_u32(e, (uint32_t)ss->kg_start);
            enc_u32(e, (uint32_t)ss->kg_end);
            for (int k = 0; k <= ss->kg_end - ss->kg_start; k++)
                enc_u64(e, ss->kg_offset ? ss->kg_offset[k] : 0);
            enc_u64(e, ss->op_offset);
            enc_u64(e, ss->op_length);
            enc_u32(e, (uint32_t)ss->nfiles);
            for (int f = 0; f < ss->nfiles; f++) {
                enc_str(e, ss->files[f].name);
                enc_str(e, ss->files[f].path);
                enc_u64(e, ss->files[f].size);
                enc_u64(e, ss->files[f].checksum);
            }
        }
    }
    enc_u64(e, e->b.len + TRAILER_SIZE);
    if (!e->rc)
        enc_u64(e, XXH3_64bits(e->b.data, e->b.len));
}

typedef struct dec {
    const uint8_t *start, *p, *end;
    int rc; /* 0, -1 malformed (with why), SL_ENOMEM */
    char why[256];
} dec;

static bool dec_need(dec *d, size_t n, const char *what)
{
    if (d->rc)
        return false;
    if ((size_t)(d->end - d->p) < n) {
        d->rc = -1;
        snprintf(d->why, sizeof d->why, "it ends at byte %zu in the middle of %s",
                 (size_t)(d->p - d->start), what);
        return false;
    }
    return true;
}

static uint32_t dec_u32(dec *d, const char *what)
{
    if (!dec_need(d, 4, what))
        return 0;
    uint32_t v = get_u32(d->p);
    d->p += 4;
    return v;
}

static uint64_t dec_u64(dec *d, const char *what)
{
    if (!dec_need(d, 8, what))
        return 0;
    uint64_t v = get_u64(d->p);
    d->p += 8;
    return v;
}

/* An int field that must be within [lo, hi]. */
static int dec_int(dec *d, const char *what, int64_t lo, int64_t hi)
{
    uint32_t v = dec_u32(d, what);
    if (d->rc)
        return 0;
    if ((int64_t)v < lo || (int64_t)v > hi) {
        d->rc = -1;
        snprintf(d->why, sizeof d->why, "%s is %" PRIu32 ", outside %" PRId64 "..%" PRId64, what, v,
                 lo, hi);
        return 0;
    }
    return (int)v;
}

static char *dec_str(dec *d, size_t max, const char *what)
{
    uint32_t n = dec_u32(d, what);
    if (d->rc)
        return NULL;
    if (n > max) {
        d->rc = -1;
        snprintf(d->why, sizeof d->why, "%s is %" PRIu32 " bytes long, more than %zu", what, n,
                 max);
        return NULL;
    }
    if (!dec_need(d, n, what))
        return NULL;
    if (memchr(d->p, 0, n)) {
        d->rc = -1;
        snprintf(d->why, sizeof d->why, "%s contains a NUL byte", what);
        return NULL;
    }
    char *s = sl__strndup((const char *)d->p, n);
    if (!s) {
        d->rc = SL_ENOMEM;
        return NULL;
    }
    d->p += n;
    return s;
}

/* Decodes the body of a _metadata whose head and trailer were checked. Returns the
 * metadata, or NULL with d->rc set. Counts are bounded by the bytes left before anything is
 * allocated, so a crafted count cannot make it allocate much. */
static sl__checkpoint_meta *meta_decode(dec *d)
{
    sl__checkpoint_meta *m = sl__calloc(1, sizeof *m);
    if (!m) {
        d->rc = SL_ENOMEM;
        return NULL;
    }
    int version = get_u16(d->start + 4);
    m->format_version = version;
    d->p = d->start + HEAD_SIZE;
    uint32_t flags = dec_u32(d, "the flags");
    if (!d->rc && (flags & ~META_FLAG_SAVEPOINT)) {
        d->rc = -1;
        snprintf(d->why, sizeof d->why, "unknown flags 0x%" PRIx32, flags);
    }
    m->savepoint = flags & META_FLAG_SAVEPOINT;
    m->id = (int64_t)dec_u64(d, "the checkpoint id");
    m->timestamp_ms = (int64_t)dec_u64(d, "the timestamp");
    m->duration_ms = (int64_t)dec_u64(d, "the duration");
    m->job_id = dec_str(d, MAX_JOB_ID_LEN, "the job id");
    m->job_name = dec_str(d, MAX_NAME_LEN, "the job name");
    /* an operator takes at least 16 bytes (two strings, two counts) */
    int nops = dec_int(d, "the operator count", 0, (d->end - d->p) / 16);
    if (d->rc)
        return m;
    m->operators = sl__calloc((size_t)nops + 1, sizeof *m->operators);
    if (!m->operators) {
        d->rc = SL_ENOMEM;
        return m;
    }
    for (int i = 0; i < nops && !d->rc; i++) {
        sl__operator_state_meta *o = &m->operators[i];
        m->noperators = i + 1;
        o->uid = dec_str(d, MAX_NAME_LEN, "an operator uid");
        o->name = dec_str(d, MAX_NAME_LEN, "an operator name");
        o->parallelism = dec_int(d, "a parallelism", 1, MAX_KEY_GROUPS);
        o->max_parallelism = dec_int(d, "a max parallelism", 1, MAX_KEY_GROUPS);
        if (d->rc)
            break;
        /* a subtask entry takes at least 56 bytes */
        if ((size_t)o->parallelism > (size_t)(d->end - d->p) / 56) {
            d->rc = -1;
            snprintf(d->why, sizeof d->why,
                     "operator \"%s\" has parallelism %d, more than the file can hold", o->uid,
                     o->parallelism);
            break;
        }
        o->subtasks = sl__calloc((size_t)o->parallelism, sizeof *o->subtasks);
        if (!o->subtasks) {
            d->rc = SL_ENOMEM;
            break;
        }
        int nsub = o->parallelism;
        o->parallelism = 0; /* counts the entries decoded, for freeing; restored below */
        for (int s = 0; s < nsub && !d->rc; s++) {
            sl__subtask_state *ss = &o->subtasks[s];
            o->parallelism = s + 1;
            ss->subtask = dec_int(d, "a subtask index", 0, MAX_KEY_GROUPS);
            uint32_t sflags = version >= 3 ? dec_u32(d, "subtask flags") : 0;
            if (!d->rc && (sflags & ~SUBTASK_FLAG_FINISHED)) {
                d->rc = -1;
                snprintf(d->why, sizeof d->why,
                         "operator \"%s\" subtask %d has unknown flags 0x%" PRIx32
                         " (accepted: 0x1, finished)",
                         o->uid, s, sflags);
            }
            ss->finished = sflags & SUBTASK_FLAG_FINISHED;
            ss->file = dec_str(d, MAX_FILE_LEN, "a state file name");
            ss->file_size = dec_u64(d, "a file size");
            ss->checksum = dec_u64(d, "a file checksum");
            ss->kg_start = dec_int(d, "a key-group range start", 0, MAX_KEY_GROUPS);
            ss->kg_end = dec_int(d, "a key-group range end", 0, MAX_KEY_GROUPS);
            if (!d->rc && ss->kg_end < ss->kg_start) {
                d->rc = -1;
                snprintf(d->why, sizeof d->why,
                         "operator \"%s\" subtask %d: key-group range [%d, %d) ends before it "
                         "starts",
                         o->uid, s, ss->kg_start, ss->kg_end);
            }
            if (d->rc)
                break;
            size_t n = (size_t)(ss->kg_end - ss->kg_start) + 1;
            if (!dec_need(d, n * 8, "key-group offsets"))
                break;
            ss->kg_offset = sl__malloc(n * sizeof *ss->kg_offset);
            if (!ss->kg_offset) {
                d->rc = SL_ENOMEM;
                break;
            }
            for (size_t k = 0; k < n; k++)
                ss->kg_offset[k] = dec_u64(d, "key-group offsets");
            ss->op_offset = dec_u64(d, "an operator state offset");
            ss->op_length = dec_u64(d, "an operator state length");
            if (version < 2)
                continue;
            /* a file entry takes at least 24 bytes */
            int nf = dec_int(d, "a database file count", 0, MAX_DB_FILES);
            if (d->rc || (size_t)nf > (size_t)(d->end - d->p) / 24) {
                if (!d->rc) {
                    d->rc = -1;
                    snprintf(d->why, sizeof d->why,
                             "operator \"%s\" subtask %d lists %d database files, more than "
                             "the file can hold",
                             o->uid, s, nf);
                }
                break;
            }
            if (nf && !(ss->files = sl__calloc((size_t)nf, sizeof *ss->files))) {
                d->rc = SL_ENOMEM;
                break;
            }
            for (int f = 0; f < nf && !d->rc; f++) {
                sl__db_file *df = &ss->files[f];
                ss->nfiles = f + 1;
                df->name = dec_str(d, MAX_FILE_LEN, "a database file name");
                df->path = dec_str(d, MAX_FILE_LEN, "a database file path");
                df->size = dec_u64(d, "a database file size");
                df->checksum = dec_u64(d, "a database file checksum");
            }
        }
    }
    if (!d->rc && d->p != d->end) {
        d->rc = -1;
        snprintf(d->why, sizeof d->why, "%zu unexpected bytes after the last operator",
                 (size_t)(d->end - d->p));
    }
    return m;
}

const sl__operator_state_meta *sl__checkpoint_meta_find(const sl__checkpoint_meta *m,
                                                        const char *uid)
{
    for (int i = 0; uid && i < m->noperators; i++)
        if (!strcmp(m->operators[i].uid, uid))
            return &m->operators[i];
    return NULL;
}

bool sl__operator_fully_finished(const sl__operator_state_meta *o)
{
    for (int s = 0; s < o->parallelism; s++)
        if (!o->subtasks[s].finished)
            return false;
    return o->parallelism > 0;
}

bool sl__restores_finished(const sl__operator_state_meta *o, int subtask, int parallelism)
{
    if (sl__operator_fully_finished(o))
        return true;
    return parallelism == o->parallelism && subtask < o->parallelism &&
           o->subtasks[subtask].finished;
}

void sl__checkpoint_meta_free(sl__checkpoint_meta *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->noperators; i++) {
        sl__operator_state_meta *o = &m->operators[i];
        for (int s = 0; o->subtasks && s < o->parallelism; s++)
            sl__subtask_state_free(&o->subtasks[s]);
        sl__free(o->subtasks);
        sl__free(o->uid);
        sl__free(o->name);
    }
    sl__free(m->operators);
    sl__free(m->job_id);
    sl__free(m->job_name);
    sl__free(m);
}

/* Checks head and trailer of a file's bytes. kind_name is "checkpoint metadata" or "state";
 * label names the file. Returns 0 or SL_EFORMAT with the message. */
static int check_envelope(const uint8_t *p, size_t len, const char magic[4], int kind,
                          int max_version, size_t min_size, const char *kind_name,
                          const char *label, char *err, size_t cap)
{
    if (len < min_size) {
        seterr(err, cap, "%s is truncated: %zu bytes, less than the smallest %s file (%zu bytes)",
               label, len, kind_name, min_size);
        return SL_EFORMAT;
    }
    if (memcmp(p, magic, 4)) {
        seterr(err, cap,
               "%s is not a Sluice %s file or is corrupt: it does not start with the magic "
               "number \"%.4s\"",
               label, kind_name, magic);
        return SL_EFORMAT;
    }
    uint64_t total = get_u64(p + len - TRAILER_SIZE);
    if (total != len) {
        seterr(err, cap,
               "%s is truncated or corrupt: its trailer records %" PRIu64
               " bytes but the file has %zu",
               label, total, len);
        return SL_EFORMAT;
    }
    if (XXH3_64bits(p, len - 8) != get_u64(p + len - 8)) {
        seterr(err, cap, "checksum mismatch in %s: the file is corrupt or was truncated", label);
        return SL_EFORMAT;
    }
    uint16_t version = get_u16(p + 4), k = get_u16(p + 6);
    if (version < 1 || version > max_version) {
        seterr(err, cap,
               "%s has format version %u, but this build of Sluice reads versions 1 to %d: "
               "restore it with the Sluice release that wrote it",
               label, version, max_version);
        return SL_EFORMAT;
    }
    if (k != kind) {
        seterr(err, cap, "%s is a Sluice file of kind %u, not %s (kind %d)", label, k, kind_name,
               kind);
        return SL_EFORMAT;
    }
    return 0;
}

/* Parses and checks _metadata bytes. label names the file in messages. */
static int meta_parse(const uint8_t *p, size_t len, const char *label, sl__checkpoint_meta **out,
                      char *err, size_t cap)
{
    int rc = check_envelope(p, len, META_MAGIC, KIND_META, META_VERSION, META_MIN_SIZE,
                            "checkpoint metadata", label, err, cap);
    if (rc < 0)
        return rc;
    dec d = {.start = p, .end = p + len - TRAILER_SIZE};
    sl__checkpoint_meta *m = meta_decode(&d);
    if (d.rc == 0) {
        d.rc = meta_check(m, d.why, sizeof d.why);
    }
    if (d.rc == SL_ENOMEM) {
        seterr(err, cap, "out of memory reading %s", label);
        sl__checkpoint_meta_free(m);
        return SL_ENOMEM;
    }
    if (d.rc) {
        seterr(err, cap, "invalid checkpoint metadata in %s: %s", label, d.why);
        sl__checkpoint_meta_free(m);
        return SL_EFORMAT;
    }
    *out = m;
    return 0;
}

/* ---- completing, aborting, retention -------------------------------------------------- */

/* Writes _metadata of st's checkpoint directory dir (named in messages; dfd is its
 * descriptor, jfd the job directory's): temp file, fsync, rename, directory fsyncs, all through the
 * descriptors. On failure the message names the file and the temp file is gone. */
static int write_metadata(const sl__storage *st, int jfd, int dfd, const char *dir,
                          const uint8_t *p, size_t n, char *err, size_t cap)
{
    DECL_OSERR;
    const sl__file_ops *ops = sl__file_ops_current;
    int r;
    int fd = ops->openat(dfd, "_metadata.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        seterr(err, cap, "cannot create %s/_metadata.tmp: %s", dir, OSERR(e));
        return SL_EIO;
    }
    r = write_all(fd, p, n);
    if (r < 0)
        seterr(err, cap, "cannot write %s/_metadata.tmp: %s", dir, OSERR(-r));
    else if (ops->fsync(fd) < 0)
        r = -errno, seterr(err, cap, "cannot fsync %s/_metadata.tmp: %s", dir, OSERR(-r));
    if (ops->close(fd) < 0 && r == 0)
        r = -errno, seterr(err, cap, "cannot close %s/_metadata.tmp: %s", dir, OSERR(-r));
    if (r == 0 && ops->renameat(dfd, "_metadata.tmp", "_metadata") < 0)
        r = -errno,
        seterr(err, cap, "cannot rename %s/_metadata.tmp to %s/_metadata: %s", dir, dir, OSERR(-r));
    if (r == 0 && ops->fsync(dfd) < 0)
        r = -errno, seterr(err, cap, "cannot fsync directory %s (after writing %s/_metadata): %s",
                           dir, dir, OSERR(-r));
    if (r == 0 && ops->fsync(jfd) < 0)
        r = -errno, seterr(err, cap, "cannot fsync directory %s (after writing %s/_metadata): %s",
                           st->job_dir, dir, OSERR(-r));
    if (r < 0) {
        unlinkat(dfd, "_metadata.tmp", 0);
        return SL_EIO;
    }
    return 0;
}

/* Under st->mu: checkpoint id will not complete. Removes what was written of it and lets no
 * straggler write more. */
static void abandon(sl__storage *st, int64_t id)
{
    open_ckpt *o = open_entry(st, id, true);
    if (o)
        o->aborted = true;
    shared_drop(st, id);
    if (st->memory)
        mem_remove_checkpoint(st, id);
    else if (o)
        open_remove_dir(st, o);
    else /* out of memory for the entry */
        remove_chk(st, -1, id, "checkpoint_cleanup_failed");
}

int sl__storage_complete(sl__storage *st, const sl__checkpoint_meta *m, char *err, size_t cap)
{
    char why[512];
    int rc = meta_check(m, why, sizeof why);
    if (rc == SL_ENOMEM) {
        seterr(err, cap, "out of memory completing checkpoint %" PRId64, m->id);
        return rc;
    }
    if (rc < 0) {
        seterr(err, cap, "cannot complete checkpoint %" PRId64 ": %s", m->id, why);
        return SL_EINVAL;
    }
    if (strcmp(m->job_id, st->job_id)) {
        seterr(err, cap,
               "cannot complete checkpoint %" PRId64 ": it belongs to job %s, this storage to "
               "job %s",
               m->id, m->job_id, st->job_id);
        return SL_EINVAL;
    }
    enc e = {0};
    meta_encode(m, &e);
    if (e.rc) {
        sl__buf_free(&e.b);
        seterr(err, cap, "out of memory completing checkpoint %" PRId64, m->id);
        return SL_ENOMEM;
    }

    pthread_mutex_lock(&st->complete_mu);
    lock(st);
    open_ckpt *o = open_entry(st, m->id, false);
    if (m->id <= st->newest) {
        seterr(err, cap,
               "cannot complete checkpoint %" PRId64
               ": it is not newer than the latest completed checkpoint %" PRId64,
               m->id, st->newest);
        rc = SL_EINVAL;
    } else if (o && o->aborted) {
        seterr(err, cap, "cannot complete checkpoint %" PRId64 ": it was aborted", m->id);
        rc = SL_ECANCELED;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/chk-%" PRId64, st->job_dir, m->id);
    int jfd = -1, dfd = -1; /* copies of the entry's: it keeps its own for late writers */
    if (rc == 0 && st->memory) {
        char key[48];
        snprintf(key, sizeof key, "chk-%" PRId64 "/_metadata", m->id);
        rc = mem_put(st, key, e.b.data, e.b.len);
        if (rc == 0)
            e.b.data = NULL;
        else
            seterr(err, cap, "out of memory completing checkpoint %" PRId64, m->id);
    } else if (rc == 0) {
        DECL_OSERR;
        o = open_entry(st, m->id, true);
        int r = o ? chk_dir_ready(st, o) : -ENOMEM;
        if (r == 0 && ((jfd = reopen_dir(o->jfd)) < 0 || (dfd = reopen_dir(o->dfd)) < 0))
            r = -errno;
        if (r < 0) {
            rc = r == -ENOMEM ? SL_ENOMEM : SL_EIO;
            seterr(err, cap, "cannot create checkpoint directory %s: %s", dir, OSERR(-r));
        }
    }
    unlock(st);
    if (rc == 0 && !st->memory)
        rc = write_metadata(st, jfd, dfd, dir, e.b.data, e.b.len, err, cap);
    sl__buf_free(&e.b);

    int64_t *victims = NULL;
    int nvictims = 0;
    lock(st);
    if (rc == 0 && (rc = retained_push(st, m->id, m->savepoint)) < 0)
        seterr(err, cap, "out of memory completing checkpoint %" PRId64, m->id);
    if (rc == 0) {
        /* newest first: the new id is higher than every retained one */
        retained_ckpt top = st->retained[st->nretained - 1];
        memmove(st->retained + 1, st->retained, sizeof *st->retained * (size_t)(st->nretained - 1));
        st->retained[0] = top;
        st->newest = m->id;
        for (int i = 0; i < st->nopen;) {
            open_ckpt *oi = &st->open[i];
            if (oi->id > m->id) {
                i++;
                continue;
            }
            if (oi->dfd >= 0 && oi->id < m->id) /* subsumed in progress: can never complete */
                open_remove_dir(st, oi);
            else
                open_close_dirs(oi);
            *oi = st->open[--st->nopen];
        }
        /* subsume: keep num_retained checkpoints (savepoints are never deleted, and kept in
         * the list only while newer than the oldest kept checkpoint) */
        victims = sl__calloc((size_t)st->nretained, sizeof *victims);
        int kept = 0, n = 0;
        for (int i = 0; i < st->nretained; i++) {
            retained_ckpt r = st->retained[i];
            if (r.savepoint ? kept < st->num_retained : kept++ < st->num_retained)
                st->retained[n++] = r;
            else if (!r.savepoint && victims)
                victims[nvictims++] = r.id;
            else if (!r.savepoint)
                st->retained[n++] = r; /* out of memory: delete it next time */
        }
        st->nretained = n;
        for (int i = 0; i < nvictims; i++)
            shared_drop(st, victims[i]);
        if (st->memory) {
            for (int i = 0; i < nvictims; i++)
                mem_remove_checkpoint(st, victims[i]);
            nvictims = 0;
        }
    } else if (rc != SL_EINVAL && rc != SL_ECANCELED) {
        abandon(st, m->id);
    }
    unlock(st);
    /* subsumed checkpoints are deleted from the job directory this one was completed in,
     * in the background */
    for (int i = 0; i < nvictims; i++)
        delete_chk_later(st, jfd, victims[i], "checkpoint_delete_failed");
    sl__free(victims);
    if (dfd >= 0)
        sl__file_ops_current->close(dfd);
    if (jfd >= 0)
        sl__file_ops_current->close(jfd);
    pthread_mutex_unlock(&st->complete_mu);
    return rc;
}

void sl__storage_abort(sl__storage *st, int64_t id)
{
    if (!st || id < 0)
        return;
    lock(st);
    if (is_retained(st, id)) {
        unlock(st);
        SL_WARN("event=checkpoint_abort_ignored id=%" PRId64 " reason=\"already completed\"", id);
        return;
    }
    abandon(st, id);
    unlock(st);
}

int sl__storage_retained(const sl__storage *st, int64_t *ids, int cap)
{
    lock(st);
    int n = st->nretained < cap ? st->nretained : cap;
    for (int i = 0; i < n; i++)
        ids[i] = st->retained[i].id;
    unlock(st);
    return n < 0 ? 0 : n;
}

void sl__storage_discard_all(sl__storage *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->complete_mu);
    lock(st);
    if (st->memory) {
        for (int i = 0; i < st->nretained; i++)
            if (!st->retained[i].savepoint)
                mem_remove_checkpoint(st, st->retained[i].id);
        st->nretained = 0;
        for (int i = 0; i < st->nopen; i++)
            mem_remove_checkpoint(st, st->open[i].id);
        shared_drop(st, -1);
        unlock(st);
        pthread_mutex_unlock(&st->complete_mu);
        return;
    }
    for (int i = 0; i < st->nopen; i++) { /* in progress: removed where they were made */
        st->open[i].aborted = true;
        if (st->open[i].dfd >= 0)
            open_remove_dir(st, &st->open[i]);
    }
    sl__storage_settle(st); /* the scan below must not meet a checkpoint half deleted */
    /* retained checkpoints, and chk-<N> without a _metadata (aborted or interrupted);
     * savepoints and completed checkpoints this storage does not list stay */
    DIR *d = opendir(st->job_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int64_t id = parse_chk_name(e->d_name);
        if (id < 0)
            continue;
        char *dir = path_join(st->job_dir, e->d_name);
        char *md = dir ? path_join(dir, "_metadata") : NULL;
        if (md && (!is_file(md) || (is_retained(st, id) && !metadata_is_savepoint(md)))) {
            int r = remove_tree(dir);
            if (r < 0)
                SL_WARN("event=checkpoint_delete_failed dir=%s error=\"%s\"", dir, strerror(-r));
        }
        sl__free(md);
        sl__free(dir);
    }
    if (d)
        closedir(d);
    st->nretained = 0;
    shared_drop(st, -1); /* savepoints never reference shared files */
    char *shared = path_join(st->job_dir, "shared");
    char *owned = path_join(st->job_dir, "taskowned");
    if (shared)
        rmdir(shared);
    if (owned)
        rmdir(owned);
    rmdir(st->job_dir); /* only when empty */
    sl__free(shared);
    sl__free(owned);
    unlock(st);
    pthread_mutex_unlock(&st->complete_mu);
}

/* ---- reading -------------------------------------------------------------------------- */

/* Explains why dir (a directory without _metadata) is not a checkpoint. */
static int not_a_checkpoint_dir(const char *dir, char *err, size_t cap)
{
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    if (parse_chk_name(base) >= 0) {
        seterr(err, cap,
               "%s is not a completed checkpoint: it has no _metadata (the checkpoint was "
               "aborted, or the process stopped before the checkpoint completed)",
               dir);
        return SL_ENOTFOUND;
    }
    /* a job directory: name its checkpoints */
    int64_t newest = -1;
    int count = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int64_t id = parse_chk_name(e->d_name);
        if (id < 0)
            continue;
        char *md = path_fmt("%s/%s/_metadata", dir, e->d_name);
        if (md && is_file(md)) {
            count++;
            if (id > newest)
                newest = id;
        }
        sl__free(md);
    }
    if (d)
        closedir(d);
    if (count)
        seterr(err, cap,
               "%s is not a checkpoint: no _metadata in it; it is a job's checkpoint directory "
               "with %d completed checkpoint%s: pass one, e.g. %s/chk-%" PRId64,
               dir, count, count == 1 ? "" : "s", dir, newest);
    else
        seterr(err, cap,
               "%s is not a checkpoint: no _metadata in it; expected a checkpoint directory "
               "<checkpoint-dir>/<job-id>/chk-<N> or its _metadata file",
               dir);
    return SL_ENOTFOUND;
}

int sl__checkpoint_load(sl__storage *st, const char *path, int64_t id, sl__checkpoint_meta **out,
                        char *err, size_t cap)
{
    DECL_OSERR;
    *out = NULL;
    char *owned = NULL;
    if (!path) {
        if (!st || id < 0) {
            seterr(err, cap, "no checkpoint path given");
            return SL_EINVAL;
        }
        if (st->memory) {
            char key[48], label[64];
            snprintf(key, sizeof key, "chk-%" PRId64 "/_metadata", id);
            snprintf(label, sizeof label, "memory:%s", key);
            lock(st);
            mem_file *f = mem_find(st, key);
            uint8_t *copy = f ? sl__malloc(f->len ? f->len : 1) : NULL;
            size_t len = f ? f->len : 0;
            if (copy)
                memcpy(copy, f->data, len);
            unlock(st);
            if (!f) {
                seterr(err, cap,
                       "checkpoint %" PRId64 " is not in the in-memory checkpoint storage (not "
                       "completed, or no longer retained)",
                       id);
                return SL_ENOTFOUND;
            }
            if (!copy) {
                seterr(err, cap, "out of memory reading %s", label);
                return SL_ENOMEM;
            }
            int rc = meta_parse(copy, len, label, out, err, cap);
            sl__free(copy);
            return rc;
        }
        path = owned = chk_dir(st, id);
        if (!path) {
            seterr(err, cap, "out of memory loading checkpoint %" PRId64, id);
            return SL_ENOMEM;
        }
    }
    const char *p = strip_uri(path);
    int rc = 0;
    char *md = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    struct stat sb;
    if (!p || !*p) {
        seterr(err, cap,
               "%s is not a checkpoint: expected a local path or a file:///path URI of a "
               "checkpoint directory <checkpoint-dir>/<job-id>/chk-<N>",
               path);
        rc = SL_ENOTFOUND;
        goto out;
    }
    if (stat(p, &sb) < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR) {
            seterr(err, cap,
                   "%s is not a checkpoint: %s; expected a checkpoint directory "
                   "<checkpoint-dir>/<job-id>/chk-<N> or its _metadata file",
                   p, OSERR(e));
            rc = SL_ENOTFOUND;
        } else {
            seterr(err, cap, "cannot read checkpoint %s: %s", p, OSERR(e));
            rc = SL_EIO;
        }
        goto out;
    }
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(p);
        while (n > 1 && p[n - 1] == '/')
            n--;
        char *dir = sl__strndup(p, n);
        md = dir ? path_join(dir, "_metadata") : NULL;
        if (!md) {
            sl__free(dir);
            seterr(err, cap, "out of memory loading checkpoint %s", p);
            rc = SL_ENOMEM;
            goto out;
        }
        if (!is_file(md)) {
            rc = not_a_checkpoint_dir(dir, err, cap);
            sl__free(dir);
            goto out;
        }
        sl__free(dir);
    } else {
        md = sl__strdup(p);
        if (!md) {
            seterr(err, cap, "out of memory loading checkpoint %s", p);
            rc = SL_ENOMEM;
            goto out;
        }
    }
    int r = read_file(md, MAX_META_SIZE, &data, &len);
    if (r == -ENOMEM) {
        seterr(err, cap, "out of memory reading %s", md);
        rc = SL_ENOMEM;
        goto out;
    }
    const char *base = strrchr(md, '/');
    base = base ? base + 1 : md;
    bool named = !strcmp(base, "_metadata") || !strcmp(base, "_metadata.tmp");
    if (r == -EFBIG) {
        seterr(err, cap, "%s is not a checkpoint: larger than any checkpoint metadata", md);
        rc = named ? SL_EFORMAT : SL_ENOTFOUND;
        goto out;
    }
    if (r < 0) {
        seterr(err, cap, "cannot read %s: %s", md, OSERR(-r));
        rc = SL_EIO;
        goto out;
    }
    /* a file that is neither named _metadata nor starts like one is not a checkpoint; any
     * other problem is corruption */
    if (!named && (len < 4 || memcmp(data, META_MAGIC, 4))) {
        if (len >= 4 && !memcmp(data, STATE_MAGIC, 4))
            seterr(err, cap,
                   "%s is not a checkpoint: it is a state file of one; pass its chk-<N> "
                   "directory",
                   md);
        else
            seterr(err, cap,
                   "%s is not a checkpoint: not a Sluice checkpoint metadata file; expected a "
                   "checkpoint directory <checkpoint-dir>/<job-id>/chk-<N> or its _metadata "
                   "file",
                   md);
        rc = SL_ENOTFOUND;
        goto out;
    }
    rc = meta_parse(data, len, md, out, err, cap);
out:
    sl__free(data);
    sl__free(md);
    sl__free(owned);
    return rc;
}

struct sl__state_reader {
    uint8_t *data; /* the whole file; NULL for a subtask without a file */
    size_t len;
    int kg_start, kg_end;
    uint64_t *off; /* kg_end - kg_start + 1, checked against the file's own index */
    uint64_t op_off, op_len;
};

void sl__state_reader_free(sl__state_reader *r)
{
    if (!r)
        return;
    sl__free(r->data);
    sl__free(r->off);
    sl__free(r);
}

/* Checks a state file's bytes against its envelope and the metadata entry s. */
static int check_state_file(const uint8_t *p, size_t len, const sl__subtask_state *s,
                            const char *label, char *err, size_t cap)
{
    if (len != s->file_size) {
        seterr(err, cap,
               "%s has %zu bytes but the checkpoint metadata records %" PRIu64
               ": the file was truncated or replaced",
               label, len, s->file_size);
        return SL_EFORMAT;
    }
    int nkg = s->kg_end - s->kg_start;
    size_t index = 4 + 8 * ((size_t)nkg + 1) + 16;
    int rc =
        check_envelope(p, len, STATE_MAGIC, KIND_STATE, FORMAT_VERSION,
                       STATE_HEADER_FIXED + 1 + index + TRAILER_SIZE, "state", label, err, cap);
    if (rc < 0)
        return rc;
    if (get_u64(p + len - 8) != s->checksum) {
        seterr(err, cap,
               "%s does not match the checkpoint metadata: its checksum %016" PRIx64
               " is not the recorded %016" PRIx64 " (a file of another checkpoint?)",
               label, get_u64(p + len - 8), s->checksum);
        return SL_EFORMAT;
    }
    uint32_t subtask = get_u32(p + 16), kg_start = get_u32(p + 20), kg_end = get_u32(p + 24);
    uint32_t uid_len = get_u32(p + 28);
    if (subtask != (uint32_t)s->subtask || kg_start != (uint32_t)s->kg_start ||
        kg_end != (uint32_t)s->kg_end) {
        seterr(err, cap,
               "%s holds subtask %" PRIu32 " with key groups [%" PRIu32 ", %" PRIu32
               ") but the checkpoint metadata expects subtask %d with [%d, %d)",
               label, subtask, kg_start, kg_end, s->subtask, s->kg_start, s->kg_end);
        return SL_EFORMAT;
    }
    const uint8_t *ix = p + len - TRAILER_SIZE - index;
    bool same = (uint64_t)STATE_HEADER_FIXED + uid_len == s->kg_offset[0] &&
                get_u32(ix) == (uint32_t)nkg + 1;
    for (int k = 0; same && k <= nkg; k++)
        same = get_u64(ix + 4 + 8 * k) == s->kg_offset[k];
    same = same && get_u64(ix + 4 + 8 * (nkg + 1)) == s->op_offset &&
           get_u64(ix + 12 + 8 * (nkg + 1)) == s->op_length;
    /* the offsets lie within the sections (the metadata checks guarantee it; an entry that
     * did not come from sl__checkpoint_load is checked here) */
    uint64_t data_end = len - TRAILER_SIZE - index;
    for (int k = 0; same && k < nkg; k++)
        same = s->kg_offset[k] <= s->kg_offset[k + 1];
    same = same && s->kg_offset[nkg] <= data_end && s->op_offset == s->kg_offset[nkg] &&
           s->op_length <= data_end - s->op_offset;
    if (!same) {
        seterr(err, cap, "%s: its section index does not match the checkpoint metadata", label);
        return SL_EFORMAT;
    }
    return 0;
}

int sl__state_reader_open(sl__storage *st, const char *chk, int64_t id, const sl__subtask_state *s,
                          sl__state_reader **out, char *err, size_t cap)
{
    DECL_OSERR;
    *out = NULL;
    int nkg = s->kg_end - s->kg_start;
    if (nkg < 0 || !s->file || (*s->file && !s->kg_offset)) {
        seterr(err, cap, "invalid subtask state entry");
        return SL_EINVAL;
    }
    sl__state_reader *r = sl__calloc(1, sizeof *r);
    if (r)
        r->off = sl__calloc((size_t)nkg + 1, sizeof *r->off);
    if (!r || !r->off) {
        sl__state_reader_free(r);
        seterr(err, cap, "out of memory opening state file %s", s->file);
        return SL_ENOMEM;
    }
    r->kg_start = s->kg_start;
    r->kg_end = s->kg_end;
    if (!*s->file) { /* no state: every section is empty */
        *out = r;
        return 0;
    }
    memcpy(r->off, s->kg_offset, sizeof *r->off * ((size_t)nkg + 1));
    r->op_off = s->op_offset;
    r->op_len = s->op_length;

    char *label = NULL;
    int rc = 0;
    if (!chk && st && st->memory) {
        if (id < 0) {
            seterr(err, cap, "no checkpoint given for state file %s", s->file);
            sl__state_reader_free(r);
            return SL_EINVAL;
        }
        char *key = path_fmt("chk-%" PRId64 "/%s", id, s->file);
        label = key ? path_fmt("memory:%s", key) : NULL;
        if (!label) {
            sl__free(key);
            seterr(err, cap, "out of memory opening state file %s", s->file);
            sl__state_reader_free(r);
            return SL_ENOMEM;
        }
        lock(st);
        mem_file *f = mem_find(st, key);
        if (f) {
            r->data = sl__malloc(f->len ? f->len : 1);
            if (r->data) {
                memcpy(r->data, f->data, f->len);
                r->len = f->len;
            }
        }
        unlock(st);
        sl__free(key);
        if (!f) {
            seterr(err, cap, "state file %s is missing: the checkpoint is incomplete", label);
            rc = SL_EFORMAT;
        } else if (!r->data) {
            seterr(err, cap, "out of memory reading %s", label);
            rc = SL_ENOMEM;
        }
    } else {
        if (!chk && !(st && id >= 0)) {
            seterr(err, cap, "no checkpoint given for state file %s", s->file);
            sl__state_reader_free(r);
            return SL_EINVAL;
        }
        if (chk && !strip_uri(chk)) {
            seterr(err, cap, "%s is not a checkpoint: expected a local path or file:///path URI",
                   chk);
            sl__state_reader_free(r);
            return SL_ENOTFOUND;
        }
        char *dir = chk ? resolve_chk_dir(chk) : chk_dir(st, id);
        label = dir ? path_join(dir, s->file) : NULL;
        sl__free(dir);
        if (!label) {
            seterr(err, cap, "out of memory opening state file %s", s->file);
            sl__state_reader_free(r);
            return SL_ENOMEM;
        }
        int e = read_file(label, s->file_size, &r->data, &r->len);
        if (e == -ENOENT) {
            seterr(err, cap, "state file %s is missing: the checkpoint is incomplete", label);
            rc = SL_EFORMAT;
        } else if (e == -EFBIG) {
            seterr(err, cap,
                   "%s is larger than the %" PRIu64
                   " bytes the checkpoint metadata records: the file was replaced",
                   label, s->file_size);
            rc = SL_EFORMAT;
        } else if (e == -ENOMEM) {
            seterr(err, cap, "out of memory reading %s", label);
            rc = SL_ENOMEM;
        } else if (e < 0) {
            seterr(err, cap, "cannot read %s: %s", label, OSERR(-e));
            rc = SL_EIO;
        }
    }
    if (rc == 0)
        rc = check_state_file(r->data, r->len, s, label, err, cap);
    sl__free(label);
    if (rc < 0) {
        sl__state_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int sl__state_reader_kg(sl__state_reader *r, int kg, const uint8_t **p, size_t *n)
{
    static const uint8_t empty[1];
    if (kg < r->kg_start || kg >= r->kg_end)
        return SL_EINVAL;
    int i = kg - r->kg_start;
    *p = r->data ? r->data + r->off[i] : empty;
    *n = (size_t)(r->off[i + 1] - r->off[i]);
    return 0;
}

int sl__state_reader_operator(sl__state_reader *r, const uint8_t **p, size_t *n)
{
    static const uint8_t empty[1];
    *p = r->data ? r->data + r->op_off : empty;
    *n = (size_t)r->op_len;
    return 0;
}

/* ---- JSON ----------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD. NULL is null. */
static void json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc((int)c, f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            switch (c) {
            case '\n':
                fputs("\\n", f);
                break;
            case '\t':
                fputs("\\t", f);
                break;
            case '\r':
                fputs("\\r", f);
                break;
            default:
                fprintf(f, "\\u%04x", c);
            }
            i++;
        } else {
            size_t k = utf8_len(p + i, n - i);
            if (k == 0) {
                fputs("\\ufffd", f);
                i++;
            } else {
                fwrite(p + i, 1, k, f);
                i += k;
            }
        }
    }
    fputc('"', f);
}

int sl__checkpoint_meta_json(const sl__checkpoint_meta *m, const char *chk_dir, FILE *out)
{
    char when[40] = "";
    time_t secs = (time_t)(m->timestamp_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm)) {
        size_t k = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + k, sizeof when - k, ".%03dZ", (int)(m->timestamp_ms % 1000));
    }
    uint64_t total = 0;
    fputs("{\n  \"job_id\": ", out);
    json_str(out, m->job_id);
    fputs(",\n  \"job_name\": ", out);
    json_str(out, m->job_name);
    fprintf(out, ",\n  \"checkpoint_id\": %" PRId64 ",\n", m->id);
    fprintf(out, "  \"savepoint\": %s,\n", m->savepoint ? "true" : "false");
    fprintf(out, "  \"timestamp_ms\": %" PRId64 ",\n  \"time\": ", m->timestamp_ms);
    json_str(out, when);
    fprintf(out, ",\n  \"duration_ms\": %" PRId64 ",\n  \"path\": ", m->duration_ms);
    json_str(out, chk_dir);
    fprintf(out, ",\n  \"format_version\": %d,\n  \"operators\": [",
            m->format_version ? m->format_version : META_VERSION);
    for (int i = 0; i < m->noperators; i++) {
        const sl__operator_state_meta *o = &m->operators[i];
        uint64_t size = 0;
        for (int s = 0; s < o->parallelism; s++) {
            size += o->subtasks[s].file_size;
            for (int f = 0; f < o->subtasks[s].nfiles; f++)
                size += o->subtasks[s].files[f].size;
        }
        total += size;
        fputs(i ? ",\n    {\n      \"uid\": " : "\n    {\n      \"uid\": ", out);
        json_str(out, o->uid);
        fputs(",\n      \"name\": ", out);
        json_str(out, o->name);
        fprintf(out,
                ",\n      \"parallelism\": %d,\n      \"max_parallelism\": %d,\n"
                "      \"state_size\": %" PRIu64 ",\n      \"subtasks\": [",
                o->parallelism, o->max_parallelism, size);
        for (int s = 0; s < o->parallelism; s++) {
            const sl__subtask_state *ss = &o->subtasks[s];
            int nkg = ss->kg_end - ss->kg_start;
            uint64_t keyed = ss->kg_offset && *ss->file ? ss->kg_offset[nkg] - ss->kg_offset[0] : 0;
            fprintf(out, "%s\n        {\"subtask\": %d, \"file\": ", s ? "," : "", ss->subtask);
            json_str(out, ss->file);
            fprintf(out,
                    ", \"size\": %" PRIu64 ", \"checksum\": \"%016" PRIx64 "\", "
                    "\"finished\": %s, \"key_groups\": [%d, %d], \"keyed_bytes\": %" PRIu64
                    ", \"operator_state_bytes\": %" PRIu64,
                    ss->file_size, ss->checksum, ss->finished ? "true" : "false", ss->kg_start,
                    ss->kg_end, keyed, ss->op_length);
            if (ss->nfiles) {
                uint64_t db = 0, shared = 0;
                for (int f = 0; f < ss->nfiles; f++) {
                    db += ss->files[f].size;
                    if (!strncmp(ss->files[f].path, "../shared/", 10))
                        shared += ss->files[f].size;
                }
                fprintf(out,
                        ", \"db_bytes\": %" PRIu64 ", \"db_shared_bytes\": %" PRIu64
                        ", \"db_files\": [",
                        db, shared);
                for (int f = 0; f < ss->nfiles; f++) {
                    const sl__db_file *df = &ss->files[f];
                    fputs(f ? ",\n          {\"name\": " : "\n          {\"name\": ", out);
                    json_str(out, df->name);
                    fputs(", \"path\": ", out);
                    json_str(out, df->path);
                    fprintf(out, ", \"size\": %" PRIu64 ", \"checksum\": \"%016" PRIx64 "\"}",
                            df->size, df->checksum);
                }
                fputs("]", out);
            }
            fputs("}", out);
        }
        fputs(o->parallelism ? "\n      ]\n    }" : "]\n    }", out);
    }
    fprintf(out, "%s],\n  \"total_size\": %" PRIu64 "\n}\n", m->noperators ? "\n  " : "", total);
    return ferror(out) ? SL_EIO : 0;
}

/*
 * failpoint.h - named fault injection points, compiled into test builds (SL_TESTING).
 *
 * SLUICE_FAILPOINTS configures them: a ';'-separated list of NAME=RULE[,RULE...] where a
 * rule is
 *   p<probability>   fire on each hit with this probability (e.g. p0.0001)
 *   n<N>             fire on the N-th hit (process-wide, 1-based)
 *   max<K>           fire at most K times in all (default: unbounded)
 * SLUICE_FAILPOINT_SEED seeds the random draws (default 1), so a failing run can be
 * repeated. Example: SLUICE_FAILPOINTS="task.record=p0.00002,max25;checkpoint.async=n3".
 *
 * Points in the engine: task.record (a subtask fails while processing a record, or a source
 * between two polls),
 * checkpoint.sync (a subtask fails in the synchronous part of a snapshot),
 * checkpoint.async (writing a subtask's state files fails: the checkpoint is declined),
 * checkpoint.notify (a subtask fails in notify_checkpoint_complete), job.before_commit (the
 * process exits with status 137, as under kill -9, after a finished job's final checkpoint
 * and before the output committed at its end), sink.commit (the file sink cannot commit
 * the files it closed at the end of a finished job).
 *
 * In builds without SL_TESTING, sl__failpoint() is a constant false.
 */
#ifndef SL_CORE_FAILPOINT_H
#define SL_CORE_FAILPOINT_H

#include <stdbool.h>

#ifdef SL_TESTING
#include <stdatomic.h>

/* Whether any point is configured: -1 before SLUICE_FAILPOINTS was read, then 0 or 1.
 * Written once by the first sl__failpoint_hit; read by every sl__failpoint. */
extern atomic_int sl__failpoints_armed;

/* The slow path of sl__failpoint: reads SLUICE_FAILPOINTS on the first call, then decides
 * whether the point fires now. Any thread; lock-free. */
bool sl__failpoint_hit(const char *name);

/* True when the point fires now. Any thread; lock-free. Inline, as it runs per record: with
 * no point configured it is one relaxed load and a predictable branch. */
static inline bool sl__failpoint(const char *name)
{
    if (__builtin_expect(atomic_load_explicit(&sl__failpoints_armed, memory_order_relaxed) == 0, 1))
        return false;
    return sl__failpoint_hit(name);
}
#else
static inline bool sl__failpoint(const char *name)
{
    (void)name;
    return false;
}
#endif

#endif

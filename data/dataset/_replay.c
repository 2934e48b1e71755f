/*
 * Fast core of data/dataset/replay.py: the scheduler state machine of the replay, one pass over the
 * event columns. data/dataset/replay_reference.py (the pure-Python replay) is the specification and this
 * file's oracle: the tests assert identical decision tables and counters on every shipped run.
 *
 * Python prepares the columns (time-sorted, nulls as -1, pids renumbered densely so that
 * -1 stays -1 and 0 stays 0) and turns the rows written here into the decision tables.
 * Where the reference indexes a Python list with -1 (a null target_cpu), the same element is
 * used here (the last one), so both agree on any input.
 *
 * Built by plumbing/shared_lib.py (cc -O2 -shared -fPIC) for data/dataset/replay.py, which calls
 * it through ctypes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Event codes = positions in schema.EVENT_KINDS; -1 = a kind the replay ignores. */
enum { K_SWITCH, K_WAKING, K_WAKEUP, K_WAKEUP_NEW, K_MIGRATE, K_FORK, K_EXIT, K_LOST };
enum { UNKNOWN, RUNNING, RUNNABLE, SLEEPING, NEW, DEAD };
enum { PREV_RUNNABLE, PREV_DEAD, PREV_SLEEP };
enum { KIND_WAKEUP, KIND_PREEMPT, KIND_NEW };
#define HISTORY_MASK ((1 << 8) - 1)
#define WAKER_UNKNOWN (-1) /* data/dataset/tables.py WAKER_UNKNOWN */
#define FLIP_DECAY_NS 1000000000LL /* tables.py FLIP_DECAY_NS: record_wakee()'s HZ */
enum { CLASS_SELF, CLASS_SMT, CLASS_LLC, CLASS_NODE, CLASS_REMOTE, NCLASS }; /* tables.py CLASS_* */

/* Counters, in the order of data/dataset/replay.py's STAT_NAMES. */
const char rp_stats[] =
    "lost_markers,pid_reuse,skipped_unknown_task,skipped_untrusted_cpu,waking_not_sleeping,"
    "dropped_unknown_outcome,dropped_lost,missed_switches,hidden_switch_outs,inconsistencies";
enum { ST_LOST, ST_PID_REUSE, ST_SKIP_UNKNOWN, ST_SKIP_UNTRUSTED, ST_WAKING_NOT_SLEEPING,
       ST_DROPPED_UNKNOWN, ST_DROPPED_LOST, ST_MISSED_SWITCHES, ST_HIDDEN_SWITCH_OUTS,
       ST_INCONSISTENCIES, NSTATS };
/* The candidates' counters (tables.py CANDIDATE_STAT_NAMES), rp_replay_runnable's cand_stats. */
const char rp_cand_stats[] =
    "chosen_not_queued,chosen_queued_elsewhere,candidates_untrusted_cpu,candidates_over_cap";
enum { CS_NOT_QUEUED, CS_ELSEWHERE, CS_UNTRUSTED, CS_OVER_CAP, NCSTATS };

/*
 * The columns read and written, in order, with their types (i8..i64 = int8_t..int64_t,
 * u8 = uint8_t):
 * data/dataset/replay.py reads these strings, passes arrays of these types, and checks the
 * output names against data/dataset/tables.py MIG_LOOP_COLS / NT_LOOP_COLS. The inputs have the
 * event table's own types (nulls as -1); the outputs have the decision tables' types, so the
 * tables take them without conversion.
 */
const char rp_in_columns[] = "code:i8,ts:i64,cpu:i16,common_pid:i32,prev_pid:i32,prev_state:i8,"
                             "next_pid:i32,pid:i32,target_cpu:i16,dest_cpu:i16,child_pid:i32,"
                             "task_ctx:u8";
/* The inputs only rp_replay_runnable reads (the candidates' prio). */
const char rp_prio_columns[] = "prev_prio:i16,next_prio:i16,prio:i16";
const char rp_mig_columns[] = "row:i64,tid:i64,segment:i32,src_cpu:i16,kind:i8,since_last_ran_ns:i64,"
                              "src_nr_running:i16,min_other_nr_running:i16,max_other_nr_running:i16,"
                              "src_idle:i8,other_idle:i8,waker_same_cpu:i8,recent_migrations:i8,"
                              "waker_cpu_nr_running:i16,waker_flips:i32,wakee_flips:i32,last_run_ns:i64,"
                              "idle_smt:i16,idle_llc:i16,idle_node:i16,idle_remote:i16,"
                              "min_nr_smt:i16,min_nr_llc:i16,min_nr_node:i16,min_nr_remote:i16";
const char rp_nt_columns[] = "row:i64,segment:i32,prev_tid:i64,next_tid:i64,dt_prev_switch_ns:i64,"
                             "next_since_wakeup_ns:i64";
/* The candidate rows (runnable=1), tables.py CAND_LOOP_COLS: columns of this core's, grown by
 * doubling, handed to the caller (struct cand_out order) to copy and free with rp_free_cand. */
const char rp_cand_columns[] = "row:i64,tid:i64,wait_ns:i64,ran_since_enqueue_ns:i64,runtime_recent_ns:i64,"
                               "vruntime_proxy:i64,segment:i32,weight:i32,nr_candidates:i32,prio:i16,"
                               "chosen:i8,rt:i8";

struct in {
    int64_t n;
    const int8_t *code, *prev_state;
    const int64_t *ts;
    const int16_t *cpu, *target, *dest;
    const int32_t *common, *prev, *next, *pid, *child;
    const uint8_t *task_ctx; /* 1: the line ran in task context (tables.task_context_array) */
    const int16_t *prev_prio, *next_prio, *prio; /* rp_prio_columns; NULL without runnable */
};

struct mig_out { /* rp_mig_columns; one row per decision, and next_cpu, balanced beside them */
    int64_t *row, *tid;
    int32_t *segment;
    int16_t *src_cpu;
    int8_t *kind;
    int64_t *since;
    int16_t *nr, *lo, *hi;
    int8_t *src_idle, *other_idle, *waker_same, *recent;
    int16_t *waker_nr;
    int32_t *waker_flips, *wakee_flips;
    int64_t *last_run;
    int16_t *idle_by[NCLASS - 1], *min_by[NCLASS - 1]; /* CLASS_SMT.. CLASS_REMOTE */
    int16_t *next_cpu;
    int8_t *balanced; /* tables.py BALANCER_LABEL */
};

struct nt_out { /* rp_nt_columns; one row per switch */
    int64_t *row;
    int32_t *segment;
    int64_t *prev_tid, *next_tid, *dt_prev_switch, *since_wakeup;
};

struct cand_out { /* rp_cand_columns */
    int64_t *row, *tid, *wait, *ran, *recent, *vproxy;
    int32_t *segment, *weight, *nr;
    int16_t *prio;
    int8_t *chosen, *rt;
};
#define NCAND_COLS 12

struct flips { /* record_wakee() state of one waker */
    int64_t flips, last_wakee, decay_ts;
};

struct task { /* per tid */
    int8_t state;
    int32_t rq, last_cpu, pending;
    int32_t qprev, qnext; /* neighbours on the list of tasks queued on CPU rq */
    int64_t last_end, last_wake, fork_cpu, fork_ts;
    int64_t run_start, last_run; /* last switch-in (-1: not seen), the previous run's length */
    struct flips fl;
    uint32_t hist;
    /* the candidates' fields (tables.CANDIDATE_COLUMNS): last prio seen; last placement on a
     * queue (-1 none); CPU time since its last activation (-1 unknown); decayed recent CPU time
     * and the start of its current half-life period (-1: never ran) */
    int32_t prio;
    int64_t wait_ts, act_run, recent, recent_ts;
};

struct rp {
    struct in in;
    int64_t ncpu, ncpus_seen, warmup_ns, segment;
    int64_t wakeup_decides; /* no sched_waking in the trace: decide at sched_wakeup */
    const int64_t *cpus; /* CPUs seen in the cpu column, sorted */
    int64_t *tids;       /* dense pid + 1 -> tid, -1 none */
    struct task *t;
    int64_t ntids, cap_tids;
    int64_t *cur, *cur_pid, *nr, *first_ts, *last_switch;
    uint8_t *ctx_seen; /* per CPU: its current task ran a task-context line in this stint */
    int64_t *qhead; /* per CPU: first tid of its queued list, -1 empty */
    uint8_t *trusted;
    int64_t n_untrusted;
    const int8_t *cls; /* ncpu x ncpu CLASS_* (tables.topology_classes) */
    struct flips *idle_fl; /* per CPU: its idle task's record_wakee() state */
    struct mig_out mig;
    struct nt_out nt;
    int64_t nmig, nnt;
    int64_t *stats;
    int oom;
    /* candidates (runnable=1): rows grown by doubling, a scratch list of one CPU's queue */
    int64_t runnable, cand_cap, half_life, nice0, nlut;
    const int32_t *wlut; /* weight by prio + 1, prio -1..nlut-2 (tables.prio_weight) */
    const int8_t *rtlut;
    struct cand_out cand;
    int64_t ncand, cap_cand;
    int64_t *scratch, cap_scratch;
    int64_t runtime_max; /* CPU time sums saturate there (tables.RUNTIME_MAX_NS) */
    int64_t *cstats; /* rp_replay_runnable's cand_stats */
};

/* The prio the line at i shows for its pid's task (its `prio` field); tracked only for runnable. */
static inline void set_prio(struct rp *r, struct task *t, int64_t i)
{
    if (r->runnable)
        t->prio = r->in.prio[i];
}

/* Python list index semantics for the one index that can be -1 (a null target CPU). */
static inline int64_t cpu_slot(const struct rp *r, int64_t c) { return c < 0 ? c + r->ncpu : c; }

static void reset_cpus(struct rp *r)
{
    for (int64_t c = 0; c < r->ncpu; c++) {
        r->cur[c] = -1;
        r->cur_pid[c] = -1;
        r->nr[c] = 0;
        r->trusted[c] = 1;
        r->first_ts[c] = -1;
        r->last_switch[c] = -1;
        r->qhead[c] = -1;
        r->ctx_seen[c] = 0;
        r->idle_fl[c] = (struct flips){0, -1, -1};
    }
    for (int64_t k = 0; k < r->ncpus_seen; k++)
        r->trusted[r->cpus[k]] = 0;
    r->n_untrusted = r->ncpus_seen;
}

static void clear_task(struct task *t, int8_t state)
{
    t->state = state;
    t->rq = t->last_cpu = t->pending = -1;
    t->qprev = t->qnext = -1;
    t->last_end = t->last_wake = t->fork_cpu = t->fork_ts = -1;
    t->run_start = t->last_run = -1;
    t->fl = (struct flips){0, -1, -1};
    t->hist = 0;
    t->prio = -1;
    t->wait_ts = t->act_run = t->recent_ts = -1;
    t->recent = 0;
}

static void reset_all(struct rp *r)
{
    for (int64_t i = 0; i < r->ntids; i++) {
        struct task *t = &r->t[i];
        if (t->pending >= 0)
            r->stats[ST_DROPPED_LOST]++;
        clear_task(t, t->state == DEAD ? DEAD : UNKNOWN);
    }
    reset_cpus(r);
}

static int64_t new_tid(struct rp *r, int64_t pid)
{
    if (r->ntids == r->cap_tids) {
        int64_t cap = 2 * r->cap_tids;
        struct task *t = realloc(r->t, cap * sizeof(*t));
        if (!t) {
            r->oom = 1;
            return 0;
        }
        r->t = t;
        r->cap_tids = cap;
    }
    int64_t id = r->ntids++;
    r->tids[pid + 1] = id;
    clear_task(&r->t[id], UNKNOWN);
    return id;
}

static inline int64_t tid_of(struct rp *r, int64_t pid)
{
    int64_t id = r->tids[pid + 1];
    if (id < 0 || r->t[id].state == DEAD)
        return new_tid(r, pid);
    return id;
}

/*
 * Each CPU keeps the list of tasks whose rq is that CPU, so that going idle finds them without
 * scanning every task. A null target CPU (-1) counts on the last CPU, as the reference's list
 * indexing does, but leaves the task on no list: its rq is -1, "not queued", there as here.
 */
static inline void unlink_rq(struct rp *r, struct task *t)
{
    if (t->qprev >= 0)
        r->t[t->qprev].qnext = t->qnext;
    else
        r->qhead[t->rq] = t->qnext;
    if (t->qnext >= 0)
        r->t[t->qnext].qprev = t->qprev;
    t->qprev = t->qnext = -1;
}

static inline void enqueue(struct rp *r, struct task *t, int64_t c)
{
    if (t->rq != c) {
        if (t->rq >= 0) {
            r->nr[t->rq]--;
            unlink_rq(r, t);
        }
        r->nr[cpu_slot(r, c)]++;
        t->rq = (int32_t)c;
        if (c >= 0) {
            int32_t self = (int32_t)(t - r->t);

            t->qnext = (int32_t)r->qhead[c];
            if (t->qnext >= 0)
                r->t[t->qnext].qprev = self;
            r->qhead[c] = self;
        }
    }
}

static inline void dequeue(struct rp *r, struct task *t)
{
    if (t->rq >= 0) {
        r->nr[t->rq]--;
        unlink_rq(r, t);
        t->rq = -1;
    }
}

static void forget(struct rp *r, struct task *t)
{
    r->stats[ST_INCONSISTENCIES]++;
    dequeue(r, t);
    t->state = UNKNOWN;
    t->last_cpu = -1;
    t->act_run = -1;
    if (t->pending >= 0) {
        r->stats[ST_DROPPED_UNKNOWN]++;
        t->pending = -1;
    }
}

static inline void trust(struct rp *r, int64_t c)
{
    if (!r->trusted[c]) {
        r->trusted[c] = 1;
        r->n_untrusted--;
    }
}

static inline void warm(struct rp *r, int64_t c, int64_t ts)
{
    if (r->trusted[c])
        return;
    if (r->first_ts[c] < 0)
        r->first_ts[c] = ts;
    else if (ts - r->first_ts[c] >= r->warmup_ns)
        trust(r, c);
}

static void decide(struct rp *r, int64_t i, int64_t tid, int64_t kind, int64_t src, int64_t since,
                   int64_t waker_same, int64_t waker_nr, int64_t waker_flips)
{
    if (r->n_untrusted) {
        r->stats[ST_SKIP_UNTRUSTED]++;
        return;
    }
    int64_t lo = -1, hi = 0, other_idle = 0, nothers = 0;
    int64_t idle_by[NCLASS] = {0}, min_by[NCLASS] = {-1, -1, -1, -1, -1};
    const int8_t *cls = r->cls + cpu_slot(r, src) * r->ncpu;
    for (int64_t k = 0; k < r->ncpus_seen; k++) {
        int64_t o = r->cpus[k], n, c;
        if (o == src)
            continue;
        n = r->nr[o];
        c = cls[o];
        if (!nothers++ || n < lo)
            lo = n;
        if (n > hi)
            hi = n;
        if (!n && r->cur[o] == 0) {
            other_idle = 1;
            idle_by[c]++;
        }
        if (min_by[c] < 0 || n < min_by[c])
            min_by[c] = n;
    }
    if (!nothers)
        lo = 0;
    int64_t n = r->nr[src], j = r->nmig;
    struct mig_out *o = &r->mig;
    o->row[j] = i;
    o->tid[j] = tid;
    o->segment[j] = (int32_t)r->segment;
    o->src_cpu[j] = (int16_t)src;
    o->kind[j] = (int8_t)kind;
    o->since[j] = since;
    o->nr[j] = (int16_t)n;
    o->lo[j] = (int16_t)lo;
    o->hi[j] = (int16_t)hi;
    o->src_idle[j] = !n && r->cur[src] == 0;
    o->other_idle[j] = (int8_t)other_idle;
    o->waker_same[j] = (int8_t)waker_same;
    o->recent[j] = (int8_t)__builtin_popcount(r->t[tid].hist);
    o->waker_nr[j] = (int16_t)waker_nr;
    o->waker_flips[j] = (int32_t)waker_flips;
    o->wakee_flips[j] = (int32_t)(r->wakeup_decides ? WAKER_UNKNOWN : r->t[tid].fl.flips);
    o->last_run[j] = r->t[tid].last_run;
    for (int k = 1; k < NCLASS; k++) {
        o->idle_by[k - 1][j] = (int16_t)idle_by[k];
        o->min_by[k - 1][j] = (int16_t)min_by[k];
    }
    o->next_cpu[j] = -1;
    o->balanced[j] = 0;
    r->t[tid].pending = (int32_t)r->nmig++;
}

/* tid runs on c from start (-1: its switch-in is not in the trace, only inferred). */
static void switch_in(struct rp *r, int64_t tid, int64_t c, int64_t start)
{
    struct task *t = &r->t[tid];
    t->run_start = start;
    if (t->pending >= 0) {
        r->mig.next_cpu[t->pending] = (int16_t)c;
        t->pending = -1;
    }
    if (t->last_cpu >= 0)
        t->hist = ((t->hist << 1) | (t->last_cpu != c)) & HISTORY_MASK;
    t->state = RUNNING;
    t->last_cpu = (int32_t)c;
    enqueue(r, t, c);
}

static void observe_current(struct rp *r, int64_t c, int64_t pid)
{
    int64_t old = r->cur[c];
    if (old >= 0) {
        /* the old task ran no task-context line in its stint on c: one the kernel does not trace */
        r->stats[r->ctx_seen[c] ? ST_MISSED_SWITCHES : ST_HIDDEN_SWITCH_OUTS]++;
        if (old)
            forget(r, &r->t[old]);
    }
    int64_t tid = pid ? tid_of(r, pid) : 0;
    if (tid)
        switch_in(r, tid, c, -1);
    r->cur[c] = tid;
    r->cur_pid[c] = pid;
    r->ctx_seen[c] = 0;
}

static void go_idle(struct rp *r, int64_t c)
{
    /* forget() takes each task off the list; the order does not matter, each acts on its own */
    while (r->nr[c] && r->qhead[c] >= 0)
        forget(r, &r->t[r->qhead[c]]);
    trust(r, c);
}

/* t's CPU time decayed to ts: halved for each whole half-life since its period began. */
static inline int64_t recent_at(const struct rp *r, const struct task *t, int64_t ts)
{
    if (t->recent_ts < 0 || ts - t->recent_ts < r->half_life) /* no whole half-life: as it is */
        return t->recent;
    int64_t k = (ts - t->recent_ts) / r->half_life;
    return k >= 63 ? 0 : t->recent >> k;
}

/* a + b for 0 <= a, b, saturating at r->runtime_max (no trace comes near it) */
static inline int64_t sat_add(const struct rp *r, int64_t a, int64_t b)
{
    return a > r->runtime_max || b > r->runtime_max - a ? r->runtime_max : a + b;
}

/* t's run ends at ts: add it to its CPU time since activation and to its decayed recent time. */
static void ran(const struct rp *r, struct task *t, int64_t ts)
{
    if (t->last_run < 0) { /* its switch-in is not in the trace: the run's length is unknown */
        t->act_run = -1;
        return;
    }
    if (t->act_run >= 0)
        t->act_run = sat_add(r, t->act_run, t->last_run);
    if (t->recent_ts < 0) {
        t->recent_ts = ts;
    } else if (ts > t->recent_ts) {
        int64_t k = (ts - t->recent_ts) / r->half_life;
        t->recent = recent_at(r, t, ts);
        t->recent_ts += k * r->half_life;
    }
    t->recent = sat_add(r, t->recent, t->last_run);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void sort_tids(int64_t *a, int64_t m)
{
    if (m > 16) {
        qsort(a, m, sizeof(*a), cmp_i64);
        return;
    }
    for (int64_t k = 1; k < m; k++) {
        int64_t v = a[k], j = k;
        for (; j > 0 && a[j - 1] > v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

/* Room for cap candidate rows; 0 when memory ran out (the rows so far kept). */
static int reserve_cand(struct rp *r, int64_t cap)
{
    struct cand_out *o = &r->cand;
    void **col[NCAND_COLS] = {(void **)&o->row,     (void **)&o->tid,    (void **)&o->wait,
                              (void **)&o->ran,     (void **)&o->recent, (void **)&o->vproxy,
                              (void **)&o->segment, (void **)&o->weight, (void **)&o->nr,
                              (void **)&o->prio,    (void **)&o->chosen, (void **)&o->rt};
    const size_t size[NCAND_COLS] = {8, 8, 8, 8, 8, 8, 4, 4, 4, 2, 1, 1};
    for (int k = 0; k < NCAND_COLS; k++) {
        void *p = realloc(*col[k], cap * size[k]);
        if (!p)
            return 0;
        *col[k] = p;
    }
    r->cap_cand = cap;
    return 1;
}

/* Room for `more` candidate rows, by doubling; 0 when memory ran out (r->oom set). */
static inline int grow_cand(struct rp *r, int64_t more)
{
    if (r->ncand + more <= r->cap_cand || reserve_cand(r, 2 * (r->ncand + more)))
        return 1;
    r->oom = 1;
    return 0;
}

/* recent CPU time scaled by NICE_0_WEIGHT / weight, floored without overflowing first */
static inline int64_t scaled(int64_t recent, int64_t w, int64_t nice0)
{
    if (w == nice0) /* most tasks: no division */
        return recent;
    return recent / w * nice0 + recent % w * nice0 / w;
}

static inline int64_t lut_index(const struct rp *r, int64_t prio)
{
    return prio >= -1 && prio < r->nlut - 1 ? prio + 1 : 0;
}

/*
 * The runnable set of c at the switch to nt (next_task row j), taken after the previous task's
 * switch-out and before nt's switch-in: one row per task on c's queue, in tid order. Only on a
 * trusted CPU, and only when nt is on it; beyond cand_cap rows the highest tids but nt's are
 * left out (counted).
 */
static void candidates(struct rp *r, int64_t j, int64_t c, int64_t nt, int64_t ts)
{
    if (!r->trusted[c]) {
        r->cstats[CS_UNTRUSTED]++;
        return;
    }
    if (r->t[nt].rq != c) {
        r->cstats[r->t[nt].rq >= 0 ? CS_ELSEWHERE : CS_NOT_QUEUED]++;
        return;
    }
    int64_t m = 0;
    for (int64_t q = r->qhead[c]; q >= 0; q = r->t[q].qnext) {
        if (m == r->cap_scratch) {
            int64_t cap = 2 * r->cap_scratch;
            int64_t *s = realloc(r->scratch, cap * sizeof(*s));
            if (!s) {
                r->oom = 1;
                return;
            }
            r->scratch = s;
            r->cap_scratch = cap;
        }
        r->scratch[m++] = q;
    }
    sort_tids(r->scratch, m);
    if (!grow_cand(r, m < r->cand_cap ? m : r->cand_cap))
        return;
    struct cand_out *o = &r->cand;
    int64_t first = r->ncand, others = 0, lo = INT64_MAX;
    for (int64_t k = 0; k < m; k++) {
        int64_t q = r->scratch[k];
        struct task *t = &r->t[q];
        int64_t x = lut_index(r, t->prio), recent = recent_at(r, t, ts);
        int64_t v = scaled(recent, r->wlut[x], r->nice0), w;
        if (v < lo) /* the least over the whole set, rows left out by the cap included */
            lo = v;
        if (q != nt && others++ >= r->cand_cap - 1) {
            r->cstats[CS_OVER_CAP]++;
            continue;
        }
        w = r->ncand++;
        o->row[w] = j;
        o->tid[w] = q;
        o->wait[w] = t->wait_ts >= 0 ? ts - t->wait_ts : -1;
        o->ran[w] = t->act_run;
        o->recent[w] = recent;
        o->vproxy[w] = v; /* less lo, below */
        o->segment[w] = (int32_t)r->segment;
        o->weight[w] = r->wlut[x];
        o->nr[w] = (int32_t)m;
        o->prio[w] = (int16_t)t->prio;
        o->chosen[w] = q == nt;
        o->rt[w] = r->rtlut[x];
    }
    for (int64_t w = first; w < r->ncand; w++)
        o->vproxy[w] -= lo;
}

static void switch_out(struct rp *r, int64_t i, int64_t tid, int64_t c, int64_t ts)
{
    int64_t how = r->in.prev_state[i];
    struct task *t = &r->t[tid];
    t->last_run = t->run_start >= 0 ? ts - t->run_start : -1;
    t->run_start = -1;
    if (r->runnable) {
        t->prio = r->in.prev_prio[i];
        ran(r, t, ts);
    }
    if (how == PREV_RUNNABLE) {
        t->wait_ts = ts;
        enqueue(r, t, c);
        decide(r, i, tid, KIND_PREEMPT, c, 0, 0, WAKER_UNKNOWN, WAKER_UNKNOWN);
        t->state = RUNNABLE;
    } else {
        dequeue(r, t);
        t->state = how == PREV_DEAD ? DEAD : SLEEPING;
    }
    t->last_cpu = (int32_t)c;
    t->last_end = ts;
}

static void on_switch(struct rp *r, int64_t i)
{
    int64_t c = r->in.cpu[i], ts = r->in.ts[i], prev = r->in.prev[i];
    if (prev != r->cur_pid[c])
        observe_current(r, c, prev);
    int64_t pt = r->cur[c];
    if (pt) /* -1 (unknown) as in the reference: Python's last element */
        switch_out(r, i, pt < 0 ? pt + r->ntids : pt, c, ts);
    int64_t nxt = r->in.next[i];
    int64_t nt = nxt ? tid_of(r, nxt) : 0;
    if (nt) {
        if (r->runnable) { /* the pick's own line is no input: its prio after the candidates */
            candidates(r, r->nnt, c, nt, ts);
            r->t[nt].prio = r->in.next_prio[i];
        }
        switch_in(r, nt, c, ts);
    } else {
        go_idle(r, c);
    }
    r->cur[c] = nt;
    r->cur_pid[c] = nxt;
    r->ctx_seen[c] = 0;
    int64_t last = r->last_switch[c], woke = nt ? r->t[nt].last_wake : -1, j = r->nnt++;
    struct nt_out *o = &r->nt;
    o->row[j] = i;
    o->segment[j] = (int32_t)r->segment;
    o->prev_tid[j] = pt;
    o->next_tid[j] = nt;
    o->dt_prev_switch[j] = last >= 0 ? ts - last : -1;
    o->since_wakeup[j] = woke >= 0 ? ts - woke : -1;
    r->last_switch[c] = ts;
}

/* The record_wakee() state of the task current on c (its idle task's when idle); NULL: unknown. */
static inline struct flips *waker_flips(struct rp *r, int64_t c)
{
    int64_t w = r->cur[c];
    if (w < 0)
        return NULL;
    return w ? &r->t[w].fl : &r->idle_fl[c];
}

/* kernel/sched/fair.c record_wakee() for the waker current on c; its flips after it. */
static int64_t record_wakee(struct rp *r, int64_t c, int64_t wakee, int64_t ts)
{
    struct flips *f = waker_flips(r, c);
    if (!f)
        return WAKER_UNKNOWN;
    if (f->decay_ts < 0 || ts - f->decay_ts > FLIP_DECAY_NS) {
        f->flips >>= 1;
        f->decay_ts = ts;
    }
    if (f->last_wakee != wakee) {
        f->last_wakee = wakee;
        f->flips++;
    }
    return f->flips;
}

static void on_waking(struct rp *r, int64_t i)
{
    int64_t tid = tid_of(r, r->in.pid[i]);
    struct task *t = &r->t[tid];
    t->last_wake = r->in.ts[i];
    set_prio(r, t, i);
    if (t->state == SLEEPING) {
        int64_t src = t->last_cpu, c = r->in.cpu[i];
        int64_t same = WAKER_UNKNOWN, nr = WAKER_UNKNOWN, flips = WAKER_UNKNOWN;
        /* sched_wakeup may be logged on the target CPU: its CPU says nothing about the waker
         * and would leak the label, so the waker's features are unknown (WAKER_UNKNOWN) then. */
        if (!r->wakeup_decides) {
            same = c == src;
            nr = r->nr[c];
            flips = record_wakee(r, c, tid, r->in.ts[i]);
        }
        decide(r, i, tid, KIND_WAKEUP, src, r->in.ts[i] - t->last_end, same, nr, flips);
        r->t[tid].state = RUNNABLE;
    } else if (t->state == UNKNOWN) {
        r->stats[ST_SKIP_UNKNOWN]++;
    } else {
        r->stats[ST_WAKING_NOT_SLEEPING]++;
    }
}

static void on_wakeup(struct rp *r, int64_t i)
{
    int64_t tid = tid_of(r, r->in.pid[i]), c = r->in.target[i];
    struct task *t = &r->t[tid];
    set_prio(r, t, i);
    if (t->state != RUNNING) {
        if (t->rq < 0) /* an activation; of a task in an unknown state, perhaps a queued one's */
            t->act_run = t->state == UNKNOWN ? -1 : 0;
        if (t->rq != c)
            t->wait_ts = r->in.ts[i];
        t->state = RUNNABLE;
        enqueue(r, t, c);
    }
}

static void on_wakeup_new(struct rp *r, int64_t i)
{
    int64_t tid = tid_of(r, r->in.pid[i]), ts = r->in.ts[i];
    struct task *t = &r->t[tid];
    t->last_wake = ts;
    if (t->state == NEW) {
        int64_t src = t->fork_cpu, c = r->in.cpu[i];
        struct flips *f = r->wakeup_decides ? NULL : waker_flips(r, c);
        decide(r, i, tid, KIND_NEW, src, ts - t->fork_ts, c == src, r->nr[c], f ? f->flips : WAKER_UNKNOWN);
    } else {
        r->stats[ST_SKIP_UNKNOWN]++;
    }
    t = &r->t[tid];
    set_prio(r, t, i);
    t->act_run = 0;
    if (t->rq != r->in.target[i])
        t->wait_ts = ts;
    t->state = RUNNABLE;
    enqueue(r, t, r->in.target[i]);
}

static void on_migrate(struct rp *r, int64_t i)
{
    struct task *t = &r->t[tid_of(r, r->in.pid[i])];
    set_prio(r, t, i);
    if (t->rq >= 0) {
        if (t->pending >= 0 && r->in.dest[i] != t->rq)
            r->mig.balanced[t->pending] = 1;
        if (r->in.dest[i] != t->rq)
            t->wait_ts = r->in.ts[i];
        enqueue(r, t, r->in.dest[i]);
    }
}

static void on_fork(struct rp *r, int64_t i)
{
    int64_t child = r->in.child[i];
    if (r->tids[child + 1] >= 0)
        r->stats[ST_PID_REUSE]++;
    int64_t tid = new_tid(r, child);
    struct task *t = &r->t[tid];
    t->state = NEW;
    t->fork_cpu = r->in.cpu[i];
    t->fork_ts = r->in.ts[i];
}

/* Keep the decisions whose outcome was seen (next_cpu >= 0), in order: the migration rows. */
static int64_t keep_decided(struct rp *r)
{
    struct mig_out *o = &r->mig;
    int64_t kept = 0;
    for (int64_t j = 0; j < r->nmig; j++) {
        if (o->next_cpu[j] < 0)
            continue;
        if (kept != j) {
            o->row[kept] = o->row[j];
            o->tid[kept] = o->tid[j];
            o->segment[kept] = o->segment[j];
            o->src_cpu[kept] = o->src_cpu[j];
            o->kind[kept] = o->kind[j];
            o->since[kept] = o->since[j];
            o->nr[kept] = o->nr[j];
            o->lo[kept] = o->lo[j];
            o->hi[kept] = o->hi[j];
            o->src_idle[kept] = o->src_idle[j];
            o->other_idle[kept] = o->other_idle[j];
            o->waker_same[kept] = o->waker_same[j];
            o->recent[kept] = o->recent[j];
            o->waker_nr[kept] = o->waker_nr[j];
            o->waker_flips[kept] = o->waker_flips[j];
            o->wakee_flips[kept] = o->wakee_flips[j];
            o->last_run[kept] = o->last_run[j];
            for (int k = 0; k < NCLASS - 1; k++) {
                o->idle_by[k][kept] = o->idle_by[k][j];
                o->min_by[k][kept] = o->min_by[k][j];
            }
            o->next_cpu[kept] = o->next_cpu[j];
            o->balanced[kept] = o->balanced[j];
        }
        kept++;
    }
    return kept;
}

/* The candidates' arguments of rp_replay_runnable. */
struct cand_args {
    const void *const *prio;
    const int64_t *params;
    const int32_t *wlut;
    const int8_t *rtlut;
    int64_t nlut;
    void **cols;
    int64_t *stats, *nrows;
};

/* rp_replay, with the candidates when ca is not NULL. */
static int replay_run(int64_t n, const void *const *in, int64_t npid, int64_t ncpu, const int64_t *cpus,
                      int64_t ncpus_seen, const int8_t *cls, int64_t warmup_ns, int64_t wakeup_decides,
                      void *const *mig, void *const *nt, int64_t *stats, int64_t *counts,
                      const struct cand_args *ca)
{
    struct rp r = {0};
    int rc = -1;
    r.in = (struct in){.n = n, .code = in[0], .ts = in[1], .cpu = in[2], .common = in[3], .prev = in[4],
                       .prev_state = in[5], .next = in[6], .pid = in[7], .target = in[8], .dest = in[9],
                       .child = in[10], .task_ctx = in[11]};
    r.mig = (struct mig_out){.row = mig[0], .tid = mig[1], .segment = mig[2], .src_cpu = mig[3],
                             .kind = mig[4], .since = mig[5], .nr = mig[6], .lo = mig[7], .hi = mig[8],
                             .src_idle = mig[9], .other_idle = mig[10], .waker_same = mig[11],
                             .recent = mig[12], .waker_nr = mig[13], .waker_flips = mig[14],
                             .wakee_flips = mig[15], .last_run = mig[16]};
    for (int k = 0; k < NCLASS - 1; k++) {
        r.mig.idle_by[k] = mig[17 + k];
        r.mig.min_by[k] = mig[17 + NCLASS - 1 + k];
    }
    r.mig.next_cpu = mig[17 + 2 * (NCLASS - 1)];
    r.mig.balanced = mig[18 + 2 * (NCLASS - 1)];
    r.cls = cls;
    r.nt = (struct nt_out){nt[0], nt[1], nt[2], nt[3], nt[4], nt[5]};
    r.ncpu = ncpu;
    r.cpus = cpus;
    r.ncpus_seen = ncpus_seen;
    r.warmup_ns = warmup_ns;
    r.wakeup_decides = wakeup_decides;
    r.stats = stats;
    if (ca) {
        r.runnable = 1;
        r.in.prev_prio = ca->prio[0];
        r.in.next_prio = ca->prio[1];
        r.in.prio = ca->prio[2];
        r.cstats = ca->stats;
        memset(ca->stats, 0, NCSTATS * sizeof(*ca->stats));
        r.cand_cap = ca->params[0];
        r.half_life = ca->params[1];
        r.nice0 = ca->params[2];
        r.runtime_max = ca->params[4];
        r.wlut = ca->wlut;
        r.rtlut = ca->rtlut;
        r.nlut = ca->nlut;
        if (ca->params[3] > 0) /* reserved, not touched: pages come as rows are written; */
            reserve_cand(&r, ca->params[3]); /* without it the rows grow from none */
        r.cap_scratch = 64;
        r.scratch = malloc(r.cap_scratch * sizeof(*r.scratch));
        if (!r.scratch)
            goto out;
    }
    r.cap_tids = 1024;
    r.tids = malloc((npid + 1) * sizeof(*r.tids));
    r.t = malloc(r.cap_tids * sizeof(*r.t));
    r.cur = malloc(6 * ncpu * sizeof(int64_t));
    r.trusted = malloc(ncpu);
    r.ctx_seen = malloc(ncpu);
    r.idle_fl = malloc(ncpu * sizeof(*r.idle_fl));
    if (!r.tids || !r.t || !r.cur || !r.trusted || !r.ctx_seen || !r.idle_fl)
        goto out;
    r.cur_pid = r.cur + ncpu;
    r.nr = r.cur_pid + ncpu;
    r.first_ts = r.nr + ncpu;
    r.last_switch = r.first_ts + ncpu;
    r.qhead = r.last_switch + ncpu;
    memset(stats, 0, NSTATS * sizeof(*stats));
    for (int64_t p = 0; p <= npid; p++)
        r.tids[p] = -1;
    r.ntids = 1; /* tid 0 = idle, never tracked as a task */
    r.tids[1] = 0;
    clear_task(&r.t[0], DEAD);
    reset_cpus(&r);

    for (int64_t i = 0; i < n && !r.oom; i++) {
        int64_t k = r.in.code[i];
        if (k != K_LOST) {
            int64_t c = r.in.cpu[i], p = r.in.common[i];
            if (p != r.cur_pid[c] && p >= 0)
                observe_current(&r, c, p);
            if (p >= 0 && r.in.task_ctx[i]) /* p is current on c now */
                r.ctx_seen[c] = 1;
            if (r.n_untrusted)
                warm(&r, c, r.in.ts[i]);
        }
        switch (k) {
        case K_SWITCH:
            on_switch(&r, i);
            break;
        case K_WAKING:
            if (!wakeup_decides)
                on_waking(&r, i);
            break;
        case K_WAKEUP:
            if (wakeup_decides)
                on_waking(&r, i);
            on_wakeup(&r, i);
            break;
        case K_WAKEUP_NEW:
            on_wakeup_new(&r, i);
            break;
        case K_MIGRATE:
            on_migrate(&r, i);
            break;
        case K_FORK:
            on_fork(&r, i);
            break;
        case K_LOST:
            stats[ST_LOST]++;
            r.segment++;
            reset_all(&r);
            break;
        default: /* sched_process_exit: the task runs until its final switch-out */
            break;
        }
    }
    if (r.oom)
        goto out;
    for (int64_t k = 0; k < r.ntids; k++)
        if (r.t[k].pending >= 0)
            stats[ST_DROPPED_UNKNOWN]++;
    counts[0] = keep_decided(&r);
    counts[1] = r.nnt;
    counts[2] = r.ntids;
    counts[3] = r.segment;
    if (ca)
        *ca->nrows = r.ncand;
    rc = 0;
out:
    if (ca) { /* the caller's to free (rp_free_cand), also after an error */
        void *cols[NCAND_COLS] = {r.cand.row,     r.cand.tid,    r.cand.wait, r.cand.ran,
                                  r.cand.recent,  r.cand.vproxy, r.cand.segment, r.cand.weight,
                                  r.cand.nr,      r.cand.prio,   r.cand.chosen, r.cand.rt};
        memcpy(ca->cols, cols, sizeof(cols));
    }
    free(r.scratch);
    free(r.tids);
    free(r.t);
    free(r.cur);
    free(r.trusted);
    free(r.ctx_seen);
    free(r.idle_fl);
    return rc;
}

/*
 * Replay n events. in[]: the rp_in_columns (prev_state as its class, pids dense, see above).
 * cpus: the sorted CPUs of the cpu column; cls: the ncpu x ncpu CLASS_* matrix. Outputs, each a
 * column of its own: mig[] the rp_mig_columns, then next_cpu (int16) and balancer_migrated
 * (int8), one row per decision whose outcome was seen;
 * nt[] the rp_nt_columns, one row per switch; stats (NSTATS counters);
 * counts = {migration rows, switches, tids, segments}.
 * Returns 0, or -1 when memory ran out.
 */
int rp_replay(int64_t n, const void *const *in, int64_t npid, int64_t ncpu, const int64_t *cpus,
              int64_t ncpus_seen, const int8_t *cls, int64_t warmup_ns, int64_t wakeup_decides,
              void *const *mig, void *const *nt, int64_t *stats, int64_t *counts)
{
    return replay_run(n, in, npid, ncpu, cpus, ncpus_seen, cls, warmup_ns, wakeup_decides, mig, nt, stats,
                      counts, NULL);
}

/*
 * rp_replay, and the candidate rows (replay(..., runnable=True)): prio[] the rp_prio_columns;
 * params = {rows kept per switch, recent time's half-life in ns, NICE_0_WEIGHT, rows to reserve
 * at the start (grown beyond), RUNTIME_MAX_NS}; wlut, rtlut: weight and rt flag by prio + 1, nlut entries.
 * Out: cand[NCAND_COLS], columns of this core's (rp_cand_columns order) for the caller to copy
 * and free with rp_free_cand, also after an error; cand_stats (NCSTATS counters); *ncand rows.
 */
int rp_replay_runnable(int64_t n, const void *const *in, int64_t npid, int64_t ncpu, const int64_t *cpus,
                       int64_t ncpus_seen, const int8_t *cls, int64_t warmup_ns, int64_t wakeup_decides,
                       void *const *mig, void *const *nt, int64_t *stats, int64_t *counts,
                       const void *const *prio, const int64_t *params, const int32_t *wlut,
                       const int8_t *rtlut, int64_t nlut, void **cand, int64_t *cand_stats, int64_t *ncand)
{
    struct cand_args ca = {prio, params, wlut, rtlut, nlut, cand, cand_stats, ncand};
    return replay_run(n, in, npid, ncpu, cpus, ncpus_seen, cls, warmup_ns, wakeup_decides, mig, nt, stats,
                      counts, &ca);
}

/* Frees the candidate columns rp_replay left in cand. */
void rp_free_cand(void **cand)
{
    for (int k = 0; k < NCAND_COLS; k++) {
        free(cand[k]);
        cand[k] = NULL;
    }
}

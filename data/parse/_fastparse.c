/*
 * Fast core of data/parse/tracefile.py: one pass over a buffer of ftrace text, filling preallocated
 * column arrays (numbers, Arrow string offsets + bytes, validity bitmaps). The grammar and
 * the rules that make hostile task names parse are documented in data/parse/tracefile.py; the Python
 * reference parser (data/parse/reference.py) implements the same rules and is this file's oracle.
 *
 * Built by data/parse/native.py with `cc -O2 -shared -fPIC`; called through ctypes.
 */
#include <stdint.h>
#include <string.h>

typedef const unsigned char *P;

/* Column order and types; data/parse/native.py checks this against data/parse/schema.py. */
const char fp_columns[] =
    "ts:i64,cpu:i16,event:i8,common_comm:str,common_pid:i32,flags:str,"
    "prev_comm:str,prev_pid:i32,prev_prio:i16,prev_state:str,next_comm:str,next_pid:i32,"
    "next_prio:i16,comm:str,pid:i32,prio:i16,target_cpu:i16,orig_cpu:i16,dest_cpu:i16,"
    "group_dead:bool,parent_comm:str,parent_pid:i32,child_comm:str,child_pid:i32,"
    "lost_count:i64,line:i64";

enum {
    C_TS, C_CPU, C_EVENT, C_COMMON_COMM, C_COMMON_PID, C_FLAGS, C_PREV_COMM, C_PREV_PID,
    C_PREV_PRIO, C_PREV_STATE, C_NEXT_COMM, C_NEXT_PID, C_NEXT_PRIO, C_COMM, C_PID, C_PRIO,
    C_TARGET_CPU, C_ORIG_CPU, C_DEST_CPU, C_GROUP_DEAD, C_PARENT_COMM, C_PARENT_PID,
    C_CHILD_COMM, C_CHILD_PID, C_LOST_COUNT, C_LINE, NCOLS
};
#define BIT(c) (1u << (c))
#define I16_MASK (BIT(C_CPU) | BIT(C_PREV_PRIO) | BIT(C_NEXT_PRIO) | BIT(C_PRIO) | BIT(C_TARGET_CPU) | \
    BIT(C_ORIG_CPU) | BIT(C_DEST_CPU))
#define I32_MASK (BIT(C_COMMON_PID) | BIT(C_PREV_PID) | BIT(C_NEXT_PID) | BIT(C_PID) | \
    BIT(C_PARENT_PID) | BIT(C_CHILD_PID))
#define I64_MASK (BIT(C_TS) | BIT(C_LOST_COUNT) | BIT(C_LINE))
#define STR_MASK (BIT(C_COMMON_COMM) | BIT(C_FLAGS) | BIT(C_PREV_COMM) | BIT(C_PREV_STATE) | \
    BIT(C_NEXT_COMM) | BIT(C_COMM) | BIT(C_PARENT_COMM) | BIT(C_CHILD_COMM))

/* Index of each string column among the string columns (-1 for others). */
static const int str_slot[NCOLS] = {
    -1, -1, -1, 0, -1, 1, 2, -1, -1, 3, 4, -1, -1, 5, -1, -1, -1, -1, -1, -1, 6, -1, 7, -1, -1, -1};
#define NSTR 8

/* Event codes = positions in schema.EVENT_KINDS. */
enum { K_SWITCH, K_WAKING, K_WAKEUP, K_WAKEUP_NEW, K_MIGRATE, K_FORK, K_EXIT, K_LOST };

/* Code of one of our event names, or -1. */
static int event_kind(P n, size_t len) {
#define IS(s) (len == sizeof(s) - 1 && memcmp(n, s, sizeof(s) - 1) == 0)
    if (IS("sched_switch")) return K_SWITCH;
    if (IS("sched_waking")) return K_WAKING;
    if (IS("sched_wakeup")) return K_WAKEUP;
    if (IS("sched_wakeup_new")) return K_WAKEUP_NEW;
    if (IS("sched_migrate_task")) return K_MIGRATE;
    if (IS("sched_process_fork")) return K_FORK;
    if (IS("sched_process_exit")) return K_EXIT;
    return -1;
#undef IS
}

/* Line outcomes = stats slots; data/parse/native.py checks the names against parse_ref.OUTCOMES. */
const char fp_outcomes[] =
    "total,comment,event,lost,unknown_event,malformed_header,malformed_fields,bad_number";
enum {
    S_TOTAL, S_COMMENT, S_EVENT, S_LOST, S_UNKNOWN_EVENT, S_MALFORMED_HEADER,
    S_MALFORMED_FIELDS, S_BAD_NUMBER
};

typedef struct { P p; int64_t n; } str_t;

typedef struct {
    int64_t v[NCOLS];  /* numeric values (bool as 0/1) */
    str_t s[NCOLS];    /* string values */
    uint32_t valid;    /* bit c set: column c is not null */
} row_t;

#define SET(r, c, x) ((r)->v[c] = (x), (r)->valid |= 1u << (c))
#define SETS(r, c, a, b) ((r)->s[c].p = (a), (r)->s[c].n = (b) - (a), (r)->valid |= 1u << (c))

/* ---------- lexical helpers: all take [p, e) and never read at or past e ---------- */

static inline P lit(P p, P e, const char *s, size_t n) {
    return (p && (size_t)(e - p) >= n && memcmp(p, s, n) == 0) ? p + n : NULL;
}
#define LIT(p, e, s) lit((p), (e), (s), sizeof(s) - 1)

#define OVF INT64_MAX /* marks a number too long to hold */

/* One or more decimal digits; *v = value, or OVF when longer than 18 digits. */
static inline P udig(P p, P e, int64_t *v) {
    if (!p || p >= e || (unsigned)(*p - '0') > 9) return NULL;
    uint64_t x = 0;
    int nd = 0;
    while (p < e && (unsigned)(*p - '0') <= 9) {
        if (nd < 18) x = x * 10 + (uint64_t)(*p - '0');
        nd++;
        p++;
    }
    *v = nd > 18 ? OVF : (int64_t)x;
    return p;
}

/* Optional '-' then digits. */
static inline P sdig(P p, P e, int64_t *v) {
    int neg = 0;
    if (p && p < e && *p == '-') { neg = 1; p++; }
    p = udig(p, e, v);
    if (p && neg && *v != OVF) *v = -*v;
    return p;
}

/* Backward: digits ending at e (at least one); returns their start. */
static inline P rdig(P s, P e, int64_t *v) {
    P q = e;
    while (q > s && (unsigned)(q[-1] - '0') <= 9) q--;
    if (q == e) return NULL;
    udig(q, e, v);
    return q;
}

/* Backward: optional '-' before digits ending at e. */
static inline P rsdig(P s, P e, int64_t *v) {
    P q = rdig(s, e, v);
    if (q && q > s && q[-1] == '-') { q--; if (*v != OVF) *v = -*v; }
    return q;
}

/* Backward literal: returns the position where s starts if [.., e) ends with it. */
static inline P rlit(P s, P e, const char *t, size_t n) {
    return (e && (size_t)(e - s) >= n && memcmp(e - n, t, n) == 0) ? e - n : NULL;
}
#define RLIT(s, e, t) rlit((s), (e), (t), sizeof(t) - 1)

static inline P skip_sp(P p, P e) { while (p < e && *p == ' ') p++; return p; }

/* A run of non-space bytes (at least one). */
static inline P token(P p, P e) {
    P q = p;
    while (q < e && *q != ' ') q++;
    return q > p ? q : NULL;
}

/* ---------- event bodies (see "Task names" in data/parse/tracefile.py for the rules) ---------- */

typedef P (*tail_fn)(P p, P e, row_t *r);

/* Leftmost space at or after p where `tail` matches; the comm is [from, that space). */
static P leftmost(P from, P e, tail_fn tail, row_t *r, P *comm_end) {
    P c = from;
    while (c < e && (c = memchr(c, ' ', (size_t)(e - c))) != NULL) {
        P q = tail(c, e, r);
        if (q) { *comm_end = c; return q; }
        c++;
    }
    return NULL;
}

static P sw_tail_prev(P p, P e, row_t *r) {
    int64_t a, b;
    p = LIT(p, e, " prev_pid=");
    p = udig(p, e, &a);
    p = LIT(p, e, " prev_prio=");
    p = sdig(p, e, &b);
    p = LIT(p, e, " prev_state=");
    if (!p) return NULL;
    P q = token(p, e);
    if (!q) return NULL;
    P t = LIT(q, e, " ==> next_comm=");
    if (!t) return NULL;
    SET(r, C_PREV_PID, a);
    SET(r, C_PREV_PRIO, b);
    SETS(r, C_PREV_STATE, p, q);
    return t;
}

static P sw_tail_next(P p, P e, row_t *r) {
    int64_t a, b;
    p = LIT(p, e, " next_pid=");
    p = udig(p, e, &a);
    p = LIT(p, e, " next_prio=");
    p = sdig(p, e, &b);
    if (p != e) return NULL;
    SET(r, C_NEXT_PID, a);
    SET(r, C_NEXT_PRIO, b);
    return p;
}

/* prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s ==> next_comm=%s next_pid=%d next_prio=%d */
static int body_switch_kernel(P b, P e, row_t *r) {
    P c1 = LIT(b, e, "prev_comm="), end1, end2;
    if (!c1) return 0;
    P c2 = leftmost(c1, e, sw_tail_prev, r, &end1);
    if (!c2 || !leftmost(c2, e, sw_tail_next, r, &end2)) return 0;
    SETS(r, C_PREV_COMM, c1, end1);
    SETS(r, C_NEXT_COMM, c2, end2);
    return 1;
}

/* libtraceevent sched_switch plugin (trace-cmd report):
 * PREV_COMM:PREV_PID [PRIO] STATE ==> NEXT_COMM:NEXT_PID [PRIO] */
static int body_switch_plugin(P b, P e, int64_t common_pid, row_t *r) {
    int64_t np = 0, npr = 0, pp = 0, ppr = 0;
    P q = RLIT(b, e, "]");
    q = q ? rsdig(b, q, &npr) : NULL;
    q = q ? RLIT(b, q, " [") : NULL;
    q = q ? rdig(b, q, &np) : NULL;
    q = q ? RLIT(b, q, ":") : NULL;
    if (!q) return 0;
    P next_colon = q;
    for (P c = b; c < next_colon && (c = memchr(c, ':', (size_t)(next_colon - c))) != NULL; c++) {
        P p = udig(c + 1, next_colon, &pp);
        p = LIT(p, next_colon, " [");
        p = sdig(p, next_colon, &ppr);
        p = LIT(p, next_colon, "] ");
        if (!p) continue;
        P st = token(p, next_colon);
        P t = st ? LIT(st, next_colon, " ==> ") : NULL;
        if (!t || pp != common_pid) continue;
        SETS(r, C_PREV_COMM, b, c);
        SET(r, C_PREV_PID, pp);
        SET(r, C_PREV_PRIO, ppr);
        SETS(r, C_PREV_STATE, p, st);
        SETS(r, C_NEXT_COMM, t, next_colon);
        SET(r, C_NEXT_PID, np);
        SET(r, C_NEXT_PRIO, npr);
        return 1;
    }
    return 0;
}

static P wk_tail(P p, P e, row_t *r) {
    int64_t a, b, s, t;
    p = LIT(p, e, " pid=");
    p = udig(p, e, &a);
    p = LIT(p, e, " prio=");
    p = sdig(p, e, &b);
    if (!p) return NULL;
    P q = LIT(p, e, " success=");
    if (q) p = udig(q, e, &s);
    p = LIT(p, e, " target_cpu=");
    p = udig(p, e, &t);
    if (p != e) return NULL;
    SET(r, C_PID, a);
    SET(r, C_PRIO, b);
    SET(r, C_TARGET_CPU, t);
    return p;
}

/* comm=%s pid=%d prio=%d [success=%d] target_cpu=%03d */
static int body_wakeup_kernel(P b, P e, row_t *r) {
    P c = LIT(b, e, "comm="), end;
    if (!c || !leftmost(c, e, wk_tail, r, &end)) return 0;
    SETS(r, C_COMM, c, end);
    return 1;
}

/* libtraceevent sched_wakeup plugin: COMM:PID [PRIO][ success=%d][ CPU:%03d] */
static int body_wakeup_plugin(P b, P e, row_t *r) {
    int64_t cpu = 0, s = 0, pid = 0, prio = 0;
    P q = e, t;
    int has_cpu = 0;
    if ((t = rdig(b, q, &cpu)) && (t = RLIT(b, t, " CPU:"))) { q = t; has_cpu = 1; }
    if ((t = rdig(b, q, &s)) && (t = RLIT(b, t, " success="))) q = t;
    q = RLIT(b, q, "]");
    q = q ? rsdig(b, q, &prio) : NULL;
    q = q ? RLIT(b, q, " [") : NULL;
    q = q ? rdig(b, q, &pid) : NULL;
    q = q ? RLIT(b, q, ":") : NULL;
    if (!q) return 0;
    SETS(r, C_COMM, b, q);
    SET(r, C_PID, pid);
    SET(r, C_PRIO, prio);
    if (has_cpu) SET(r, C_TARGET_CPU, cpu);
    return 1;
}

static P mg_tail(P p, P e, row_t *r) {
    int64_t a, b, o, d;
    p = LIT(p, e, " pid=");
    p = udig(p, e, &a);
    p = LIT(p, e, " prio=");
    p = sdig(p, e, &b);
    p = LIT(p, e, " orig_cpu=");
    p = udig(p, e, &o);
    p = LIT(p, e, " dest_cpu=");
    p = udig(p, e, &d);
    if (!p || (p != e && *p != ' ')) return NULL; /* later fields (e.g. running=) ignored */
    SET(r, C_PID, a);
    SET(r, C_PRIO, b);
    SET(r, C_ORIG_CPU, o);
    SET(r, C_DEST_CPU, d);
    return p;
}

/* comm=%s pid=%d prio=%d orig_cpu=%d dest_cpu=%d[ more=...] */
static int body_migrate(P b, P e, row_t *r) {
    P c = LIT(b, e, "comm="), end;
    if (!c || !leftmost(c, e, mg_tail, r, &end)) return 0;
    SETS(r, C_COMM, c, end);
    return 1;
}

static P fk_tail_parent(P p, P e, row_t *r) {
    int64_t a;
    p = LIT(p, e, " pid=");
    p = udig(p, e, &a);
    p = LIT(p, e, " child_comm=");
    if (!p) return NULL;
    SET(r, C_PARENT_PID, a);
    return p;
}

static P fk_tail_child(P p, P e, row_t *r) {
    int64_t a;
    p = LIT(p, e, " child_pid=");
    p = udig(p, e, &a);
    if (p != e) return NULL;
    SET(r, C_CHILD_PID, a);
    return p;
}

/* comm=%s pid=%d child_comm=%s child_pid=%d */
static int body_fork(P b, P e, row_t *r) {
    P c1 = LIT(b, e, "comm="), end1, end2;
    if (!c1) return 0;
    P c2 = leftmost(c1, e, fk_tail_parent, r, &end1);
    if (!c2 || !leftmost(c2, e, fk_tail_child, r, &end2)) return 0;
    SETS(r, C_PARENT_COMM, c1, end1);
    SETS(r, C_CHILD_COMM, c2, end2);
    return 1;
}

static P ex_tail(P p, P e, row_t *r) {
    int64_t a, b, gd = -1;
    p = LIT(p, e, " pid=");
    p = udig(p, e, &a);
    p = LIT(p, e, " prio=");
    p = sdig(p, e, &b);
    if (!p) return NULL;
    P q = LIT(p, e, " group_dead=");
    if (q) {
        P t;
        if ((t = LIT(q, e, "true"))) gd = 1, p = t;
        else if ((t = LIT(q, e, "false"))) gd = 0, p = t;
        else return NULL;
    }
    if (p != e) return NULL;
    SET(r, C_PID, a);
    SET(r, C_PRIO, b);
    if (gd >= 0) SET(r, C_GROUP_DEAD, gd);
    return p;
}

/* comm=%s pid=%d prio=%d[ group_dead=true|false] */
static int body_exit(P b, P e, row_t *r) {
    P c = LIT(b, e, "comm="), end;
    if (!c || !leftmost(c, e, ex_tail, r, &end)) return 0;
    SETS(r, C_COMM, c, end);
    return 1;
}

/* ---------- line header ---------- */

/* secs.frac (6 or 9 fraction digits) then ':' followed by a space or the end. */
static P timestamp(P p, P e, int64_t *ns) {
    int64_t secs, frac;
    P q = udig(p, e, &secs);
    q = LIT(q, e, ".");
    P f = q;
    q = udig(q, e, &frac);
    if (!q) return NULL;
    int nd = (int)(q - f);
    if (nd != 6 && nd != 9) return NULL;
    q = LIT(q, e, ":");
    if (!q || (q < e && *q != ' ')) return NULL;
    if (secs > 9000000000LL) *ns = OVF;
    else *ns = secs * 1000000000LL + (nd == 6 ? frac * 1000 : frac);
    return q;
}

/* From the dash at d: -PID +[(TGID) +][CPU] +[FLAGS +]TS: ; returns the position after "TS:". */
static P header_at(P d, P e, row_t *r) {
    int64_t pid, cpu, tgid, ts;
    P p = udig(d + 1, e, &pid);
    if (!p || p >= e || *p != ' ') return NULL;
    p = skip_sp(p, e);
    if (p < e && *p == '(') {
        P q = skip_sp(p + 1, e);
        P t = udig(q, e, &tgid);
        if (!t) { t = q; while (t < e && *t == '-') t++; if (t == q) return NULL; }
        t = LIT(t, e, ")");
        if (!t || t >= e || *t != ' ') return NULL;
        p = skip_sp(t, e);
    }
    p = LIT(p, e, "[");
    p = udig(p, e, &cpu);
    p = LIT(p, e, "]");
    if (!p || p >= e || *p != ' ') return NULL;
    p = skip_sp(p, e);
    P q = timestamp(p, e, &ts);
    if (!q) {
        P f = token(p, e);
        if (!f || f >= e || *f != ' ') return NULL;
        q = timestamp(skip_sp(f, e), e, &ts);
        if (!q) return NULL;
        SETS(r, C_FLAGS, p, f);
    }
    SET(r, C_COMMON_PID, pid);
    SET(r, C_CPU, cpu);
    SET(r, C_TS, ts);
    return q;
}

/* Event name characters: [A-Za-z0-9_]. */
static const uint8_t name_char[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['_'] = 1};

/* Classify and parse one line (trailing whitespace already cut). Returns a stats slot. */
static int parse_line(P s, P e, row_t *r, int64_t prev_ts) {
    int64_t a, b;
    P p, q;
    r->valid = 0;
    if (skip_sp(s, e) == e) return S_COMMENT;
    if (*s == '#') {
        p = LIT(s, e, "##### CPU ");
        p = udig(p, e, &a);
        if (p && LIT(p, e, " buffer started ####") == e) {
            SET(r, C_CPU, a); SET(r, C_TS, prev_ts); SET(r, C_EVENT, K_LOST);
            return S_LOST;
        }
        return S_COMMENT;
    }
    if ((p = udig(LIT(s, e, "CPU:"), e, &a)) != NULL) {
        if ((q = LIT(p, e, " [LOST ")) && (q = udig(q, e, &b)) && LIT(q, e, " EVENTS]") == e) {
            SET(r, C_LOST_COUNT, b);
        } else if ((q = LIT(p, e, " [")) && (q = udig(q, e, &b)) && LIT(q, e, " EVENTS DROPPED]") == e) {
            SET(r, C_LOST_COUNT, b);
        } else if (LIT(p, e, " [SUBBUFFER START]")) {
            return S_COMMENT;
        } else if (LIT(p, e, " [LOST EVENTS]") != e && LIT(p, e, " [EVENTS DROPPED]") != e) {
            goto event_line; /* not a marker after all */
        }
        SET(r, C_CPU, a); SET(r, C_TS, prev_ts); SET(r, C_EVENT, K_LOST);
        return S_LOST;
    }
    /* trace-cmd report preamble */
    if (udig(LIT(s, e, "cpus="), e, &a) == e || udig(LIT(s, e, "version = "), e, &a) == e ||
        LIT(udig(LIT(s, e, "CPU "), e, &a), e, " is empty") == e)
        return S_COMMENT;

event_line:
    /* Header: the leftmost dash from which the header layout matches. */
    for (p = s; p < e && (p = memchr(p, '-', (size_t)(e - p))) != NULL; p++) {
        r->valid = 0;
        q = header_at(p, e, r);
        if (q) break;
    }
    if (!p || p >= e) { r->valid = 0; return S_MALFORMED_HEADER; }
    P cs = skip_sp(s, p);
    SETS(r, C_COMMON_COMM, cs, p);
    /* event name */
    q = skip_sp(q, e);
    P n = q;
    while (q < e && name_char[*q]) q++;
    P ne = q;
    if (ne == n || q >= e || *q != ':' || (q + 1 < e && q[1] != ' ')) return S_UNKNOWN_EVENT;
    P body = skip_sp(q + 1, e);
    int kind = event_kind(n, (size_t)(ne - n));
    if (kind < 0) return S_UNKNOWN_EVENT;
    SET(r, C_EVENT, kind);
    int ok = 0;
    switch (kind) {
    case K_SWITCH:
        ok = body_switch_kernel(body, e, r) || body_switch_plugin(body, e, r->v[C_COMMON_PID], r);
        break;
    case K_WAKING: case K_WAKEUP: case K_WAKEUP_NEW:
        ok = body_wakeup_kernel(body, e, r) || body_wakeup_plugin(body, e, r);
        break;
    case K_MIGRATE: ok = body_migrate(body, e, r); break;
    case K_FORK: ok = body_fork(body, e, r); break;
    case K_EXIT: ok = body_exit(body, e, r); break;
    }
    return ok ? S_EVENT : S_MALFORMED_FIELDS;
}

/* Values must fit their column types. */
static int in_range(const row_t *r) {
    uint32_t m;
    for (m = r->valid & I16_MASK; m; m &= m - 1) {
        int64_t v = r->v[__builtin_ctz(m)];
        if (v < -32768 || v > 32767) return 0;
    }
    for (m = r->valid & I32_MASK; m; m &= m - 1) {
        int64_t v = r->v[__builtin_ctz(m)];
        if (v < -2147483648LL || v > 2147483647LL) return 0;
    }
    for (m = r->valid & I64_MASK; m; m &= m - 1)
        if (r->v[__builtin_ctz(m)] == OVF) return 0;
    return 1;
}

/* ---------- output ---------- */

typedef struct {
    void **cols;        /* numeric column arrays (NULL for string columns) */
    int32_t **offs;     /* per string slot: offsets, rows_cap + 1 */
    uint8_t **sdata;    /* per string slot: bytes */
    int64_t *scap;      /* per string slot: capacity */
    int64_t *sused;     /* per string slot: bytes used */
    uint8_t *bitmaps;   /* NCOLS validity bitmaps, then the group_dead value bitmap */
    int64_t bm_stride;
} out_t;

/* UTF-8 sequence length at p if valid (strict, as Python's decoder), else 0. */
static int utf8_len(P p, P e) {
    unsigned c = p[0];
    int64_t n = e - p;
    if (c >= 0xC2 && c <= 0xDF) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (p[2] & 0xC0) != 0x80) return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 4 : 0;
    }
    return 0;
}

/* Append a string as UTF-8; each byte that is not part of a valid sequence becomes U+FFFD.
 * Returns 0 when the slot is out of space. */
static int put_str(out_t *o, int slot, str_t s) {
    uint8_t *dst = o->sdata[slot] + o->sused[slot];
    int64_t room = o->scap[slot] - o->sused[slot];
    P p = s.p, e = s.p + s.n;
    int64_t i;
    if (s.n > room) return 0;
    memcpy(dst, p, (size_t)s.n);
    for (i = 0; i + 8 <= s.n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ULL) break;
    }
    while (i < s.n && p[i] < 0x80) i++;
    if (i == s.n) { o->sused[slot] += s.n; return 1; }
    int64_t w = i;
    p += i;
    while (p < e) {
        int k = *p < 0x80 ? 1 : utf8_len(p, e);
        if (w + (k ? k : 3) > room) return 0;
        if (k) { memcpy(dst + w, p, (size_t)k); w += k; p += k; }
        else { dst[w++] = 0xEF; dst[w++] = 0xBF; dst[w++] = 0xBD; p++; }
    }
    o->sused[slot] += w;
    return 1;
}

/* Write row i: only valid values (numeric arrays come zeroed) and every string offset.
 * Returns 0, leaving the string space as it was, when that space runs out. */
static int commit(out_t *o, const row_t *r, int64_t i) {
    int64_t saved[NSTR];
    memcpy(saved, o->sused, sizeof(saved));
    for (uint32_t m = r->valid & STR_MASK; m; m &= m - 1) {
        int c = __builtin_ctz(m);
        if (!put_str(o, str_slot[c], r->s[c])) {
            memcpy(o->sused, saved, sizeof(saved));
            return 0;
        }
    }
    for (int k = 0; k < NSTR; k++) o->offs[k][i + 1] = (int32_t)o->sused[k];
    uint8_t bit = (uint8_t)(1u << (i & 7));
    uint32_t m;
    for (m = r->valid; m; m &= m - 1) o->bitmaps[__builtin_ctz(m) * o->bm_stride + (i >> 3)] |= bit;
    for (m = r->valid & I16_MASK; m; m &= m - 1) {
        int c = __builtin_ctz(m);
        ((int16_t *)o->cols[c])[i] = (int16_t)r->v[c];
    }
    for (m = r->valid & I32_MASK; m; m &= m - 1) {
        int c = __builtin_ctz(m);
        ((int32_t *)o->cols[c])[i] = (int32_t)r->v[c];
    }
    for (m = r->valid & I64_MASK; m; m &= m - 1) {
        int c = __builtin_ctz(m);
        ((int64_t *)o->cols[c])[i] = r->v[c];
    }
    ((int8_t *)o->cols[C_EVENT])[i] = (int8_t)r->v[C_EVENT];
    if ((r->valid & BIT(C_GROUP_DEAD)) && r->v[C_GROUP_DEAD])
        o->bitmaps[NCOLS * o->bm_stride + (i >> 3)] |= bit;
    return 1;
}

/* Number of newlines in buf: bounds the rows that parsing it can produce. */
int64_t fp_count_lines(const char *buf, int64_t len) {
    int64_t n = 0;
    const char *p = buf, *e = buf + len;
    while (p < e && (p = memchr(p, '\n', (size_t)(e - p))) != NULL) { n++; p++; }
    return n;
}

/*
 * Parse whole lines of buf[0, len) into rows [0, rows_cap); numeric columns must come zeroed.
 * state: [0] lines before buf (in: 1-based numbering continues), [1] ts of the last event
 * (for LOST rows), [2] out: rows written, [3] out: bytes consumed (whole lines).
 * stats: NSTATS counters (added to); first: first line number per stats slot (0 = none yet).
 * Returns 0 when all of buf was consumed, 1 when output space ran out first.
 */
int fp_parse(const char *buf, int64_t len, int64_t *state, int64_t *stats, int64_t *first,
             void **cols, int32_t **offs, uint8_t **sdata, int64_t *scap, int64_t *sused,
             uint8_t *bitmaps, int64_t bm_stride, int64_t rows_cap) {
    out_t o = {cols, offs, sdata, scap, sused, bitmaps, bm_stride};
    P s = (P)buf, end = (P)buf + len;
    int64_t line = state[0], prev_ts = state[1], n = 0;
    row_t r;
    int status = 0;
    for (int k = 0; k < NSTR; k++) { offs[k][0] = 0; sused[k] = 0; }
    while (s < end) {
        P nl = memchr(s, '\n', (size_t)(end - s));
        P next = nl ? nl + 1 : end, e = nl ? nl : end;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
        int outcome = parse_line(s, e, &r, prev_ts);
        if ((outcome == S_EVENT || outcome == S_LOST) && !in_range(&r)) outcome = S_BAD_NUMBER;
        if (outcome == S_EVENT || outcome == S_LOST) {
            if (n >= rows_cap) { status = 1; break; }
            r.v[C_LINE] = line + 1;
            r.valid |= 1u << C_LINE;
            if (!commit(&o, &r, n)) { status = 1; break; }
            n++;
            if (outcome == S_EVENT) prev_ts = r.v[C_TS];
        }
        line++;
        stats[S_TOTAL]++;
        stats[outcome]++;
        if (!first[outcome]) first[outcome] = line;
        s = next;
    }
    state[0] = line;
    state[1] = prev_ts;
    state[2] = n;
    state[3] = (int64_t)(s - (P)buf);
    return status;
}

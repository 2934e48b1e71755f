/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_schedlearn: a sched_ext scheduler whose task-stealing decision is the can_migrate
 * verdict, asked on the feature contract (data/collect/bcc/cm_features.h).
 *
 * - One DSQ per CPU (id = cpu), ordered by weighted vtime as scx_simple orders its global one;
 *   a task is enqueued on the DSQ of the CPU it last ran on (scx_bpf_task_cpu()).
 * - ops.dispatch takes from the CPU's own DSQ; when that is empty the CPU steals: it walks the
 *   other CPUs nearest scheduling domain first (SMT sibling, same package/LLC, same node, other
 *   node: the order the loader computed from sysfs, map steal_order), and for each queued
 *   candidate (at most SL_MAX_CANDIDATES per victim) fills struct cm_fields from the
 *   scheduler's own analogues of CFS's state and asks decide().
 * - decide(): mode SL_MODE_RULE is the BPF twin of can_migrate_task()'s verdict on those fields
 *   (data/can_migrate/rule.py); SL_MODE_MODEL (the build with -DSL_MODEL) is the exported MLP,
 *   model.bpf.h: the export's forward pass, weights and activations in maps; logit > 0 moves.
 * - With `record` set every decision goes to the ring buffer `records` as a struct cm_record
 *   (data/collect/bcc/can_migrate.h), so data.build reads it like a kprobe record.
 * - Built with -DSL_STALL the scheduler never dispatches (a deliberate stall): sched_ext's
 *   watchdog must eject it and the system goes back to the fair class.
 *
 * Kernel C style: no floats, bounded loops (bpf_for / bpf_for_each), static const tables, no
 * allocation on the hot paths (task storage is created in ops.init_task).
 *
 * Kfuncs: the 6.13+ names (scx_bpf_dsq_insert*, scx_bpf_dsq_move*) through the kernel tree's
 * compat.bpf.h; built and tested against Debian's 7.3 kernel.
 */
#include <scx/common.bpf.h>
#include "can_migrate.h"
#include "cm_features.h"
#include "scx_schedlearn.h"
#include "rule.bpf.h"	/* rule_verdict(): the rule mode's decision */
#ifdef SL_MODEL
#include "model.bpf.h"	/* the exported MLP: weights and activations in maps */
#endif

char _license[] SEC("license") = "GPL";

const volatile u32 nr_cpus = 1;		/* CPUs the loader's topology covers (<= SL_MAX_CPUS) */
const volatile u32 mode = SL_MODE_RULE;
const volatile bool record;		/* emit every steal decision into `records` */

static u64 vtime_now;
UEI_DEFINE(uei);

/* cache_nice_tries of the sched domain a steal level stands for (kernel/sched/topology.c
 * sd_init(): SMT 0, LLC (MC) 1, a package domain without a shared LLC 1, NUMA 2). */
static const u32 level_cache_nice_tries[SL_LEVELS] = { 0, 1, 1, 2 };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_CPUS);
	__type(key, u32);
	__type(value, struct sl_order);
} steal_order SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_CPUS);
	__type(key, u32);
	__type(value, struct sl_cpu);
} cpu_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_NR_STATS);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sl_task);
} task_ctx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} records SEC(".maps");

static void stat_add(u32 idx, u64 n)
{
	u64 *cnt = bpf_map_lookup_elem(&stats, &idx);

	if (cnt)
		*cnt += n;
}

static struct sl_cpu *cpu_of(s32 cpu)
{
	u32 key = cpu;

	return bpf_map_lookup_elem(&cpu_state, &key);
}

/* The CPU's runnable count as CFS's rq->nr_running sees it: its DSQ plus what it runs. */
static u32 nr_running_of(s32 cpu, struct sl_cpu *c)
{
	s32 q = scx_bpf_dsq_nr_queued(cpu);

	return (q > 0 ? q : 0) + (c && c->running ? 1 : 0);
}

/* The CPU's load: a PELT-like average of nr_running * 1024 (a nice-0 task's CFS load weight),
 * updated at every dispatch and tick of that CPU with a 1/8 step. */
static void update_load(s32 cpu, struct sl_cpu *c)
{
	u64 target = (u64)nr_running_of(cpu, c) << 10;

	if (target >= c->load)
		c->load += (target - c->load) >> 3;
	else
		c->load -= (c->load - target) >> 3;
}

s32 BPF_STRUCT_OPS(schedlearn_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu;

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
#ifndef SL_STALL
	if (is_idle) {
		stat_add(SL_STAT_DIRECT, 1);
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, 0);
	}
#endif
	return cpu;
}

void BPF_STRUCT_OPS(schedlearn_enqueue, struct task_struct *p, u64 enq_flags)
{
	s32 cpu = scx_bpf_task_cpu(p), idle;
	u64 vtime = p->scx.dsq_vtime;

	stat_add(SL_STAT_ENQUEUE, 1);
	if ((u32)cpu >= nr_cpus)
		cpu = 0;
	/* an idle task's budget is limited to one slice (scx_simple) */
	if (time_before(vtime, vtime_now - SCX_SLICE_DFL))
		vtime = vtime_now - SCX_SLICE_DFL;
	scx_bpf_dsq_insert_vtime(p, cpu, SCX_SLICE_DFL, vtime, enq_flags);
	/* wake the owner if it idles; else an idle CPU, which will try to steal */
	if (scx_bpf_test_and_clear_cpu_idle(cpu)) {
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		return;
	}
	idle = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	if (idle >= 0)
		scx_bpf_kick_cpu(idle, SCX_KICK_IDLE);
}

/* One steal candidate: the contract's fields plus what a record carries beyond them. */
struct sl_cand {
	struct cm_fields f;
	u64 vruntime, runtime_avg_ns, steals, p_flags;
	s32 pid, tgid, cpu, victim, nr_cpus_allowed;
	u32 level, span, policy;
};

/* The fields struct cm_record and struct cm_fields share by name (cm_fields_from_record() in
 * cm_features.h copies them the other way; that header is installed verbatim by the fair.c
 * patch, so the list lives here). */
#define CM_SHARED_FIELDS(X)                                                                  \
	X(delta_ns) X(src_load) X(dst_load) X(total_numa_faults) X(src_node) X(dst_node)      \
	X(numa_preferred_nid) X(src_nr_running) X(dst_nr_running) X(src_nr_preferred_running) \
	X(nr_balance_failed) X(cache_nice_tries) X(cpu_idle) X(cpu_not_idle) X(cpu_newly_idle) \
	X(buddy_hot)

static void emit(const struct sl_cand *c, bool verdict, u8 path, s64 logit, u32 gen, u32 tries)
{
	const struct cm_fields *f = &c->f;
	struct cm_record *r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);

	if (!r) {
		stat_add(SL_STAT_RING_FULL, 1);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->magic = CM_MAGIC;
	r->size = sizeof(*r);
	r->ts_ns = bpf_ktime_get_ns();
#define CM_COPY(name) r->name = f->name;
	CM_SHARED_FIELDS(CM_COPY)
#undef CM_COPY
	r->pid = c->pid;
	r->tgid = c->tgid;
	r->curr_pid = bpf_get_current_pid_tgid() & 0xffffffff;
	r->cpu = c->cpu;
	r->src_cpu = c->victim;
	r->dst_cpu = c->cpu;
	r->idle = 2;		/* CPU_NEWLY_IDLE, 2 in 6.1's and in 6.10+'s enum cpu_idle_type */
	r->sd_flags = c->level == SL_LEVEL_SMT ? SL_SD_SHARE_CPUCAPACITY | SL_SD_SHARE_LLC :
		      c->level == SL_LEVEL_LLC ? SL_SD_SHARE_LLC : c->level == SL_LEVEL_REMOTE ? SL_SD_NUMA : 0;
	r->p_flags = c->p_flags;
	r->nr_cpus_allowed = c->nr_cpus_allowed;
	r->ret = verdict;
	r->dst_allowed = 1;
	r->task_hot_after = verdict && (path == SL_PATH_DELTA || path == SL_PATH_BUDDY ||
					path == SL_PATH_LOCALITY_DEGRADES);
	r->policy = c->policy;
	r->util_avg = c->runtime_avg_ns;	/* scx: the task's average run length, ns */
	r->vruntime = c->vruntime;		/* scx: p->scx.dsq_vtime */
	r->cfs_min_vruntime = vtime_now;	/* scx: the scheduler's vtime_now */
	r->nr_migrations = c->steals;		/* scx: times this task was stolen */
	r->sd_level = c->level;
	r->sd_span_weight = c->span;
	r->_pad[0] = path;	/* scx: the deciding branch of the rule (enum sl_path) */
	r->imbalance = logit;	/* scx, model mode: the model's logit (rule mode: 0) */
	r->numa_group_id = gen;	/* scx, model mode: the model generation that decided (hot swap) */
	r->src_nr_numa_running = tries;	/* scx, model mode: forward passes it took (rule mode: 0) */
	bpf_ringbuf_submit(r, 0);
}

/* A global function: verified once on its own, which keeps the steal loop's state space small.
 * Computes the features, asks the decision, counts and records it; returns the verdict. */
__noinline int sl_judge(struct sl_cand *c)
{
	s64 raw[CMF_N];
	u8 path = SL_PATH_COLD;
	s64 out = 0;
	u32 gen = 0, tries = 0;
	bool ok;

	if (!c)
		return 0;
	cm_features_raw(&c->f, raw);
	/* the rule always runs: its branch is counted and recorded in both modes */
	ok = rule_verdict(&c->f, raw, c->level, c->policy, &path);
#ifdef SL_MODEL
	if (mode == SL_MODE_MODEL) {
		s32 logit = 0;
		int err = sl_model_logit(raw, &logit, &gen, &tries);

		/* no weights (cannot happen once loaded): refuse, and count it as a model error;
		 * a swap during every pass: refuse, counted apart */
		if (err)
			stat_add(err == -2 ? SL_STAT_MODEL_GAVE_UP : SL_STAT_MODEL_ERR, 1);
		else if (tries > 1)
			stat_add(SL_STAT_MODEL_RETRIED, 1);
		if (err)
			logit = 0;
		ok = logit > 0;
		out = logit;
	}
#endif
	stat_add(SL_STAT_CANDIDATES, 1);
	stat_add(SL_STAT_PATH0 + (path < SL_NR_PATHS ? path : 0), 1);
	if (!ok)
		stat_add(SL_STAT_REFUSED, 1);
	if (record)
		emit(c, ok, path, out, gen, tries);
	return ok;
}

/* One idle CPU tries to take a task from the others' DSQs, nearest domain first. */
static bool try_steal(s32 cpu)
{
	u32 key = cpu, i, n;
	bool refused = false;	/* a flag, not a counter: the verifier's loop states converge */
	struct sl_order *o = bpf_map_lookup_elem(&steal_order, &key);
	struct sl_cpu *me = cpu_of(cpu);
	struct task_struct *p;
	u64 now = bpf_ktime_get_ns();

	if (!o || !me)
		return false;
	n = o->n < SL_MAX_CPUS ? o->n : SL_MAX_CPUS;
	bpf_for(i, 0, SL_MAX_CPUS) {
		s32 victim;
		u32 level, seen = 0;
		struct sl_cpu *vc;

		if (i >= n)
			break;
		victim = o->cpu[i & (SL_MAX_CPUS - 1)];
		level = o->level[i & (SL_MAX_CPUS - 1)] & (SL_LEVELS - 1);	/* SL_LEVELS: a power of two */
		if ((u32)victim >= nr_cpus || scx_bpf_dsq_nr_queued(victim) <= 0)
			continue;
		vc = cpu_of(victim);
		if (!vc)
			continue;
		bpf_for_each(scx_dsq, p, victim, 0) {
			struct sl_cand c = {};
			struct sl_task *t;

			if (++seen > SL_MAX_CANDIDATES)
				break;
			if (!bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
				continue;
			t = bpf_task_storage_get(&task_ctx, p, 0, 0);
			if (t) {
				c.f.delta_ns = t->last_ran_ns && now > t->last_ran_ns ? (s64)(now - t->last_ran_ns) :
											(s64)1 << 40;
				c.runtime_avg_ns = t->runtime_avg_ns;
				c.steals = t->steals;
			} else {
				c.f.delta_ns = (s64)1 << 40;	/* never ran under this scheduler: cold */
			}
			c.f.src_load = vc->load;
			c.f.dst_load = me->load;
			c.f.total_numa_faults = BPF_CORE_READ(p, total_numa_faults);
			c.f.src_node = o->src_node[i & (SL_MAX_CPUS - 1)];
			c.f.dst_node = o->node;
			c.f.numa_preferred_nid = BPF_CORE_READ(p, numa_preferred_nid);
			c.f.src_nr_running = nr_running_of(victim, vc);
			c.f.dst_nr_running = nr_running_of(cpu, me);
			c.f.nr_balance_failed = me->fail_streak;
			c.f.cache_nice_tries = level_cache_nice_tries[level];
			c.f.cpu_newly_idle = 1;
			c.vruntime = p->scx.dsq_vtime;
			c.p_flags = p->flags;
			c.pid = p->pid;
			c.tgid = p->tgid;
			c.cpu = cpu;
			c.victim = victim;
			c.nr_cpus_allowed = p->nr_cpus_allowed;
			c.level = level;
			c.span = o->span[level];
			c.policy = p->policy;
			if (!sl_judge(&c)) {
				refused = true;
				continue;
			}
			if (scx_bpf_dsq_move(BPF_FOR_EACH_ITER, p, SCX_DSQ_LOCAL, 0)) {
				if (t)
					t->steals++;
				me->fail_streak = 0;
				stat_add(SL_STAT_STEALS, 1);
				stat_add(SL_STAT_STEAL_L0 + level, 1);
				return true;
			}
			stat_add(SL_STAT_MOVE_LOST, 1);	/* it left the DSQ meanwhile */
		}
	}
	if (refused) {	/* CFS's nr_balance_failed: an imbalance seen, nothing moved */
		me->fail_streak++;
		stat_add(SL_STAT_FAILED, 1);
	}
	return false;
}

void BPF_STRUCT_OPS(schedlearn_dispatch, s32 cpu, struct task_struct *prev)
{
#ifdef SL_STALL
	return;	/* deliberately never dispatch: the watchdog must eject this scheduler */
#else
	struct sl_cpu *c = cpu_of(cpu);

	if (c)
		update_load(cpu, c);
	if (scx_bpf_dsq_move_to_local(cpu, 0)) {
		stat_add(SL_STAT_LOCAL, 1);
		if (c)
			c->fail_streak = 0;
		return;
	}
	try_steal(cpu);
#endif
}

void BPF_STRUCT_OPS(schedlearn_tick, struct task_struct *p)
{
	s32 cpu = scx_bpf_task_cpu(p), idle;
	struct sl_cpu *c = cpu_of(cpu);

	if (c)
		update_load(cpu, c);
	/* periodic balance: a CPU with waiting tasks wakes an idle one to steal */
	if (scx_bpf_dsq_nr_queued(cpu) > 0) {
		idle = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
		if (idle >= 0)
			scx_bpf_kick_cpu(idle, SCX_KICK_IDLE);
	}
}

void BPF_STRUCT_OPS(schedlearn_running, struct task_struct *p)
{
	struct sl_task *t = bpf_task_storage_get(&task_ctx, p, 0, 0);
	struct sl_cpu *c = cpu_of(scx_bpf_task_cpu(p));

	if (time_before(vtime_now, p->scx.dsq_vtime))
		vtime_now = p->scx.dsq_vtime;
	if (c)
		c->running = 1;
	if (t)
		t->start_ns = bpf_ktime_get_ns();
}

void BPF_STRUCT_OPS(schedlearn_stopping, struct task_struct *p, bool runnable)
{
	struct sl_task *t = bpf_task_storage_get(&task_ctx, p, 0, 0);
	struct sl_cpu *c = cpu_of(scx_bpf_task_cpu(p));
	u64 now = bpf_ktime_get_ns();
	u64 delta = scale_by_task_weight_inverse(p, SCX_SLICE_DFL - p->scx.slice);

	scx_bpf_task_set_dsq_vtime(p, p->scx.dsq_vtime + delta);
	if (c)
		c->running = 0;
	if (t) {	/* exec_start analogue and the average run length (1/8 step) */
		u64 ran = t->start_ns && now > t->start_ns ? now - t->start_ns : 0;

		t->last_ran_ns = now;
		if (ran >= t->runtime_avg_ns)
			t->runtime_avg_ns += (ran - t->runtime_avg_ns) >> 3;
		else
			t->runtime_avg_ns -= (t->runtime_avg_ns - ran) >> 3;
	}
}

void BPF_STRUCT_OPS(schedlearn_enable, struct task_struct *p)
{
	scx_bpf_task_set_dsq_vtime(p, vtime_now);
}

s32 BPF_STRUCT_OPS(schedlearn_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	if (!bpf_task_storage_get(&task_ctx, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return -ENOMEM;
	return 0;
}

s32 BPF_STRUCT_OPS_SLEEPABLE(schedlearn_init)
{
	u32 i;
	s32 ret;

	bpf_for(i, 0, SL_MAX_CPUS) {
		if (i >= nr_cpus)
			break;
		ret = scx_bpf_create_dsq(i, -1);
		if (ret) {
			scx_bpf_error("failed to create DSQ %u (%d)", i, ret);
			return ret;
		}
	}
	return 0;
}

void BPF_STRUCT_OPS(schedlearn_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(schedlearn_ops,
	       .select_cpu		= (void *)schedlearn_select_cpu,
	       .enqueue			= (void *)schedlearn_enqueue,
	       .dispatch		= (void *)schedlearn_dispatch,
	       .tick			= (void *)schedlearn_tick,
	       .running			= (void *)schedlearn_running,
	       .stopping		= (void *)schedlearn_stopping,
	       .enable			= (void *)schedlearn_enable,
	       .init_task		= (void *)schedlearn_init_task,
	       .init			= (void *)schedlearn_init,
	       .exit			= (void *)schedlearn_exit,
	       .name			= "schedlearn");

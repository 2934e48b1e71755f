// SPDX-License-Identifier: GPL-2.0
/*
 * schedlearn: a learned scheduler model in the kernel.
 *
 * The model (integer-only forward pass, weights as static const tables) comes
 * from the generated model.h.  At load the module checks it against the
 * embedded test vectors of model_vectors.h and reports ns per forward.
 * /dev/schedlearn accepts a new weights blob (validated, then swapped in with
 * RCU; a bad blob leaves the serving model alone) and, when read, runs the
 * serving model on the test vectors and reports a digest of the outputs.
 * If the kernel carries the fair.c patch and the model reads only can_migrate
 * features (the contract in cm_features.h), it is also offered to
 * can_migrate_task(): shadow mode counts agreement with CFS, active mode decides.
 * A model with any other input is refused there, with one line in dmesg.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/crc32.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/miscdevice.h>
#include <linux/moduleparam.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/rcupdate.h>
#include <linux/sched/clock.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "blob_format.h"	/* export/blob_format.h: the blob header */
#include "model.h"
#include "blob_check.h"	/* export/blob_check.h: the blob rules, one C definition */
#include "model_vectors.h"
#include "sched_lb_model.h"
#include "slm_cm_input.h"

static bool active_mode;
module_param_named(active, active_mode, bool, 0644);
MODULE_PARM_DESC(active, "0: shadow (CFS decides, agreement counted), 1: the model decides");

static uint max_macs = SLM_BLOB_MAX_MACS;
module_param(max_macs, uint, 0644);
MODULE_PARM_DESC(max_macs, "refuse blobs whose cost exceeds this many MACs per decision");

/* The serving model.  Readers: rcu_read_lock(); writers: slm_swap_lock. */
struct slm_model {
	u32 gen;		/* 0: built in, then one per accepted blob */
	u32 crc;		/* zlib crc32 of params */
	struct slm_params params;
};

static struct slm_model __rcu *slm_serving;
static DEFINE_MUTEX(slm_swap_lock);
static u32 slm_next_gen = 1;

static u32 slm_params_crc(const struct slm_params *p)
{
	return ~crc32_le(~0U, (const u8 *)p, sizeof(*p));
}

/* Outcome of running a model over the embedded test vectors. */
struct slm_eval {
	u32 matches;		/* vectors whose outputs equal slm_vec_out */
	u32 out_crc;		/* zlib crc32 of all outputs as little-endian s32 */
	u64 ns;			/* time spent in slm_step() */
	s32 first_bad;		/* index of the first mismatch, -1 if none */
};

/* Runs the whole vector sequence from a reset state.  Sleeps (allocates). */
static int slm_eval_vectors(const struct slm_params *p, struct slm_eval *ev)
{
	struct slm_state *st;
	__le32 *outs;
	s32 out[SLM_N_OUT];
	u64 t0;
	int i, k;

	st = kzalloc(sizeof(*st), GFP_KERNEL);
	outs = kvmalloc_array(SLM_N_VECTORS * SLM_N_OUT, sizeof(*outs), GFP_KERNEL);
	if (!st || !outs) {
		kfree(st);
		kvfree(outs);
		return -ENOMEM;
	}
	slm_reset(st);
	t0 = ktime_get_ns();
	for (i = 0; i < SLM_N_VECTORS; i++) {
		slm_step(p, st, slm_vec_in[i], out);
		for (k = 0; k < SLM_N_OUT; k++)
			outs[i * SLM_N_OUT + k] = cpu_to_le32(out[k]);
	}
	ev->ns = ktime_get_ns() - t0;

	ev->matches = 0;
	ev->first_bad = -1;
	for (i = 0; i < SLM_N_VECTORS; i++) {
		bool same = true;

		for (k = 0; k < SLM_N_OUT; k++)
			same &= (s32)le32_to_cpu(outs[i * SLM_N_OUT + k]) == slm_vec_out[i][k];
		if (same)
			ev->matches++;
		else if (ev->first_bad < 0)
			ev->first_bad = i;
	}
	ev->out_crc = ~crc32_le(~0U, (const u8 *)outs,
				SLM_N_VECTORS * SLM_N_OUT * sizeof(*outs));
	kfree(st);
	kvfree(outs);
	return 0;
}

/* ---- the fair.c hook -------------------------------------------------- */

struct slm_lb_stats {
	u64 ns;			/* time in slm_lb_decide() (local_clock) */
	u64 calls;
	u64 agree;
	u64 model_migrate;
	u64 cfs_migrate;
};

static DEFINE_PER_CPU(struct slm_lb_stats, slm_lb_stats);
/*
 * Streaming state per balancing CPU (the rq lock and irqs-off serialise it);
 * allocated, not DEFINE_PER_CPU, as module static per-CPU space is small.
 */
static struct slm_state __percpu *slm_lb_state;
static void (*slm_lb_unregister)(sched_lb_model_fn fn);

/* Model input j reads can_migrate feature slm_lb_col[j] (slm_cm_input.h). */
static s8 slm_lb_col[SLM_N_IN];

#ifdef SLM_HAVE_ENCODE
static int slm_lb_decide(const struct sched_lb_features *f)
{
	struct slm_lb_stats *s = this_cpu_ptr(&slm_lb_stats);
	const struct slm_model *m;
	int verdict;
	u64 t0;

	t0 = local_clock();
	rcu_read_lock();
	m = rcu_dereference(slm_serving);
	/* logit > 0: P(migrate) > 1/2 */
	verdict = slm_cm_logit(&m->params, this_cpu_ptr(slm_lb_state), slm_lb_col, &f->cm) > 0;
	rcu_read_unlock();
	s->ns += local_clock() - t0;

	s->calls++;
	s->agree += verdict == f->cfs_verdict;
	s->model_migrate += verdict;
	s->cfs_migrate += f->cfs_verdict;
	return READ_ONCE(active_mode) ? verdict : f->cfs_verdict;
}
#else
static int slm_lb_decide(const struct sched_lb_features *f)
{
	return f->cfs_verdict;	/* never registered: slm_lb_attach() refuses such a model */
}
#endif

/*
 * symbol_get() so that the module also loads on kernels without the patch
 * (and without these symbols): the model is then reachable only through
 * /dev/schedlearn.
 */
static void slm_lb_attach(void)
{
	int (*reg)(sched_lb_model_fn fn);
	int cpu, ret;

	if (SLM_N_OUT != 1) {
		pr_err("fair.c hook refused: the model has %d outputs, can_migrate_task() needs 1 logit\n",
		       SLM_N_OUT);
		return;
	}
	ret = slm_cm_map_inputs(slm_lb_col);
	if (ret >= SLM_N_IN) {
		pr_err("fair.c hook refused: model.h declares no input columns, the hook computes only can_migrate features\n");
		return;
	}
#if defined(SLM_HAVE_IN_COLUMNS)
	if (ret >= 0) {
		pr_err("fair.c hook refused: model input %d (%s) is not a can_migrate feature the hook computes (cm_features.h)\n",
		       ret, slm_in_column[ret]);
		return;
	}
#endif
	reg = symbol_get(sched_lb_model_register);
	if (!reg) {
		pr_info("fair.c hook: not in this kernel (unpatched), /dev/schedlearn only\n");
		return;
	}
	slm_lb_unregister = symbol_get(sched_lb_model_unregister);
	slm_lb_state = alloc_percpu(struct slm_state);
	ret = slm_lb_unregister ? -ENOMEM : -ENOENT;
	if (slm_lb_unregister && slm_lb_state) {
		for_each_possible_cpu(cpu)
			slm_reset(per_cpu_ptr(slm_lb_state, cpu));
		ret = reg(slm_lb_decide);
	}
	symbol_put(sched_lb_model_register);
	if (ret) {
		pr_warn("fair.c hook: registration failed (%d)\n", ret);
		if (slm_lb_unregister)
			symbol_put(sched_lb_model_unregister);
		slm_lb_unregister = NULL;
		free_percpu(slm_lb_state);
		slm_lb_state = NULL;
		return;
	}
	pr_info("fair.c hook: registered, %s mode\n", active_mode ? "active" : "shadow");
}

static void slm_lb_detach(void)
{
	if (!slm_lb_unregister)
		return;
	slm_lb_unregister(slm_lb_decide);	/* synchronize_rcu(): nobody is inside */
	symbol_put(sched_lb_model_unregister);
	free_percpu(slm_lb_state);
	slm_lb_unregister = NULL;
	slm_lb_state = NULL;
}

/*
 * hook=0 unregisters from can_migrate_task() (CFS alone, as without the
 * module), hook=1 registers again: the closed loop's arms in one boot.
 */
static bool slm_hook_wanted = true;
static bool slm_ready;			/* init done: attach for real */
static DEFINE_MUTEX(slm_hook_lock);

static int slm_hook_set(const char *val, const struct kernel_param *kp)
{
	bool on;
	int ret = kstrtobool(val, &on);

	if (ret)
		return ret;
	mutex_lock(&slm_hook_lock);
	slm_hook_wanted = on;
	if (slm_ready && on && !slm_lb_unregister)
		slm_lb_attach();
	else if (slm_ready && !on)
		slm_lb_detach();
	mutex_unlock(&slm_hook_lock);
	return 0;
}

static int slm_hook_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", slm_lb_unregister ? 1 : 0);
}

static const struct kernel_param_ops slm_hook_ops = {
	.set = slm_hook_set,
	.get = slm_hook_get,
};
module_param_cb(hook, &slm_hook_ops, NULL, 0644);
MODULE_PARM_DESC(hook, "1: offer the model to can_migrate_task() (patched kernels), 0: CFS alone");

/*
 * time_hook=1 asks a patched kernel to time can_migrate_task()'s hook per call,
 * apart with and without a registered model (sched_lb_hook_timing()); the query
 * prints the sums and what an empty local_clock() pair costs here, which every
 * timed call includes.
 */
static bool slm_time_hook;
static u64 slm_timer_ns;

static u64 slm_clock_pair_ns(void)
{
	u64 t0, sum = 0;
	int i;

	for (i = 0; i < 256; i++) {
		t0 = local_clock();
		sum += local_clock() - t0;
	}
	return sum / 256;
}

static int slm_time_hook_set(const char *val, const struct kernel_param *kp)
{
	void (*timing)(bool on);
	bool on;
	int ret = kstrtobool(val, &on);

	if (ret)
		return ret;
	timing = symbol_get(sched_lb_hook_timing);
	if (!timing)
		return -ENOENT;	/* kernel without the patch: nothing to time */
	timing(on);
	symbol_put(sched_lb_hook_timing);
	slm_time_hook = on;
	if (on)
		slm_timer_ns = slm_clock_pair_ns();
	return 0;
}

static const struct kernel_param_ops slm_time_hook_ops = {
	.set = slm_time_hook_set,
	.get = param_get_bool,
};
module_param_cb(time_hook, &slm_time_hook_ops, &slm_time_hook, 0644);
MODULE_PARM_DESC(time_hook, "1: the patched kernel times its hook per call (query: fair_*)");

/* The kernel's hook timing as " fair_calls=... timer_ns=...", or "" without the patch. */
static int slm_fair_timing(char *buf, size_t size)
{
	void (*stats)(struct sched_lb_hook_stats *sum) = symbol_get(sched_lb_hook_stats);
	struct sched_lb_hook_stats t;

	if (!stats)
		return 0;
	stats(&t);
	symbol_put(sched_lb_hook_stats);
	return scnprintf(buf, size,
			 " timing=%s fair_calls=%llu fair_ns=%llu fair_model_calls=%llu fair_model_ns=%llu"
			 " timer_ns=%llu", slm_time_hook ? "on" : "off", t.calls, t.ns,
			 t.model_calls, t.model_ns, slm_timer_ns);
}

static void slm_lb_sum(struct slm_lb_stats *sum)
{
	int cpu;

	memset(sum, 0, sizeof(*sum));
	for_each_possible_cpu(cpu) {
		const struct slm_lb_stats *s = per_cpu_ptr(&slm_lb_stats, cpu);

		/* Torn reads only skew a statistic. */
		sum->ns += READ_ONCE(s->ns);
		sum->calls += READ_ONCE(s->calls);
		sum->agree += READ_ONCE(s->agree);
		sum->model_migrate += READ_ONCE(s->model_migrate);
		sum->cfs_migrate += READ_ONCE(s->cfs_migrate);
	}
}

/* ---- blob validation and swap ----------------------------------------- */

#define slm_reject(err, fmt, ...) \
	({ pr_err("blob rejected: " fmt "\n", ##__VA_ARGS__); (err); })

/* Everything but the checksum (blob_check.h), with the reason in dmesg. */
static int slm_check_hdr(const struct schedlearn_blob_hdr *h)
{
	u32 bound = READ_ONCE(max_macs);

	switch (slm_blob_check_hdr(h, bound)) {
	case SLM_BLOB_OK:
		return 0;
	case SLM_BLOB_BAD_MAGIC:
		return slm_reject(-EINVAL, "bad magic 0x%08x (want 0x%08x)",
				  le32_to_cpu(h->magic), SLM_BLOB_MAGIC);
	case SLM_BLOB_BAD_VERSION:
		return slm_reject(-EINVAL, "format version %u (want %u)",
				  le16_to_cpu(h->version), SLM_BLOB_VERSION);
	case SLM_BLOB_BAD_HDR_SIZE:
		return slm_reject(-EINVAL, "header size %u (want %zu)",
				  le16_to_cpu(h->hdr_size), SLM_HDR_SIZE);
	case SLM_BLOB_BAD_ARCH:
		return slm_reject(-EINVAL,
				  "arch_hash 0x%08x, module built for 0x%08x (other inputs, ops, shapes or scales)",
				  le32_to_cpu(h->arch_hash), (u32)SLM_ARCH_HASH);
	case SLM_BLOB_BAD_SHAPE:
		return slm_reject(-EINVAL, "shape in=%u out=%u window=%u, want %d/%d/%d",
				  le32_to_cpu(h->n_in), le32_to_cpu(h->n_out),
				  le32_to_cpu(h->window), SLM_N_IN, SLM_N_OUT, SLM_WINDOW);
	case SLM_BLOB_BAD_MACS:
		return slm_reject(-EINVAL, "%u MACs per decision (model %u, bound max_macs=%u)",
				  le32_to_cpu(h->macs), SLM_MACS, bound);
	case SLM_BLOB_BAD_PARAMS_SIZE:
	default:
		return slm_reject(-EINVAL, "params_size %u (want %zu)",
				  le32_to_cpu(h->params_size), sizeof(struct slm_params));
	}
}

/*
 * Publishes m and frees the model it replaces once no reader can hold it.
 * Returns m's generation: after the unlock a concurrent swap may free m.
 */
static u32 slm_swap(struct slm_model *m)
{
	struct slm_model *old;
	u32 gen;

	mutex_lock(&slm_swap_lock);
	gen = slm_next_gen++;
	m->gen = gen;
	old = rcu_replace_pointer(slm_serving, m, lockdep_is_held(&slm_swap_lock));
	mutex_unlock(&slm_swap_lock);
	synchronize_rcu();
	kvfree(old);
	return gen;
}

/* ---- /dev/schedlearn --------------------------------------------------- */

/*
 * One blob per open(): bytes accumulate across write() calls; the header is
 * checked as soon as it is complete and the checksum when the last byte
 * arrives, so the write() that completes a bad part fails.
 */
struct slm_file {
	struct mutex lock;		/* stream files: write()s may race */
	struct schedlearn_blob_hdr hdr;
	struct slm_model *staged;	/* standby copy being filled */
	size_t len;			/* blob bytes received */
	int err;			/* sticky: the blob was rejected */
	char text[768];			/* read(): status + query */
	size_t text_len;
	loff_t text_pos;		/* stream_open(): read() gets no ppos */
};

static int slm_open(struct inode *inode, struct file *file)
{
	struct slm_file *sf = kzalloc(sizeof(*sf), GFP_KERNEL);

	if (!sf)
		return -ENOMEM;
	mutex_init(&sf->lock);
	if (file->f_mode & FMODE_WRITE) {
		sf->staged = kvzalloc(sizeof(*sf->staged), GFP_KERNEL);
		if (!sf->staged) {
			kfree(sf);
			return -ENOMEM;
		}
	}
	file->private_data = sf;
	return stream_open(inode, file);
}

static int slm_release(struct inode *inode, struct file *file)
{
	struct slm_file *sf = file->private_data;

	if (sf->len && !slm_blob_complete(sf->len) && !sf->err)
		pr_err("blob rejected: truncated, %zu of %zu bytes\n", sf->len, SLM_BLOB_SIZE);
	kvfree(sf->staged);
	kfree(sf);
	return 0;
}

static int slm_commit(struct slm_file *sf)
{
	struct slm_model *m = sf->staged;
	u32 want = le32_to_cpu(sf->hdr.crc32);
	u32 gen;

	m->crc = slm_params_crc(&m->params);
	if (slm_blob_check_crc(&sf->hdr, m->crc) != SLM_BLOB_OK)
		return slm_reject(-EBADMSG, "crc32 0x%08x, header says 0x%08x", m->crc, want);
	sf->staged = NULL;
	gen = slm_swap(m);	/* m is not ours any more */
	pr_info("model gen %u loaded (crc32 0x%08x, %zu bytes)\n", gen, want, SLM_BLOB_SIZE);
	return 0;
}

static ssize_t slm_write_locked(struct slm_file *sf, const char __user *buf, size_t n)
{
	size_t done = 0, take;
	u8 *dst;

	if (sf->err)
		return sf->err;
	if (slm_blob_room(sf->len, n) != SLM_BLOB_OK)
		return sf->err = slm_reject(-EFBIG, "%zu bytes or more, a blob is %zu",
					    sf->len + n, SLM_BLOB_SIZE);
	while (done < n) {	/* at most twice: header, then params */
		dst = slm_blob_dst(&sf->hdr, &sf->staged->params, sf->len, n - done, &take);
		if (copy_from_user(dst, buf + done, take))
			return -EFAULT;
		sf->len += take;
		done += take;
		if (slm_blob_at_hdr_end(sf->len))
			sf->err = slm_check_hdr(&sf->hdr);
		else if (slm_blob_complete(sf->len))
			sf->err = slm_commit(sf);
		if (sf->err)
			return sf->err;
	}
	return done;
}

static ssize_t slm_write(struct file *file, const char __user *buf, size_t n, loff_t *ppos)
{
	struct slm_file *sf = file->private_data;
	ssize_t ret;

	mutex_lock(&sf->lock);
	ret = slm_write_locked(sf, buf, n);
	mutex_unlock(&sf->lock);
	return ret;
}

/* Status and a query of the serving model on the embedded test vectors. */
static int slm_query(char *buf, size_t size)
{
	struct slm_lb_stats lb;
	struct slm_eval ev;
	struct slm_model *m;
	u32 gen, crc;
	int ret;

	/* Copy out under the mutex: the model may not be freed meanwhile. */
	mutex_lock(&slm_swap_lock);
	m = rcu_dereference_protected(slm_serving, lockdep_is_held(&slm_swap_lock));
	gen = m->gen;
	crc = m->crc;
	ret = slm_eval_vectors(&m->params, &ev);
	mutex_unlock(&slm_swap_lock);
	if (ret)
		return ret;
	slm_lb_sum(&lb);
	ret = scnprintf(buf, size,
			"gen=%u crc32=0x%08x arch=0x%08x n_in=%d n_out=%d window=%d macs=%u params_size=%zu\n"
			"vectors=%d match_builtin=%u out_crc32=0x%08x ns_per_forward=%llu\n"
			"hook=%s mode=%s calls=%llu agree=%llu model_migrate=%llu cfs_migrate=%llu hook_ns=%llu",
			gen, crc, (u32)SLM_ARCH_HASH, SLM_N_IN, SLM_N_OUT, SLM_WINDOW,
			SLM_MACS, sizeof(struct slm_params),
			SLM_N_VECTORS, ev.matches, ev.out_crc, div_u64(ev.ns, SLM_N_VECTORS),
			slm_lb_unregister ? "on" : "off", active_mode ? "active" : "shadow",
			lb.calls, lb.agree, lb.model_migrate, lb.cfs_migrate, lb.ns);
	ret += slm_fair_timing(buf + ret, size - ret);	/* the hook line goes on */
	ret += scnprintf(buf + ret, size - ret, "\n");
	pr_info("query gen=%u match_builtin=%u/%d out_crc32=0x%08x\n",
		gen, ev.matches, SLM_N_VECTORS, ev.out_crc);
	return ret;
}

static ssize_t slm_read(struct file *file, char __user *buf, size_t n, loff_t *ppos)
{
	struct slm_file *sf = file->private_data;
	ssize_t ret = 0;

	mutex_lock(&sf->lock);
	if (!sf->text_len) {	/* first read() of this open() runs the query */
		ret = slm_query(sf->text, sizeof(sf->text));
		if (ret > 0)
			sf->text_len = ret;
	}
	if (ret >= 0)
		ret = simple_read_from_buffer(buf, n, &sf->text_pos, sf->text, sf->text_len);
	mutex_unlock(&sf->lock);
	return ret;
}

static const struct file_operations slm_fops = {
	.owner		= THIS_MODULE,
	.open		= slm_open,
	.release	= slm_release,
	.read		= slm_read,
	.write		= slm_write,
	.llseek		= no_llseek,
};

static struct miscdevice slm_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "schedlearn",
	.fops	= &slm_fops,
	.mode	= 0600,
};

/* ---- load / unload ---------------------------------------------------- */

static int __init slm_init(void)
{
	struct slm_model *m;
	struct slm_eval ev;
	int ret;

	m = kvzalloc(sizeof(*m), GFP_KERNEL);
	if (!m)
		return -ENOMEM;
	m->params = slm_default_params;
	m->crc = slm_params_crc(&m->params);

	ret = slm_eval_vectors(&m->params, &ev);
	if (ret)
		goto err_free;
	if (ev.matches != SLM_N_VECTORS) {
		pr_err("selftest FAIL %u/%d vectors, first mismatch at %d\n",
		       ev.matches, SLM_N_VECTORS, ev.first_bad);
		ret = -EINVAL;
		goto err_free;
	}
	pr_info("selftest PASS %u/%d vectors, %llu ns/forward (%d MACs, arch 0x%08x)\n",
		ev.matches, SLM_N_VECTORS, div_u64(ev.ns, SLM_N_VECTORS), SLM_MACS,
		(u32)SLM_ARCH_HASH);
	if (max_macs < SLM_MACS)
		pr_warn("built-in model costs %d MACs > max_macs=%u\n", SLM_MACS, max_macs);

	RCU_INIT_POINTER(slm_serving, m);
	ret = misc_register(&slm_misc);
	if (ret)
		goto err_free;
	mutex_lock(&slm_hook_lock);
	slm_ready = true;
	if (slm_hook_wanted)
		slm_lb_attach();
	mutex_unlock(&slm_hook_lock);
	return 0;

err_free:
	kvfree(m);
	return ret;
}

static void __exit slm_exit(void)
{
	mutex_lock(&slm_hook_lock);
	slm_ready = false;
	slm_lb_detach();		/* no CPU is inside slm_lb_decide() after this */
	mutex_unlock(&slm_hook_lock);
	if (slm_time_hook)
		slm_time_hook_set("0", NULL);	/* the kernel's timing key back off */
	misc_deregister(&slm_misc);	/* open files pin the module (fops.owner) */
	kvfree(rcu_dereference_protected(slm_serving, 1));
}

module_init(slm_init);
module_exit(slm_exit);
MODULE_DESCRIPTION("schedlearn: learned scheduler model with self-test and runtime reload");
MODULE_LICENSE("GPL");

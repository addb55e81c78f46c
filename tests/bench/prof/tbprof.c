// SPDX-License-Identifier: GPL-2.0
/*
 * tbprof: a QEMU TCG plugin that counts the guest instructions executed
 * per translation block start address (inline adds, no callbacks), and
 * writes "address instructions length" lines at exit (length: the
 * block's instruction count when first translated, so that a block at a
 * function's entry tells how often the function was called).  With -icount the counts
 * are the same run after run: an exact, instruction-weighted profile of
 * the guest kernel (scripts/profile-guest.sh maps the addresses to
 * symbols with the guest's /proc/kallsyms).
 *
 * Written against QEMU's plugin API version 1 (QEMU 7.2, Debian 12); the
 * few declarations used are repeated here so that no QEMU headers are
 * needed.
 *
 * With mark=DIR, a thread looks for DIR/prof-start and DIR/prof-stop
 * (which the guest creates through its shared output directory) every
 * 20 ms and snapshots the counts when each appears (then creates
 * DIR/prof-start-seen or prof-stop-seen, which the guest waits for); the
 * output is then
 * the counts between the two marks, the workload alone without boot and
 * set-up.
 *
 * Usage: qemu ... -plugin tbprof.so,out=FILE[,mark=DIR]
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

extern void qemu_plugin_register_vcpu_tb_trans_cb(
	qemu_plugin_id_t id,
	void (*cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb));
extern void qemu_plugin_register_vcpu_tb_exec_inline(
	struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
	uint64_t imm);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_atexit_cb(
	qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t id, void *userdata),
	void *userdata);

struct entry {
	uint64_t addr;
	uint64_t insns;
	uint64_t tb_insns; /* the block's length: insns / tb_insns = runs */
};

#define TABLE_BITS 22
#define TABLE_SIZE (1u << TABLE_BITS)

static struct entry *table;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char out_path[4096] = "tbprof.txt";
static char mark_dir[4096];
/* counts at the start mark and at the stop mark (NULL until seen) */
static uint64_t *at_start, *at_stop;

static struct entry *slot(uint64_t addr)
{
	uint64_t h = (addr * 0x9e3779b97f4a7c15ull) >> (64 - TABLE_BITS);

	for (uint64_t i = 0; i < TABLE_SIZE; i++) {
		struct entry *e = &table[(h + i) & (TABLE_SIZE - 1)];

		if (e->addr == addr || e->addr == 0) {
			e->addr = addr;
			return e;
		}
	}
	return NULL;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	struct entry *e;

	pthread_mutex_lock(&lock);
	e = slot(qemu_plugin_tb_vaddr(tb));
	pthread_mutex_unlock(&lock);
	if (e && !e->tb_insns)
		e->tb_insns = qemu_plugin_tb_n_insns(tb);
	if (e)
		qemu_plugin_register_vcpu_tb_exec_inline(
			tb, QEMU_PLUGIN_INLINE_ADD_U64, &e->insns,
			qemu_plugin_tb_n_insns(tb));
}

static uint64_t *snapshot(void)
{
	uint64_t *v = calloc(TABLE_SIZE, sizeof(*v));

	if (v)
		for (uint64_t i = 0; i < TABLE_SIZE; i++)
			v[i] = __atomic_load_n(&table[i].insns, __ATOMIC_RELAXED);
	return v;
}

static int marked(const char *name)
{
	char p[4200];

	snprintf(p, sizeof(p), "%s/%s", mark_dir, name);
	return access(p, F_OK) == 0;
}

/* tells the guest, which waits for it, that a mark was taken */
static void acknowledge(const char *name)
{
	char p[4200];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s-seen", mark_dir, name);
	f = fopen(p, "w");
	if (f)
		fclose(f);
}

static void *watch_marks(void *arg)
{
	const struct timespec tick = { 0, 20 * 1000 * 1000 };
	uint64_t *s;

	while (!at_stop) {
		nanosleep(&tick, NULL);
		if (!at_start && marked("prof-start")) {
			__atomic_store_n(&at_start, snapshot(), __ATOMIC_RELEASE);
			acknowledge("prof-start");
		}
		if (at_start && marked("prof-stop")) {
			s = snapshot();
			__atomic_store_n(&at_stop, s, __ATOMIC_RELEASE);
			acknowledge("prof-stop");
			if (!s)
				break;
		}
	}
	return NULL;
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
	uint64_t *start = __atomic_load_n(&at_start, __ATOMIC_ACQUIRE);
	uint64_t *stop = __atomic_load_n(&at_stop, __ATOMIC_ACQUIRE);
	FILE *f;

	if (mark_dir[0] && (!start || !stop)) {
		fprintf(stderr, "tbprof: marks not seen, no counts written\n");
		return;
	}
	f = fopen(out_path, "w");
	if (!f)
		return;
	for (uint64_t i = 0; i < TABLE_SIZE; i++) {
		uint64_t n = stop ? stop[i] - start[i] : table[i].insns;

		if (n)
			fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n",
				table[i].addr, n, table[i].tb_insns);
	}
	fclose(f);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
		    char **argv)
{
	for (int i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4))
			snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
		else if (!strncmp(argv[i], "mark=", 5))
			snprintf(mark_dir, sizeof(mark_dir), "%s", argv[i] + 5);
	table = calloc(TABLE_SIZE, sizeof(*table));
	if (!table)
		return -1;
	qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	if (mark_dir[0]) {
		pthread_t t;

		if (pthread_create(&t, NULL, watch_marks, NULL))
			return -1;
		pthread_detach(t);
	}
	return 0;
}

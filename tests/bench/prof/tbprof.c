// SPDX-License-Identifier: GPL-2.0
/*
 * tbprof: a QEMU TCG plugin that counts the guest instructions executed
 * per translation block start address (inline adds, no callbacks), and
 * writes "address instructions" lines at exit.  With -icount the counts
 * are the same run after run: an exact, instruction-weighted profile of
 * the guest kernel (scripts/profile-guest.sh maps the addresses to
 * symbols with the guest's /proc/kallsyms).
 *
 * Written against QEMU's plugin API version 1 (QEMU 7.2, Debian 12); the
 * few declarations used are repeated here so that no QEMU headers are
 * needed.
 *
 * Usage: qemu ... -plugin tbprof.so,out=FILE
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
};

#define TABLE_BITS 22
#define TABLE_SIZE (1u << TABLE_BITS)

static struct entry *table;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char out_path[4096] = "tbprof.txt";

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
	if (e)
		qemu_plugin_register_vcpu_tb_exec_inline(
			tb, QEMU_PLUGIN_INLINE_ADD_U64, &e->insns,
			qemu_plugin_tb_n_insns(tb));
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
	FILE *f = fopen(out_path, "w");

	if (!f)
		return;
	for (uint64_t i = 0; i < TABLE_SIZE; i++)
		if (table[i].insns)
			fprintf(f, "%" PRIx64 " %" PRIu64 "\n", table[i].addr,
				table[i].insns);
	fclose(f);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
		    char **argv)
{
	for (int i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4))
			snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
	table = calloc(TABLE_SIZE, sizeof(*table));
	if (!table)
		return -1;
	qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}

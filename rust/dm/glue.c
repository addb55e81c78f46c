// SPDX-License-Identifier: GPL-2.0
/*
 * C glue linked into dm_thin_rs.ko: the few kernel facilities the module
 * needs that are inline functions or macros (no Rust binding exists for
 * them) or that must be statically initialised with a lock class.  Each
 * object here is allocated and initialised in C, in its final place, and
 * handed to Rust as an opaque pointer; the safe wrappers are in
 * rust/dm/{worker,sync,bio}.rs.  Keeping this glue in the module (not in
 * the kernel's rust/helpers) means adding to it rebuilds the module in
 * seconds instead of the kernel.
 *
 * - worker: an ordered WQ_MEM_RECLAIM workqueue with one work item and one
 *   delayed "waker" that re-arms itself every period;
 * - bio queue: a bio_list behind an IRQ-safe spinlock (bios are queued
 *   from map and from completion context);
 * - rwsem: a reader/writer semaphore with try-lock for readers;
 * - discards: data-block ranges discarded asynchronously, one completion
 *   for all of them (upstream dm-thin's passdown: begin/issue/end_discard);
 * - zeroes: a range written with the zero page asynchronously, never with
 *   WRITE_ZEROES (new blocks are zeroed so even when a device stack
 *   advertises WRITE_ZEROES it no longer supports);
 * - deferred set: counts of in-flight I/O by generation behind an
 *   IRQ-safe spinlock (upstream's dm_deferred_set, without work lists);
 * - the global pool table lock (a statically initialised mutex);
 * - the module parameter no_space_timeout (6.12's Rust module! has no
 *   parameters): /sys/module/dm_thin_rs/parameters/no_space_timeout, or
 *   `insmod dm_thin_rs.ko no_space_timeout=N`, as upstream's
 *   dm_thin_pool.no_space_timeout.
 */

#include <linux/bio.h>
#include <linux/bio-integrity.h>
#include <linux/blk-crypto.h>
#include <linux/blkdev.h>
#include <linux/jiffies.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>

struct dmthin_worker;
struct dmthin_bioq;
struct dmthin_dset;

/* The interface Rust calls (declared again in rust/dm/glue.rs). */
struct dmthin_worker *dmthin_worker_create(const char *name,
					   unsigned int period_ms,
					   void (*run)(void *),
					   void (*tick)(void *));
void dmthin_worker_set_data(struct dmthin_worker *w, void *data);
void dmthin_worker_kick(struct dmthin_worker *w);
void dmthin_worker_start_waker(struct dmthin_worker *w);
void dmthin_worker_stop_waker(struct dmthin_worker *w);
void dmthin_worker_drain(struct dmthin_worker *w);
void dmthin_worker_destroy(struct dmthin_worker *w);
struct dmthin_bioq *dmthin_bioq_create(void);
void dmthin_bioq_destroy(struct dmthin_bioq *q);
void dmthin_bioq_push(struct dmthin_bioq *q, struct bio *bio);
struct bio *dmthin_bioq_take(struct dmthin_bioq *q);
bool dmthin_bioq_empty(struct dmthin_bioq *q);
struct rw_semaphore *dmthin_rwsem_create(unsigned int class);
void dmthin_rwsem_destroy(struct rw_semaphore *s);
void dmthin_down_read(struct rw_semaphore *s);
int dmthin_down_read_trylock(struct rw_semaphore *s);
void dmthin_up_read(struct rw_semaphore *s);
void dmthin_down_write(struct rw_semaphore *s);
void dmthin_up_write(struct rw_semaphore *s);
void dmthin_pool_table_lock(void);
void dmthin_pool_table_unlock(void);
unsigned int dmthin_no_space_timeout(void);
int dmthin_issue_discards(struct block_device *bdev, const u64 *ranges,
			  unsigned int n, void (*done)(void *ctx, int err),
			  void *ctx);
int dmthin_issue_zeroes(struct block_device *bdev, u64 sector, u64 nr_sects,
			void (*done)(void *ctx, int err), void *ctx);
int dmthin_issue_zero_ranges(struct block_device *bdev, const u64 *ranges,
			     unsigned int n, bool write_zeroes,
			     void (*done)(void *ctx, int err), void *ctx);
bool dmthin_bdev_write_zeroes(struct block_device *bdev);
int dmthin_issue_padded_write(struct block_device *bdev, u64 sector,
			      u64 nr_sects, struct bio *src, u64 offset,
			      void (*done)(void *ctx, int err), void *ctx);
struct dmthin_dset *dmthin_dset_create(void);
void dmthin_dset_destroy(struct dmthin_dset *d);
u64 dmthin_dset_inc(struct dmthin_dset *d);
bool dmthin_dset_dec(struct dmthin_dset *d, u64 gen);
bool dmthin_dset_barrier(struct dmthin_dset *d, u64 *gen);
bool dmthin_dset_passed(struct dmthin_dset *d, u64 gen);

/* ------------------------------------------------------------------ */
/* Worker */

struct dmthin_worker {
	struct workqueue_struct *wq;
	struct work_struct work;
	struct delayed_work waker;
	unsigned long period;
	bool waker_armed;
	void (*run)(void *data);
	void (*tick)(void *data);
	void *data;
};

static void dmthin_worker_fn(struct work_struct *ws)
{
	struct dmthin_worker *w = container_of(ws, struct dmthin_worker, work);

	w->run(w->data);
}

static void dmthin_waker_fn(struct work_struct *ws)
{
	struct dmthin_worker *w =
		container_of(to_delayed_work(ws), struct dmthin_worker, waker);

	w->tick(w->data);
	queue_work(w->wq, &w->work);
	queue_delayed_work(w->wq, &w->waker, w->period);
}

struct dmthin_worker *dmthin_worker_create(const char *name,
					   unsigned int period_ms,
					   void (*run)(void *),
					   void (*tick)(void *))
{
	struct dmthin_worker *w = kzalloc(sizeof(*w), GFP_KERNEL);

	if (!w)
		return NULL;
	w->wq = alloc_ordered_workqueue("%s", WQ_MEM_RECLAIM, name);
	if (!w->wq) {
		kfree(w);
		return NULL;
	}
	INIT_WORK(&w->work, dmthin_worker_fn);
	INIT_DELAYED_WORK(&w->waker, dmthin_waker_fn);
	w->period = msecs_to_jiffies(period_ms);
	w->run = run;
	w->tick = tick;
	return w;
}

/* Sets the callbacks' argument; called once, before anything is queued. */
void dmthin_worker_set_data(struct dmthin_worker *w, void *data)
{
	w->data = data;
}

void dmthin_worker_kick(struct dmthin_worker *w)
{
	queue_work(w->wq, &w->work);
}

/* Starts the periodic waker (first tick one period from now). */
void dmthin_worker_start_waker(struct dmthin_worker *w)
{
	queue_delayed_work(w->wq, &w->waker, w->period);
}

/* Stops the waker and waits for a running tick to finish. */
void dmthin_worker_stop_waker(struct dmthin_worker *w)
{
	cancel_delayed_work_sync(&w->waker);
}

/* Waits until every queued run of the worker has finished. */
void dmthin_worker_drain(struct dmthin_worker *w)
{
	flush_workqueue(w->wq);
}

void dmthin_worker_destroy(struct dmthin_worker *w)
{
	cancel_delayed_work_sync(&w->waker);
	destroy_workqueue(w->wq);
	kfree(w);
}

/* ------------------------------------------------------------------ */
/* Bio queue */

struct dmthin_bioq {
	spinlock_t lock;
	struct bio_list list;
};

struct dmthin_bioq *dmthin_bioq_create(void)
{
	struct dmthin_bioq *q = kzalloc(sizeof(*q), GFP_KERNEL);

	if (!q)
		return NULL;
	spin_lock_init(&q->lock);
	bio_list_init(&q->list);
	return q;
}

void dmthin_bioq_destroy(struct dmthin_bioq *q)
{
	kfree(q);
}

void dmthin_bioq_push(struct dmthin_bioq *q, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	bio_list_add(&q->list, bio);
	spin_unlock_irqrestore(&q->lock, flags);
}

/* Takes every queued bio: a chain linked through bi_next, oldest first. */
struct bio *dmthin_bioq_take(struct dmthin_bioq *q)
{
	unsigned long flags;
	struct bio *head;

	spin_lock_irqsave(&q->lock, flags);
	head = bio_list_get(&q->list);
	spin_unlock_irqrestore(&q->lock, flags);
	return head;
}

bool dmthin_bioq_empty(struct dmthin_bioq *q)
{
	unsigned long flags;
	bool empty;

	spin_lock_irqsave(&q->lock, flags);
	empty = bio_list_empty(&q->list);
	spin_unlock_irqrestore(&q->lock, flags);
	return empty;
}

/* ------------------------------------------------------------------ */
/* Reader/writer semaphore */

/*
 * One lockdep class per role (enum LockClass in rust/dm/sync.rs), so that
 * the documented nesting of a pool's different semaphores is not reported
 * as recursion.
 */
#define DMTHIN_RWSEM_CLASSES 8
static struct lock_class_key dmthin_rwsem_keys[DMTHIN_RWSEM_CLASSES];
static const char *const dmthin_rwsem_names[DMTHIN_RWSEM_CLASSES] = {
	"dm_thin_rs:worker_state", "dm_thin_rs:metadata", "dm_thin_rs:bound",
	"dm_thin_rs:jobs_done", "dm_thin_rs:active_thins", "dm_thin_rs:requeue_ids",
	"dm_thin_rs:class6", "dm_thin_rs:class7",
};

struct rw_semaphore *dmthin_rwsem_create(unsigned int class)
{
	struct rw_semaphore *s;

	if (class >= DMTHIN_RWSEM_CLASSES)
		return NULL;
	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (s)
		__init_rwsem(s, dmthin_rwsem_names[class], &dmthin_rwsem_keys[class]);
	return s;
}

void dmthin_rwsem_destroy(struct rw_semaphore *s)
{
	kfree(s);
}

void dmthin_down_read(struct rw_semaphore *s)
{
	down_read(s);
}

int dmthin_down_read_trylock(struct rw_semaphore *s)
{
	return down_read_trylock(s);
}

void dmthin_up_read(struct rw_semaphore *s)
{
	up_read(s);
}

void dmthin_down_write(struct rw_semaphore *s)
{
	down_write(s);
}

void dmthin_up_write(struct rw_semaphore *s)
{
	up_write(s);
}

/* ------------------------------------------------------------------ */
/* The pool table lock (upstream's dm_thin_pool_table.mutex). */

static DEFINE_MUTEX(dmthin_pool_table_mutex);

void dmthin_pool_table_lock(void)
{
	mutex_lock(&dmthin_pool_table_mutex);
}

void dmthin_pool_table_unlock(void)
{
	mutex_unlock(&dmthin_pool_table_mutex);
}

/* ------------------------------------------------------------------ */
/* Deferred set */

/*
 * In-flight I/O counted by generation (upstream's dm_deferred_set, whose
 * work lists are replaced by the caller polling dmthin_dset_passed: the
 * pool's worker rechecks when dmthin_dset_dec says the oldest generation
 * moved).  Generations [oldest, current] occupy slots gen % SIZE; every
 * generation older than `oldest` has no I/O left, and when oldest <
 * current, generation `oldest` still has some.
 *
 * Beyond upstream (whose every inc and dec takes the set's spinlock),
 * counting is lock-free: inc adds to the current generation's slot and
 * looks at `current` again (a barrier that started a new generation
 * meanwhile sends it to the locked way, so a returned generation was
 * current, hence not passed, after it was counted), and dec takes the
 * lock only when it empties a slot while a barrier may wait (`oldest`
 * behind `current`, or a barrier that could not start a generation):
 * emptying a slot is the one event that can move `oldest`.  `current`,
 * `oldest` and `stalled` change under the lock only.  A dec that empties
 * the current generation's slot and sees no barrier pending, and a
 * barrier starting a generation meanwhile, each make their change, then
 * a full barrier, then look at the other's: one of them sees it (the
 * barrier then does not wait, or the dec takes the lock and reports the
 * move).
 */
#define DMTHIN_DSET_SIZE 64

struct dmthin_dset {
	spinlock_t lock;
	atomic64_t current_gen;
	u64 oldest;
	/* a barrier waits for the current generation (no slot was free) */
	bool stalled;
	atomic_t count[DMTHIN_DSET_SIZE];
};

struct dmthin_dset *dmthin_dset_create(void)
{
	struct dmthin_dset *d = kzalloc(sizeof(*d), GFP_KERNEL);

	if (d)
		spin_lock_init(&d->lock);
	return d;
}

void dmthin_dset_destroy(struct dmthin_dset *d)
{
	kfree(d);
}

static atomic_t *dmthin_dset_slot(struct dmthin_dset *d, u64 gen)
{
	return &d->count[gen % DMTHIN_DSET_SIZE];
}

/* Moves `oldest` past emptied generations (lock held); true if it moved. */
static bool dmthin_dset_advance(struct dmthin_dset *d)
{
	u64 cur = atomic64_read(&d->current_gen);
	bool moved = false;

	while (d->oldest < cur && !atomic_read(dmthin_dset_slot(d, d->oldest))) {
		d->oldest++;
		moved = true;
	}
	return moved;
}

/* One more I/O in the current generation, which is returned. */
u64 dmthin_dset_inc(struct dmthin_dset *d)
{
	u64 gen = atomic64_read(&d->current_gen);
	unsigned long flags;

	atomic_inc(dmthin_dset_slot(d, gen));
	smp_mb__after_atomic();
	if (likely(atomic64_read(&d->current_gen) == gen))
		return gen;
	/* A barrier started a generation meanwhile: count under the lock. */
	spin_lock_irqsave(&d->lock, flags);
	atomic_dec(dmthin_dset_slot(d, gen));
	dmthin_dset_advance(d);
	gen = atomic64_read(&d->current_gen);
	atomic_inc(dmthin_dset_slot(d, gen));
	spin_unlock_irqrestore(&d->lock, flags);
	return gen;
}

/* An I/O of generation `gen` finished; true if the oldest generation moved. */
bool dmthin_dset_dec(struct dmthin_dset *d, u64 gen)
{
	atomic_t *c = dmthin_dset_slot(d, gen);
	unsigned long flags;
	bool moved;
	int left = atomic_dec_if_positive(c);

	if (WARN_ON_ONCE(left < 0) || left > 0)
		return false;
	smp_mb();
	if (atomic64_read(&d->current_gen) == READ_ONCE(d->oldest) &&
	    !READ_ONCE(d->stalled))
		return false;
	spin_lock_irqsave(&d->lock, flags);
	moved = dmthin_dset_advance(d);
	/* A barrier that could not start a generation waits for this one. */
	if (d->oldest == atomic64_read(&d->current_gen) && gen == d->oldest &&
	    !atomic_read(c)) {
		moved = true;
		WRITE_ONCE(d->stalled, false);
	}
	spin_unlock_irqrestore(&d->lock, flags);
	return moved;
}

/*
 * A barrier after every I/O counted so far.  Returns false when none is in
 * flight (nothing to wait for); otherwise sets *gen to the generation to
 * wait for (dmthin_dset_passed) and starts a new generation if a slot is
 * free (if not, later I/O joins the barrier's generation: waiting longer,
 * never shorter).
 */
bool dmthin_dset_barrier(struct dmthin_dset *d, u64 *gen)
{
	unsigned long flags;
	bool wait = true;
	u64 cur;

	spin_lock_irqsave(&d->lock, flags);
	dmthin_dset_advance(d);
	cur = atomic64_read(&d->current_gen);
	if (d->oldest == cur && !atomic_read(dmthin_dset_slot(d, cur))) {
		wait = false;
	} else {
		*gen = cur;
		if (cur + 1 - d->oldest < DMTHIN_DSET_SIZE) {
			atomic64_set(&d->current_gen, cur + 1);
			/* a dec that emptied `cur` without the lock */
			smp_mb();
			dmthin_dset_advance(d);
			if (d->oldest > cur)
				wait = false;
		} else {
			WRITE_ONCE(d->stalled, true);
		}
	}
	spin_unlock_irqrestore(&d->lock, flags);
	return wait;
}

/* Whether every I/O of generation `gen` and older finished. */
bool dmthin_dset_passed(struct dmthin_dset *d, u64 gen)
{
	unsigned long flags;
	bool passed;

	spin_lock_irqsave(&d->lock, flags);
	dmthin_dset_advance(d);
	passed = d->oldest > gen ||
		 (d->oldest == gen && !atomic_read(dmthin_dset_slot(d, gen)));
	spin_unlock_irqrestore(&d->lock, flags);
	return passed;
}

/* ------------------------------------------------------------------ */
/* Discards */

struct dmthin_discard {
	void (*done)(void *ctx, int err);
	void *ctx;
};

static void dmthin_discard_endio(struct bio *bio)
{
	struct dmthin_discard d = *(struct dmthin_discard *)bio->bi_private;
	int err = blk_status_to_errno(bio->bi_status);

	kfree(bio->bi_private);
	bio_put(bio);
	d.done(d.ctx, err);
}

/*
 * A bio that only marks completion: the I/O of one request is chained to
 * it, and when all of it finished done(ctx, err) runs once.  NULL when out
 * of memory.
 */
static struct bio *dmthin_completion_parent(void (*done)(void *ctx, int err),
					    void *ctx)
{
	struct dmthin_discard *d = kmalloc(sizeof(*d), GFP_NOIO);
	struct bio *parent;

	if (!d)
		return NULL;
	d->done = done;
	d->ctx = ctx;
	parent = bio_alloc(NULL, 1, 0, GFP_NOIO);
	parent->bi_end_io = dmthin_discard_endio;
	parent->bi_private = d;
	return parent;
}

/*
 * Ends a request of several ranges: chains the last bio of a blk-lib
 * chain (if any) to parent and submits it, ends the plug, records the
 * first error r in parent and drops the submitter's hold on it.
 */
static void dmthin_end_ranges(struct bio *parent, struct bio *bio,
			      struct blk_plug *plug, int r)
{
	if (bio) {
		bio_chain(bio, parent);
		submit_bio(bio);
	}
	blk_finish_plug(plug);
	if (r && !parent->bi_status)
		parent->bi_status = errno_to_blk_status(r);
	bio_endio(parent);
}

/*
 * Discards n ranges of bdev (ranges[2i] = first sector, ranges[2i + 1] =
 * sectors) and calls done(ctx, err) once when every discard finished (the
 * first error, or 0).  Returns -ENOMEM without calling done when nothing
 * could be started.
 */
int dmthin_issue_discards(struct block_device *bdev, const u64 *ranges,
			  unsigned int n, void (*done)(void *ctx, int err),
			  void *ctx)
{
	struct bio *parent = dmthin_completion_parent(done, ctx), *bio = NULL;
	struct blk_plug plug;
	unsigned int i;
	int r = 0;

	if (!parent)
		return -ENOMEM;
	blk_start_plug(&plug);
	for (i = 0; i < n && !r; i++)
		r = __blkdev_issue_discard(bdev, ranges[2 * i], ranges[2 * i + 1],
					   GFP_NOIO, &bio);
	dmthin_end_ranges(parent, bio, &plug, r);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Module parameters */

/* Upstream's NO_SPACE_TIMEOUT_SECS. */
static unsigned int no_space_timeout_secs = 60;
module_param_named(no_space_timeout, no_space_timeout_secs, uint, 0644);
MODULE_PARM_DESC(no_space_timeout, "Out of data space queue IO timeout in seconds");

/* Seconds bios wait for data space before failing (0: forever). */
unsigned int dmthin_no_space_timeout(void)
{
	return READ_ONCE(no_space_timeout_secs);
}

/*
 * Writes zeros to nr_sects sectors of bdev from sector with the shared
 * zero page (plain writes, as blk-lib's zero-page fallback does), the
 * bios chained to parent (submitted here, under the caller's plug).
 */
static void dmthin_chain_zero_pages(struct block_device *bdev, u64 sector,
				    u64 nr_sects, struct bio *parent)
{
	struct bio *prev = NULL;

	while (nr_sects) {
		u64 pages = DIV_ROUND_UP_ULL(nr_sects, PAGE_SIZE >> SECTOR_SHIFT);
		struct bio *bio = bio_alloc(bdev, min_t(u64, pages, BIO_MAX_VECS),
					    REQ_OP_WRITE, GFP_NOIO);

		bio->bi_iter.bi_sector = sector;
		while (nr_sects) {
			unsigned int len = min_t(u64, PAGE_SIZE,
						 nr_sects << SECTOR_SHIFT);

			if (bio_add_page(bio, ZERO_PAGE(0), len, 0) < len)
				break;
			nr_sects -= len >> SECTOR_SHIFT;
			sector += len >> SECTOR_SHIFT;
		}
		if (prev) {
			bio_chain(prev, bio);
			submit_bio(prev);
		}
		prev = bio;
	}
	if (prev) {
		bio_chain(prev, parent);
		submit_bio(prev);
	}
}

/*
 * Writes zeros to nr_sects sectors of bdev from sector with the shared
 * zero page (never REQ_OP_WRITE_ZEROES) and calls done(ctx, err) once
 * when every write finished (the first error, or 0).  Returns -ENOMEM
 * without calling done when nothing could be started.
 */
int dmthin_issue_zeroes(struct block_device *bdev, u64 sector, u64 nr_sects,
			void (*done)(void *ctx, int err), void *ctx)
{
	struct bio *parent = dmthin_completion_parent(done, ctx);
	struct blk_plug plug;

	if (!parent)
		return -ENOMEM;
	blk_start_plug(&plug);
	dmthin_chain_zero_pages(bdev, sector, nr_sects, parent);
	blk_finish_plug(&plug);
	bio_endio(parent);
	return 0;
}

/* Whether bdev offers REQ_OP_WRITE_ZEROES now (an inline in blkdev.h). */
bool dmthin_bdev_write_zeroes(struct block_device *bdev)
{
	return bdev_write_zeroes_sectors(bdev) != 0;
}

/*
 * Zeroes n ranges of bdev (ranges[2i] = first sector, ranges[2i + 1] =
 * sectors; empty ones skipped) and calls done(ctx, err) once when all
 * finished (the first error, or 0).  With write_zeroes and a device that
 * offers it, with REQ_OP_WRITE_ZEROES (unmapping allowed: the ranges only
 * have to read back as zeros); otherwise with plain writes of the zero
 * page.  Returns -ENOMEM without calling done when nothing could be
 * started.
 */
int dmthin_issue_zero_ranges(struct block_device *bdev, const u64 *ranges,
			     unsigned int n, bool write_zeroes,
			     void (*done)(void *ctx, int err), void *ctx)
{
	struct bio *parent = dmthin_completion_parent(done, ctx), *bio = NULL;
	struct blk_plug plug;
	unsigned int i;
	int r = 0;

	if (!parent)
		return -ENOMEM;
	write_zeroes = write_zeroes && bdev_write_zeroes_sectors(bdev);
	blk_start_plug(&plug);
	for (i = 0; i < n && !r; i++) {
		if (!ranges[2 * i + 1])
			continue;
		if (write_zeroes)
			r = __blkdev_issue_zeroout(bdev, ranges[2 * i],
						   ranges[2 * i + 1], GFP_NOIO,
						   &bio, BLKDEV_ZERO_NOFALLBACK);
		else
			dmthin_chain_zero_pages(bdev, ranges[2 * i],
						ranges[2 * i + 1], parent);
	}
	dmthin_end_ranges(parent, bio, &plug, r);
	return 0;
}

/* Adds zero pages for `sects` sectors to bio (room was allocated). */
static void dmthin_add_zero_pages(struct bio *bio, u64 sects)
{
	while (sects) {
		unsigned int len = min_t(u64, PAGE_SIZE, sects << SECTOR_SHIFT);

		__bio_add_page(bio, ZERO_PAGE(0), len, 0);
		sects -= len >> SECTOR_SHIFT;
	}
}

/*
 * Writes nr_sects sectors of bdev from sector in ONE bio: zero pages for
 * the first `offset` sectors, then the data of `src` (its pages borrowed,
 * the bio itself left alone: the caller ends it after done ran), then
 * zero pages to the end; done(ctx, err) runs once when it finished.
 * Returns -EINVAL when that does not fit in one bio or `src` carries
 * integrity or encryption context, -ENOMEM when out of memory; done is
 * not called then and nothing was started.
 */
int dmthin_issue_padded_write(struct block_device *bdev, u64 sector,
			      u64 nr_sects, struct bio *src, u64 offset,
			      void (*done)(void *ctx, int err), void *ctx)
{
	const u64 page_sects = PAGE_SIZE >> SECTOR_SHIFT;
	u64 src_sects = bio_sectors(src), tail;
	unsigned int vecs;
	struct bio *parent, *bio;
	struct bvec_iter iter;
	struct bio_vec bv;

	if (offset > nr_sects || src_sects > nr_sects - offset ||
	    bio_integrity(src) || bio_has_crypt_ctx(src))
		return -EINVAL;
	tail = nr_sects - offset - src_sects;
	vecs = DIV_ROUND_UP_ULL(offset, page_sects) +
	       DIV_ROUND_UP_ULL(tail, page_sects) + bio_segments(src);
	if (vecs > BIO_MAX_VECS)
		return -EINVAL;
	parent = dmthin_completion_parent(done, ctx);
	if (!parent)
		return -ENOMEM;
	bio = bio_alloc(bdev, vecs, REQ_OP_WRITE | (src->bi_opf & REQ_SYNC),
			GFP_NOIO);
	bio->bi_iter.bi_sector = sector;
	bio->bi_ioprio = src->bi_ioprio;
	bio_clone_blkg_association(bio, src);
	dmthin_add_zero_pages(bio, offset);
	bio_for_each_segment(bv, src, iter)
		__bio_add_page(bio, bv.bv_page, bv.bv_len, bv.bv_offset);
	dmthin_add_zero_pages(bio, tail);
	bio_chain(bio, parent);
	submit_bio(bio);
	bio_endio(parent);
	return 0;
}

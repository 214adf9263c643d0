/*
 * The memory of a receiver's messages, freed by whoever holds a message last (the queue, or
 * Python). A message's bytes are its own, right behind it in one allocation; the blocks of
 * large ones go back to a pool and are kept for the next ones, as copying into fresh memory
 * costs a page fault per page, several times the copy itself. Or its bytes lie in a sender's
 * section, under a lease (queue mode): the last message of a lease freed writes the sender's
 * release word. Mappings of sections are shared by reference, with Python too.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* The spare blocks of a receiver's large messages. Shared by a receiver and its messages,
 * which may outlive it (Python holds them with copy=False): the last one out frees it. */
struct cd_pool {
    SRWLOCK lock;
    LONG references;
    int closed;           /* the receiver closed: keep nothing more */
    struct spare_block {
        cd_message *block;
        ULONGLONG freed_ms;
    } spares[8];
};
#define POOLED_MESSAGE_SIZE (1u << 20)
/* Two spare blocks of any size; more only while all of them hold at most this much (a frame
 * of several large messages needs a block for each). */
#define POOL_SPARE_BYTES ((size_t)32 << 20)
#define POOL_IDLE_MS 1000

void cd__pool_release(cd_pool *pool)
{
    size_t i;
    if (InterlockedDecrement(&pool->references) != 0)
        return;
    for (i = 0; i < sizeof pool->spares / sizeof pool->spares[0]; i++)
        free(pool->spares[i].block);
    free(pool);
}

/* Frees spare blocks unused for idle_ms: a burst of large messages leaves nothing behind. */
static void pool_trim(cd_pool *pool, ULONGLONG now, ULONGLONG idle_ms)
{
    size_t i;
    AcquireSRWLockExclusive(&pool->lock);
    for (i = 0; i < sizeof pool->spares / sizeof pool->spares[0]; i++) {
        if (pool->spares[i].block && now - pool->spares[i].freed_ms >= idle_ms) {
            free(pool->spares[i].block);
            pool->spares[i].block = NULL;
        }
    }
    ReleaseSRWLockExclusive(&pool->lock);
}

/* A spare block of at least capacity bytes (taken out of the pool), or NULL. */
static cd_message *pool_take(cd_pool *pool, size_t capacity)
{
    cd_message *block = NULL;
    size_t i;
    AcquireSRWLockExclusive(&pool->lock);
    for (i = 0; i < sizeof pool->spares / sizeof pool->spares[0] && block == NULL; i++) {
        if (pool->spares[i].block && pool->spares[i].block->capacity >= capacity) {
            block = pool->spares[i].block;
            pool->spares[i].block = NULL;
        }
    }
    ReleaseSRWLockExclusive(&pool->lock);
    return block;
}

void cd__release_message(cd_message *m)
{
    cd_pool *pool = m->pool;
    size_t i, count = 0, held = 0, empty = SIZE_MAX, smallest = SIZE_MAX;
    struct spare_block *slot = NULL;

    if (m->lease != NULL) {
        cd_lease *lease = m->lease;
        free(m);
        cd__lease_release(lease);
        return;
    }
    if (pool == NULL) {
        free(m);
        return;
    }
    AcquireSRWLockExclusive(&pool->lock);
    for (i = 0; i < sizeof pool->spares / sizeof pool->spares[0]; i++) {
        cd_message *block = pool->spares[i].block;
        if (block == NULL) {
            empty = i;
            continue;
        }
        count++;
        held += block->capacity;
        if (smallest == SIZE_MAX || block->capacity < pool->spares[smallest].block->capacity)
            smallest = i;
    }
    /* Kept in an empty slot, or in place of a smaller block; never past the byte limit but for two. */
    if (pool->closed)
        slot = NULL;
    else if (empty != SIZE_MAX && (count < 2 || held + m->capacity <= POOL_SPARE_BYTES))
        slot = &pool->spares[empty];
    else if (smallest != SIZE_MAX && pool->spares[smallest].block->capacity < m->capacity
             && (count <= 2 || held - pool->spares[smallest].block->capacity + m->capacity <= POOL_SPARE_BYTES))
        slot = &pool->spares[smallest];
    if (slot != NULL) {
        free(slot->block);
        slot->block = m;
        slot->freed_ms = GetTickCount64();
        m = NULL;
    }
    ReleaseSRWLockExclusive(&pool->lock);
    free(m);
    cd__pool_release(pool);
}

static cd_message *new_message(uint64_t tag, uint64_t sender, size_t size, int codec_id)
{
    cd_message *m = (cd_message *)malloc(sizeof *m + size);
    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof *m);
    m->tag = tag;
    m->sender = sender;
    m->size = size;
    m->data = (const char *)(m + 1);
    m->codec_id = codec_id;
    return m;
}

/* new_message for parts and sections, whose large blocks come from and go back to the pool. */
cd_message *cd__new_large_message(cd_receiver *r, uint64_t tag, uint64_t sender, size_t size, int codec_id)
{
    cd_message *m;

    if (size < POOLED_MESSAGE_SIZE)
        return new_message(tag, sender, size, codec_id);
    if (r->pool == NULL) {
        r->pool = (cd_pool *)calloc(1, sizeof *r->pool);
        if (r->pool == NULL)
            return NULL;
        InitializeSRWLock(&r->pool->lock);
        r->pool->references = 1;  /* the receiver's own */
    }
    m = pool_take(r->pool, size);
    if (m == NULL) {
        m = (cd_message *)malloc(sizeof *m + size);
        if (m == NULL)
            return NULL;
        m->capacity = size;
    }
    m->next = NULL;
    m->tag = tag;
    m->sender = sender;
    m->size = size;
    m->data = (const char *)(m + 1);
    m->codec_id = codec_id;
    m->taken = m->replied = 0;
    m->result = 0;
    m->section = NULL;
    m->lease = NULL;
    m->pool = r->pool;
    InterlockedIncrement(&r->pool->references);
    return m;
}

cd_message *cd__copy_message(uint64_t tag, uint64_t sender, const void *data, size_t size, int codec_id)
{
    cd_message *m = new_message(tag, sender, size, codec_id);
    if (m != NULL && size)
        memcpy(m + 1, data, size);
    return m;
}

void cd_messages_free(cd_message *first)
{
    while (first) {
        cd_message *next = first->next;
        cd__release_message(first);
        first = next;
    }
}

void cd_message_release(const char *data)
{
    /* new_message puts the data right behind the message's own fields. */
    if (data != NULL)
        cd__release_message((cd_message *)data - 1);
}

void cd_message_free(cd_message *message)
{
    if (message != NULL)
        cd__release_message(message);
}

void cd__pool_sweep(cd_pool *pool, ULONGLONG now)
{
    pool_trim(pool, now, POOL_IDLE_MS);
}

void cd__pool_close(cd_pool *pool)
{
    AcquireSRWLockExclusive(&pool->lock);
    pool->closed = 1;
    ReleaseSRWLockExclusive(&pool->lock);
    pool_trim(pool, GetTickCount64(), 0);
}

/* Queue mode: a frame's large records, queued where they lie in the sender's section (see
 * CD_KIND_SECTION). Each such message holds a reference; once the last one is freed, the
 * lease id goes into the sender's release word, and the sender may write there again. */
struct cd_lease {
    kept_section *mapping;
    volatile LONG64 *release_word;
    uint64_t id;
    LONG references;
};

cd_lease *cd__lease_open(kept_section *mapping, volatile LONG64 *release_word, uint64_t id)
{
    cd_lease *lease = (cd_lease *)malloc(sizeof *lease);

    if (lease == NULL)
        return NULL;
    lease->mapping = mapping;
    InterlockedIncrement(&mapping->references);
    lease->release_word = release_word;
    lease->id = id;
    lease->references = 1;  /* the frame's own, until its records are queued */
    return lease;
}

void cd__lease_abandon(cd_lease *lease)
{
    cd_kept_section_release(lease->mapping);
    free(lease);
}

void cd__lease_release(cd_lease *lease)
{
    if (InterlockedDecrement(&lease->references) != 0)
        return;
    InterlockedExchange64(lease->release_word, (LONG64)lease->id);
    cd_kept_section_release(lease->mapping);
    free(lease);
}

cd_message *cd__leased_message(cd_lease *lease, uint64_t tag, uint64_t sender, const unsigned char *data,
                               size_t size, int codec_id)
{
    cd_message *m = (cd_message *)calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->tag = tag;
    m->sender = sender;
    m->size = size;
    m->data = (const char *)data;
    m->codec_id = codec_id;
    m->lease = lease;
    InterlockedIncrement(&lease->references);
    return m;
}

void cd_kept_section_release(const void *kept)
{
    kept_section *k = (kept_section *)kept;
    if (k != NULL && InterlockedDecrement(&k->references) == 0) {
        cd_section_unmap(k->view);
        free(k);
    }
}

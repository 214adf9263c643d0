/*
 * The refusal log: every message a receiver refuses or drops is counted by reason in its stats
 * and, for a Receiver with on_error (config.report_refusals), kept in a bounded ring that
 * Python drains; once the ring is full, refusals are merged by reason instead of growing it.
 */
#include "internal.h"
#include <string.h>

static uint64_t *reason_count(cd_receiver *r, int reason)
{
    switch (reason) {
    case CD_REASON_TOO_LARGE: return &r->stats.refused_too_large;
    case CD_REASON_QUEUE_FULL: return &r->stats.refused_queue_full;
    case CD_REASON_MALFORMED: return &r->stats.refused_malformed;
    case CD_REASON_CLOSING: return &r->stats.refused_closing;
    case CD_REASON_PARTS_IN_SYNC_MODE: return &r->stats.refused_parts_in_sync_mode;
    case CD_REASON_SECTION: return &r->stats.refused_section;
    case CD_REASON_UNAUTHENTICATED: return &r->stats.refused_unauthenticated;
    case CD_REASON_REPLAYED: return &r->stats.refused_replayed;
    default: return NULL;
    }
}

void cd__report(cd_receiver *r, int reason, const arrival *a)
{
    cd_refusal *kept;

    if (!r->config.report_refusals || r->refusals.ended || reason <= 0 || reason >= CD_REASON_COUNT)
        return;
    if (r->refusals.count < CD_REFUSAL_RING) {
        kept = &r->refusals.ring[(r->refusals.first + r->refusals.count++) % CD_REFUSAL_RING];
        kept->reason = reason;
        kept->tag = a->tag;
        kept->sender = a->sender;
        kept->size = a->size;
        kept->count = 1;
    } else {
        /* on_error has fallen behind: keep counting, by reason, without growing. */
        kept = &r->refusals.merged[reason];
        if (kept->count++ == 0) {
            kept->reason = reason;
            kept->tag = a->tag;
            kept->sender = a->sender;
        }
        kept->size += a->size;
    }
    WakeAllConditionVariable(&r->changed);
}

void cd__count_refusal(cd_receiver *r, int reason, const arrival *a)
{
    r->stats.refused_messages++;
    r->stats.refused_bytes += a->size;
    if (reason_count(r, reason))
        (*reason_count(r, reason))++;
    cd__report(r, reason, a);
}

LRESULT cd__refuse(cd_receiver *r, int reason, const arrival *a)
{
    AcquireSRWLockExclusive(&r->lock);
    cd__count_refusal(r, reason, a);
    ReleaseSRWLockExclusive(&r->lock);
    return FALSE;
}

LRESULT cd__refuse_never_fits(cd_receiver *r, const arrival *a)
{
    cd__refuse(r, CD_REASON_TOO_LARGE, a);
    return CD_ANSWER_NEVER_FITS;
}

LRESULT cd__refuse_part(cd_receiver *r, const arrival *a)
{
    cd__refuse(r, CD_REASON_PARTS_IN_SYNC_MODE, a);
    return CD_ANSWER_NO_PARTS;
}

static size_t take_merged(cd_receiver *r, cd_refusal *refusals, size_t capacity)
{
    size_t taken = 0;
    int reason;

    for (reason = 1; reason < CD_REASON_COUNT && taken < capacity; reason++) {
        if (r->refusals.merged[reason].count) {
            refusals[taken++] = r->refusals.merged[reason];
            memset(&r->refusals.merged[reason], 0, sizeof r->refusals.merged[reason]);
        }
    }
    return taken;
}

static int refusals_waiting(const cd_receiver *r)
{
    int reason;
    if (r->refusals.count)
        return 1;
    for (reason = 1; reason < CD_REASON_COUNT; reason++)
        if (r->refusals.merged[reason].count)
            return 1;
    return 0;
}

int cd_receiver_take_refusals(cd_receiver *r, cd_refusal *refusals, size_t capacity, uint32_t timeout_ms,
                              size_t *count)
{
    ULONGLONG start = GetTickCount64();
    size_t taken = 0;
    int status;

    *count = 0;
    if (capacity == 0)
        return CD_INVALID;
    AcquireSRWLockExclusive(&r->lock);
    status = cd__wait_until(r, refusals_waiting, &r->refusals.ended, start, timeout_ms);
    if (status != CD_OK) {
        ReleaseSRWLockExclusive(&r->lock);
        return status;
    }
    while (taken < capacity && r->refusals.count) {
        refusals[taken++] = r->refusals.ring[r->refusals.first];
        r->refusals.first = (r->refusals.first + 1) % CD_REFUSAL_RING;
        r->refusals.count--;
    }
    /* Merged ones come after the ring, whose refusals all happened before them. */
    if (r->refusals.count == 0)
        taken += take_merged(r, refusals + taken, capacity - taken);
    ReleaseSRWLockExclusive(&r->lock);
    *count = taken;
    return CD_OK;
}

void cd_receiver_report(cd_receiver *r, int reason, uint64_t tag, uint64_t sender, uint64_t size)
{
    arrival a;

    a.tag = tag;
    a.sender = sender;
    a.size = (size_t)size;
    AcquireSRWLockExclusive(&r->lock);
    cd__report(r, reason, &a);
    ReleaseSRWLockExclusive(&r->lock);
}

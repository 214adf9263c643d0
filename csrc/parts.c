/*
 * Messages in parts: a message too large for one WM_COPYDATA comes as part frames, in order,
 * one transfer per (sender, transfer id). Its memory grows as its parts arrive, within the
 * queue's byte budget, and it is queued whole at its last part; a transfer whose next part is
 * overdue is dropped, and counted as incomplete.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* A message arriving in parts: its memory grows as its parts arrive (what it claims to be is
 * only a bound), and it is queued at its last part. */
struct cd_transfer {
    cd_transfer *next;
    uint64_t sender;
    uint64_t transfer_id;
    uint64_t total;        /* the size its first part announced */
    uint64_t received;
    size_t reserved;       /* the bytes its message can hold now: what it counts against the budget */
    ULONGLONG last_part_ms;
    cd_message *message;
};
/* The first block of a split message, and how long a transfer may wait for its next part before
 * another one that needs its room or its slot takes them (a Sender sends parts back to back). */
#define TRANSFER_FIRST_BLOCK ((size_t)64 << 10)
#define TRANSFER_IDLE_MS 1000

/* Takes a transfer out of the table; dropped: it will never complete. */
static void unlink_transfer(cd_receiver *r, cd_transfer **link, int dropped)
{
    cd_transfer *t = *link;

    *link = t->next;
    r->parts.count--;
    r->parts.bytes -= t->reserved;
    AcquireSRWLockExclusive(&r->lock);
    r->stats.assembling_messages--;
    r->stats.assembling_bytes -= t->reserved;
    if (dropped) {
        arrival a;
        a.tag = t->message->tag;
        a.sender = t->sender;
        a.size = (size_t)t->received;
        r->stats.dropped_messages++;
        r->stats.dropped_bytes += t->received;
        r->stats.dropped_incomplete++;
        cd__report(r, CD_REASON_INCOMPLETE, &a);
    }
    ReleaseSRWLockExclusive(&r->lock);
}

static void drop_transfer(cd_receiver *r, cd_transfer **link)
{
    cd_transfer *t = *link;

    unlink_transfer(r, link, 1);
    cd__release_message(t->message);
    free(t);
}

static void drop_stale_transfers(cd_receiver *r, ULONGLONG now)
{
    cd_transfer **link = &r->parts.transfers;
    while (*link) {
        if (now - (*link)->last_part_ms >= r->config.part_timeout_ms)
            drop_transfer(r, link);
        else
            link = &(*link)->next;
    }
}

static cd_transfer **find_transfer(cd_receiver *r, uint64_t sender, uint64_t transfer_id)
{
    cd_transfer **link = &r->parts.transfers;
    while (*link && ((*link)->sender != sender || (*link)->transfer_id != transfer_id))
        link = &(*link)->next;
    return link;
}

/* Makes room for bytes more of split messages (and, with a_slot, for one more of them) by
 * dropping those that have waited TRANSFER_IDLE_MS or more for their next part, the longest
 * waiting first, but never keep: a transfer holds its room only while its parts keep coming.
 * Whether the room is there now. */
static int make_transfer_room(cd_receiver *r, size_t bytes, int a_slot, const cd_transfer *keep, ULONGLONG now)
{
    while ((a_slot && r->parts.count >= CD_MAX_TRANSFERS)
           || bytes > r->config.max_queue_bytes - r->parts.bytes) {
        cd_transfer **link, **stalest = NULL;
        for (link = &r->parts.transfers; *link; link = &(*link)->next)
            if (*link != keep && now - (*link)->last_part_ms >= TRANSFER_IDLE_MS
                && (stalest == NULL || (*link)->last_part_ms < (*stalest)->last_part_ms))
                stalest = link;
        if (stalest == NULL)
            return 0;
        drop_transfer(r, stalest);
    }
    return 1;
}

/* Grows a transfer's message to hold at least needed bytes, doubling up to its total, within the
 * budget; the bytes received so far move along. */
static int reserve_transfer(cd_receiver *r, cd_transfer *t, size_t needed, ULONGLONG now)
{
    size_t reserved = t->reserved ? t->reserved : TRANSFER_FIRST_BLOCK;
    cd_message *grown;

    if (needed <= t->reserved)
        return 1;
    while (reserved < needed)
        reserved = reserved > SIZE_MAX / 2 ? needed : reserved * 2;
    if (reserved > t->total)
        reserved = (size_t)t->total;
    if (!make_transfer_room(r, reserved - t->reserved, 0, t, now))
        return 0;
    grown = cd__new_large_message(r, t->message ? t->message->tag : 0, t->sender, reserved,
                              t->message ? t->message->codec_id : CD_NO_CODEC);
    if (grown == NULL)
        return 0;
    if (t->message != NULL) {
        memcpy((char *)grown->data, t->message->data, (size_t)t->received);
        cd__release_message(t->message);
    }
    t->message = grown;
    r->parts.bytes += reserved - t->reserved;
    AcquireSRWLockExclusive(&r->lock);
    r->stats.assembling_bytes += reserved - t->reserved;
    ReleaseSRWLockExclusive(&r->lock);
    t->reserved = reserved;
    return 1;
}

/* A split message's first part: a new transfer, with a slot and its first block. */
static cd_transfer *begin_transfer(cd_receiver *r, const arrival *a, const cd_part *part, ULONGLONG now)
{
    cd_transfer *t;

    if (!make_transfer_room(r, 0, 1, NULL, now) || (t = (cd_transfer *)calloc(1, sizeof *t)) == NULL)
        return NULL;
    t->sender = a->sender;
    t->transfer_id = part->transfer_id;
    t->total = part->total;
    t->last_part_ms = now;
    t->message = cd__new_large_message(r, a->tag, a->sender, 0, part->codec_id);
    if (t->message == NULL) {
        free(t);
        return NULL;
    }
    t->next = r->parts.transfers;
    r->parts.transfers = t;
    r->parts.count++;
    AcquireSRWLockExclusive(&r->lock);
    r->stats.assembling_messages++;
    ReleaseSRWLockExclusive(&r->lock);
    return t;
}

/* One part of a split message (already checked by cd_part_check). Parts come in order; the
 * message is queued when its last part arrives, or refused then, whole, until it fits. */
LRESULT cd__accept_part(cd_receiver *r, const arrival *a, const cd_part *part, int in_section)
{
    ULONGLONG now = GetTickCount64();
    cd_transfer **link, *t;
    int complete;

    drop_stale_transfers(r, now);
    link = find_transfer(r, a->sender, part->transfer_id);
    if (part->offset == 0) {
        if (*link)
            drop_transfer(r, link); /* begun again: the earlier attempt can never complete */
        if (part->total > r->config.max_transfer_size)  /* (and so above no max_queue_bytes) */
            return cd__refuse_never_fits(r, a);
        if ((t = begin_transfer(r, a, part, now)) == NULL)
            return cd__refuse(r, CD_REASON_QUEUE_FULL, a);
        link = &r->parts.transfers;
    } else {
        t = *link;
        if (t == NULL || part->offset != t->received || part->total != t->total
            || part->codec_id != t->message->codec_id || a->tag != t->message->tag) {
            if (t)
                drop_transfer(r, link);
            return cd__refuse(r, CD_REASON_MALFORMED, a);
        }
    }
    if (!reserve_transfer(r, t, (size_t)(t->received + part->length), now)) {
        if (t->received == 0)
            drop_transfer(r, link);  /* nothing of it arrived: no room held for it */
        return cd__refuse(r, CD_REASON_QUEUE_FULL, a);  /* the sender offers this part again */
    }
    complete = t->received + part->length == t->total;
    if (complete && !cd__make_room(r, 1, (size_t)t->total, a))
        return FALSE; /* the sender offers this last part again */
    cd__answer_before_copying(in_section, TRUE);
    memcpy((char *)t->message->data + part->offset, part->data, part->length);
    t->received += part->length;
    t->last_part_ms = now;
    if (complete) {
        t->message->size = (size_t)t->total;
        unlink_transfer(r, link, 0);
        cd__append_all(r, t->message);
        free(t);
    }
    return TRUE;
}

void cd__parts_sweep(cd_receiver *r, ULONGLONG now)
{
    drop_stale_transfers(r, now);
}

void cd__parts_close(cd_receiver *r)
{
    while (r->parts.transfers)
        drop_transfer(r, &r->parts.transfers);
}

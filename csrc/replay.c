/*
 * Replay protection for sealed frames: per sealer, the newest counter accepted and which of
 * the CD_REPLAY_WINDOW counters below it were accepted too (the sliding window of IPsec,
 * RFC 4303 3.4.3), so that threads sharing one sealer may overtake one another.
 *
 * A sealer's entry is forgotten once it has not changed for CD_SEAL_MAX_AGE_MS plus
 * CD_SEAL_MAX_AHEAD_MS: every frame it accepted is older than CD_SEAL_MAX_AGE_MS by then
 * (its time was at most CD_SEAL_MAX_AHEAD_MS ahead), which cd_replay_check refuses anyway.
 * Only frames whose MAC verified reach this table, so only holders of the key can fill it.
 * Plain C, so that it builds and is fuzzed on Linux too.
 */
#include <stdlib.h>
#include <string.h>

#include "frames.h"

static const cd_replay_entry *find_entry(const cd_replay *replay, uint64_t sealer_id)
{
    size_t i;
    for (i = 0; i < replay->count; i++)
        if (replay->entries[i].sealer_id == sealer_id)
            return &replay->entries[i];
    return NULL;
}

static int expired(const cd_replay_entry *entry, uint64_t now_ms)
{
    return now_ms - entry->touched_ms > CD_SEAL_MAX_AGE_MS + CD_SEAL_MAX_AHEAD_MS;
}

int cd_replay_check(const cd_replay *replay, const cd_seal *seal, uint64_t now_ms)
{
    const cd_replay_entry *entry;
    uint64_t behind;
    size_t i;

    if (seal->time_ms > now_ms + CD_SEAL_MAX_AHEAD_MS
        || (seal->time_ms < now_ms && now_ms - seal->time_ms > CD_SEAL_MAX_AGE_MS))
        return CD_REPLAY_STALE;
    entry = find_entry(replay, seal->sealer_id);
    if (entry == NULL) {
        if (replay->count < CD_MAX_SEALERS)
            return CD_REPLAY_NEW;
        for (i = 0; i < replay->count; i++)
            if (expired(&replay->entries[i], now_ms))
                return CD_REPLAY_NEW;
        return CD_REPLAY_CROWDED;
    }
    if (seal->counter > entry->newest)
        return CD_REPLAY_NEW;
    behind = entry->newest - seal->counter;
    if (behind >= CD_REPLAY_WINDOW || (entry->seen >> behind) & 1)
        return CD_REPLAY_SEEN;
    return CD_REPLAY_NEW;
}

static void forget_expired(cd_replay *replay, uint64_t now_ms)
{
    size_t i = 0;
    while (i < replay->count) {
        if (expired(&replay->entries[i], now_ms))
            replay->entries[i] = replay->entries[--replay->count];
        else
            i++;
    }
}

int cd_replay_reserve(cd_replay *replay, const cd_seal *seal, uint64_t now_ms)
{
    size_t capacity;
    cd_replay_entry *grown;

    if (find_entry(replay, seal->sealer_id) != NULL || replay->count < replay->capacity)
        return CD_OK;
    forget_expired(replay, now_ms);
    if (replay->count < replay->capacity)
        return CD_OK;
    capacity = replay->capacity ? 2 * replay->capacity : 16;
    if (capacity > CD_MAX_SEALERS)
        capacity = CD_MAX_SEALERS;
    if (replay->count == capacity)
        return CD_FULL;
    grown = (cd_replay_entry *)realloc(replay->entries, capacity * sizeof *grown);
    if (grown == NULL)
        return CD_NO_MEMORY;
    replay->entries = grown;
    replay->capacity = capacity;
    return CD_OK;
}

int cd_replay_record(cd_replay *replay, const cd_seal *seal, uint64_t now_ms)
{
    cd_replay_entry *entry;
    uint64_t ahead;
    int status = cd_replay_reserve(replay, seal, now_ms);

    if (status != CD_OK)
        return status;
    entry = (cd_replay_entry *)find_entry(replay, seal->sealer_id);
    if (entry == NULL) {
        entry = &replay->entries[replay->count++];
        entry->sealer_id = seal->sealer_id;
        entry->newest = seal->counter;
        entry->seen = 1;
    } else if (seal->counter > entry->newest) {
        ahead = seal->counter - entry->newest;
        entry->seen = ahead >= CD_REPLAY_WINDOW ? 1 : (entry->seen << ahead) | 1;
        entry->newest = seal->counter;
    } else {
        entry->seen |= (uint64_t)1 << (entry->newest - seal->counter);
    }
    entry->touched_ms = now_ms;
    return CD_OK;
}

void cd_replay_release(cd_replay *replay)
{
    free(replay->entries);
    memset(replay, 0, sizeof *replay);
}

/*
 * What the C of the core checks frames with, and the replay table of sealed frames (frames.c,
 * replay.c): plain C over byte buffers, no Windows, so that fuzz/ builds and fuzzes it on Linux
 * too. Python never calls these (copydata.h is what it sees); internal.h includes this header.
 */
#ifndef COPYDATA_FRAMES_H
#define COPYDATA_FRAMES_H

#include "copydata.h"

/* 1 when data starts like a batch or part frame, or a sealed frame around one, which only a
 * Sender sends (so it understands CD_ANSWER_NEVER_FITS); 0 otherwise. Reads only envelope
 * headers and trusts no MAC: the answer is all it decides. */
int cd_is_sender_frame(const unsigned char *data, size_t size);
/* The record at *offset of a batch frame (start at CD_ENVELOPE_HEADER_SIZE): 1 with its tag,
 * bytes and length, *offset moved past it; 0 at the end; -1 when it runs past size. It reads
 * each length once, so a frame that another process goes on writing to (a sender's section)
 * cannot lead it outside size. */
int cd_batch_next(const unsigned char *frame, size_t size, size_t *offset, uint64_t *tag,
                  const unsigned char **data, size_t *length);

/* A part frame, checked. */
typedef struct cd_part {
    uint64_t transfer_id;
    uint64_t total;
    uint64_t offset;
    int codec_id;
    const unsigned char *data;
    size_t length;
} cd_part;

/* Checks a payload: 0 when it is no part frame, 1 for a valid one (described in part), -1 for
 * a part frame that is malformed (no transfer id, empty, or past its total). */
int cd_part_check(const unsigned char *data, size_t size, cd_part *part);

/* A section descriptor, checked, its name copied out. */
typedef struct cd_section_descriptor {
    uint64_t lease_id;        /* 0: the receiver copies the frame out */
    uint64_t offset;
    uint64_t length;
    uint64_t release_offset;  /* with a lease: where the receiver writes lease_id when done */
    uint64_t ring_offset;     /* with a lease: the ring block (0: none) */
    unsigned char secret[CD_SECTION_SECRET_SIZE];  /* must equal the section header's */
    int codec_id;
    uint16_t name[CD_MAX_SECTION_NAME + 1];  /* UTF-16, NUL-terminated: a wchar_t string on Windows */
} cd_section_descriptor;

/* Whether a UTF-16 name of that many units lies in copydata's section namespace: the prefix,
 * then at least one more unit, no backslash and no NUL, at most CD_MAX_SECTION_NAME in all. */
int cd_section_name_ok(const uint16_t *name, size_t length);

/* Checks a payload: 0 when it is no section descriptor, 1 for a valid one, -1 for a malformed one. */
int cd_section_check(const unsigned char *data, size_t size, cd_section_descriptor *descriptor);
/* Whether a descriptor's numbers are consistent (as cd_section_check requires): a range of at
 * least a byte, and with a lease a release word and a ring block (if any) on 8 bytes outside it. */
int cd_section_fields_ok(const cd_section_descriptor *descriptor);

/* A sealed frame, checked: where its MAC and its inner payload lie. */
typedef struct cd_seal {
    uint64_t sealer_id;
    uint64_t counter;
    uint64_t time_ms;
    const unsigned char *mac;    /* CD_MAC_SIZE bytes */
    const unsigned char *inner;
    size_t inner_size;
} cd_seal;

/* Checks a payload: 0 when it is no sealed frame, 1 for a well-formed one (its MAC not yet
 * verified), -1 for a malformed one. */
int cd_seal_check(const unsigned char *data, size_t size, cd_seal *seal);

/* The counters seen from each sealer, to refuse a sealed frame that comes again. */
typedef struct cd_replay_entry {
    uint64_t sealer_id;
    uint64_t newest;      /* the highest counter accepted */
    uint64_t seen;        /* bit i: counter newest - i was accepted */
    uint64_t touched_ms;  /* the receiver's clock when this entry last changed */
} cd_replay_entry;
typedef struct cd_replay {
    cd_replay_entry *entries;
    size_t count;
    size_t capacity;
} cd_replay;

enum cd_replay_verdict {
    CD_REPLAY_NEW = 0,       /* never seen: may be accepted */
    CD_REPLAY_SEEN = 1,      /* accepted before, or older than the window of late counters */
    CD_REPLAY_STALE = 2,     /* its time lies outside what the receiver's clock allows */
    CD_REPLAY_CROWDED = 3    /* a new sealer, and CD_MAX_SEALERS are fresh already */
};
int cd_replay_check(const cd_replay *replay, const cd_seal *seal, uint64_t now_ms);
/* Makes room for the seal's sealer, if new, before its frame is accepted, so that recording it
 * afterwards cannot fail: CD_OK, CD_NO_MEMORY, or CD_FULL when CD_MAX_SEALERS fresh sealers are
 * known already. */
int cd_replay_reserve(cd_replay *replay, const cd_seal *seal, uint64_t now_ms);
/* Remembers an accepted seal (after cd_replay_check said CD_REPLAY_NEW); fails only as
 * cd_replay_reserve does, and never after it succeeded for this seal. */
int cd_replay_record(cd_replay *replay, const cd_seal *seal, uint64_t now_ms);
void cd_replay_release(cd_replay *replay);

#endif

/*
 * What only the C files of the core call one another for, with Windows types (copydata.h is
 * what Python sees).
 */
#ifndef COPYDATA_INTERNAL_H
#define COPYDATA_INTERNAL_H

#include "win32.h"
#include "copydata.h"

/* Sections and name slots: open to the current user only; with unreadable_below, not even to
 * its processes of a lower integrity level. Free with LocalFree. */
PSECURITY_DESCRIPTOR cd_user_only_descriptor(int unreadable_below);
/* Whether a mapping (opened with READ_CONTROL and SECTION_QUERY) is owned by owner_sid and is
 * committed memory backed by the page file; its size. */
int cd_mapping_trusted(HANDLE mapping, const void *owner_sid, uint64_t *size);

#endif

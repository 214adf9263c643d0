/* HMAC-SHA256 for sealed frames, computed by Windows CNG (bcrypt.dll), never by hand. */
#include "win32.h"
#include <bcrypt.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct cd_mac {
    BCRYPT_ALG_HANDLE algorithm;
    unsigned char key[CD_MAX_KEY_SIZE];
    ULONG key_size;
};

int cd_mac_open(const unsigned char *key, size_t key_size, cd_mac **mac)
{
    cd_mac *m;

    *mac = NULL;
    if (key == NULL || key_size < CD_MIN_KEY_SIZE || key_size > CD_MAX_KEY_SIZE)
        return CD_INVALID;
    m = (cd_mac *)calloc(1, sizeof *m);
    if (m == NULL)
        return CD_NO_MEMORY;
    if (!BCRYPT_SUCCESS(BCryptOpenAlgorithmProvider(&m->algorithm, BCRYPT_SHA256_ALGORITHM, NULL,
                                                    BCRYPT_ALG_HANDLE_HMAC_FLAG))) {
        free(m);
        return CD_WIN32_ERROR;
    }
    memcpy(m->key, key, key_size);
    m->key_size = (ULONG)key_size;
    *mac = m;
    return CD_OK;
}

static int hash_data(BCRYPT_HASH_HANDLE hash, const void *data, size_t size)
{
    /* BCryptHashData takes a ULONG; WM_COPYDATA payloads fit in a DWORD anyway. */
    return size <= MAXDWORD && BCRYPT_SUCCESS(BCryptHashData(hash, (PUCHAR)data, (ULONG)size, 0));
}

int cd_mac_verify(cd_mac *m, uint64_t target, uint64_t tag, const unsigned char *frame, const cd_seal *seal)
{
    BCRYPT_HASH_HANDLE hash = NULL;
    unsigned char bound[16], computed[CD_MAC_SIZE], difference = 0;
    uint64_t window = target & 0xFFFFFFFFu;  /* window handles have 32 significant bits */
    int ok;
    size_t i;

    memcpy(bound, &window, 8);
    memcpy(bound + 8, &tag, 8);
    if (!BCRYPT_SUCCESS(BCryptCreateHash(m->algorithm, &hash, NULL, 0, m->key, m->key_size, 0)))
        return 0;
    ok = hash_data(hash, bound, sizeof bound) && hash_data(hash, frame, CD_SEAL_SIGNED_SIZE)
         && hash_data(hash, seal->inner, seal->inner_size)
         && BCRYPT_SUCCESS(BCryptFinishHash(hash, computed, sizeof computed, 0));
    BCryptDestroyHash(hash);
    if (!ok)
        return 0;
    /* Constant time: how much of a forged MAC is right must not show in how long this takes. */
    for (i = 0; i < CD_MAC_SIZE; i++)
        difference |= (unsigned char)(computed[i] ^ seal->mac[i]);
    return difference == 0;
}

void cd_mac_close(cd_mac *m)
{
    if (m == NULL)
        return;
    BCryptCloseAlgorithmProvider(m->algorithm, 0);
    SecureZeroMemory(m->key, sizeof m->key);
    free(m);
}

uint64_t cd_now_ms(void)
{
    return (uint64_t)GetTickCount64();
}
